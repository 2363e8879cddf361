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

The Parquet and ledger SQL lives in `pipelines/store/partitions.py`.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from callqa.pipelines.store.exports import Column, write_parquet
from callqa.pipelines.store.partitions import merged_partitions, read_partition, record_merged

from callqa.records import Transcript

if TYPE_CHECKING:
    from callqa.pipelines.store.database import Store

log = logging.getLogger(__name__)

PARTITION_DIR = "transcripts"
# one row per segment (a call without speech: one row of NULLs, so its facts still travel); `facts`: the call's
# language, duration, ASR, audio info, source path and timings as JSON, on every row
PARTITION_COLUMNS: list[Column] = [
    ("recording_id", "VARCHAR"), ("seg_idx", "INTEGER"), ("speaker", "VARCHAR"), ("start_s", "DOUBLE"),
    ("end_s", "DOUBLE"), ("text", "VARCHAR"), ("confidence", "DOUBLE"), ("facts", "VARCHAR"),
    ("avg_logprob", "DOUBLE"), ("no_speech_prob", "DOUBLE"), ("compression_ratio", "DOUBLE"),
]


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
    rows = [(recording_id, i, s.speaker, s.start, s.end, mask(s.text) if mask else s.text, s.confidence, facts,
             s.avg_logprob, s.no_speech_prob, s.compression_ratio)
            for i, s in enumerate(transcript.segments)] or [(recording_id, *[None] * 6, facts, None, None, None)]
    write_parquet(tmp, PARTITION_COLUMNS, rows)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return out


def load_partitions(store: Store, stage_dir: str | Path) -> list[str]:
    """Merge every partition not merged yet; returns the recording ids whose transcript was stored now."""
    folder = Path(stage_dir) / PARTITION_DIR
    if not folder.is_dir():
        return []
    done = merged_partitions(store)
    loaded = []
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith(".") or path.name in done:
            continue
        try:
            rid, transcript, facts = read_partition(store, path)
        except ValueError as e:  # a partition cut short by a dying writer never got renamed
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
        record_merged(store, path.name, rid, outcome)
    if loaded:
        log.info("merged %d transcript partition(s) from %s", len(loaded), folder)
    return loaded


def mark_loaded(store: Store, stage_dir: str | Path, recording_id: str) -> None:
    """Record that the partition of a transcript the writer stored directly needs no merge later."""
    p = partition_path(stage_dir, recording_id)
    if p.exists():
        record_merged(store, p.name, recording_id, "loaded")


def dask_task_runner(address: str | None = None, n_workers: int = 2):
    """prefect-dask's task runner: an existing scheduler (`tcp://host:8786`), else a LocalCluster of
    `n_workers` single-threaded worker processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})
