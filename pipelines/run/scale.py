"""Scale-out: transcripts as Parquet partitions on shared storage, merged by one loader.

Workers anywhere (Dask workers on other hosts, processes of this one) transcribe a recording and
write `<stage>/transcripts/<recording_id>.parquet` — written to a temporary name and renamed, so a
partition is either whole or absent. The single DuckDB writer merges partitions with
`load_partitions`: a partition already merged (ledger table `loaded_partitions`) or for a recording
whose transcript is already stored is skipped, so loading twice, or after a crash halfway, adds
nothing. A transcription finished on a worker survives the death of the run that asked for it:
the next run loads it instead of transcribing again.

The Dask side is Prefect's own `prefect-dask` task runner: `dask_task_runner()` makes one for a
scheduler address (production) or a LocalCluster (tests, one machine).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from callqa.records import Transcript

if TYPE_CHECKING:
    from callqa.pipelines.store.database import Store

log = logging.getLogger(__name__)

PARTITION_DIR = "transcripts"


def partition_path(stage_dir: str | Path, recording_id: str) -> Path:
    return Path(stage_dir) / PARTITION_DIR / f"{recording_id}.parquet"


def write_partition(stage_dir: str | Path, recording_id: str, source: Path, transcript: Transcript,
                    audio_info: dict[str, object], mask: Callable[[str], str] | None = None) -> Path:
    """Write one recording's transcript as a Parquet file, atomically (temp file + rename); `mask` (PII masking)
    is applied to every segment's text first, so nothing unmasked lands on the shared stage folder."""
    out = partition_path(stage_dir, recording_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.tmp.parquet")
    facts = json.dumps({"language": transcript.language, "duration": transcript.duration,
                        "runtime": transcript.runtime, "model": transcript.model, "audio_info": audio_info,
                        "path": str(source), "file_name": source.name,
                        "timings": transcript.timings}, ensure_ascii=False, default=str)
    rows = [(recording_id, i, s.speaker, s.start, s.end, mask(s.text) if mask else s.text, s.confidence, facts)
            for i, s in enumerate(transcript.segments)] or [(recording_id, None, None, None, None, None, None, facts)]
    con = duckdb.connect(":memory:")
    try:
        con.execute("CREATE TABLE p (recording_id VARCHAR, seg_idx INTEGER, speaker VARCHAR, start_s DOUBLE, "
                    "end_s DOUBLE, text VARCHAR, confidence DOUBLE, facts VARCHAR)")
        con.executemany("INSERT INTO p VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute(f"COPY p TO '{_sql_path(tmp)}' (FORMAT parquet)")
    finally:
        con.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return out


def read_partition(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, Transcript, dict]:
    """(recording id, transcript, facts) of one partition file."""
    from callqa.records import Segment

    rows = con.execute(
        "SELECT recording_id, seg_idx, speaker, start_s, end_s, text, confidence, facts "
        f"FROM read_parquet('{_sql_path(path)}') ORDER BY seg_idx"
    ).fetchall()
    if not rows:
        raise ValueError(f"empty partition {path}")
    facts = json.loads(rows[0][7])
    segs = tuple(Segment(r[2], r[3], r[4], r[5], r[6]) for r in rows if r[1] is not None)
    t = Transcript(segs, facts.get("language"), facts.get("duration") or 0.0, facts.get("runtime") or "",
                   facts.get("model") or "", dict(facts.get("timings") or {}))
    return rows[0][0], t, facts


def load_partitions(store: Store, stage_dir: str | Path) -> list[str]:
    """Merge every partition not merged yet; returns the recording ids whose transcript was stored now."""
    folder = Path(stage_dir) / PARTITION_DIR
    if not folder.is_dir():
        return []
    done = {r[0] for r in store.con.execute("SELECT partition FROM loaded_partitions").fetchall()}
    loaded = []
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith(".") or path.name in done:
            continue
        try:
            rid, transcript, facts = read_partition(store.con, path)
        except (duckdb.Error, ValueError) as e:  # a partition cut short by a dying writer never got renamed
            log.warning("skipping unreadable partition %s: %s", path, e)
            continue
        if store.load_transcript(rid) is not None:
            outcome = "already_stored"
        else:
            if store.recording_status(rid) is None:
                store.upsert_recording(rid, path=facts.get("path", ""), file_name=facts.get("file_name", ""),
                                       status="new")
            store.upsert_recording(rid, **(facts.get("audio_info") or {}))
            store.save_transcript(rid, transcript)
            outcome = "loaded"
            loaded.append(rid)
        store.con.execute("INSERT OR REPLACE INTO loaded_partitions (partition, recording_id, outcome) "
                          "VALUES (?, ?, ?)", [path.name, rid, outcome])
    if loaded:
        log.info("merged %d transcript partition(s) from %s", len(loaded), folder)
    return loaded


def mark_loaded(store: Store, stage_dir: str | Path, recording_id: str) -> None:
    """Record that the partition of a transcript the writer stored directly needs no merge later."""
    p = partition_path(stage_dir, recording_id)
    if p.exists():
        store.con.execute("INSERT OR REPLACE INTO loaded_partitions (partition, recording_id, outcome) "
                          "VALUES (?, ?, 'loaded')", [p.name, recording_id])


def dask_task_runner(address: str | None = None, n_workers: int = 2):
    """prefect-dask's task runner: an existing scheduler (`tcp://host:8786`), else a LocalCluster of
    `n_workers` single-threaded worker processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")
