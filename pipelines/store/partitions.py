"""The DuckDB side of scale-out (`pipelines/run/scale.py`): a transcript partition read back from its Parquet
file (written by `exports.write_parquet`), and the ledger (`loaded_partitions`) of partitions the single writer
merged already."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from callqa.pipelines.store.database import Store
from callqa.pipelines.store.exports import sql_path
from callqa.pipelines.store.reader import Reader, connection

from callqa.records import Segment, Transcript


def read_partition(db: Reader, path: Path) -> tuple[str, Transcript, dict]:
    """(recording id, transcript, facts) of one partition file; ValueError for a file that is empty or not a
    whole Parquet file (one cut short by a dying writer)."""
    try:
        cur = connection(db).execute(f"SELECT * FROM read_parquet('{sql_path(path)}') ORDER BY seg_idx")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    except duckdb.Error as e:
        raise ValueError(str(e)) from e
    if not rows:
        raise ValueError(f"empty partition {path}")
    facts = json.loads(rows[0]["facts"])
    # Whisper's confidence columns arrived with schema v8: a partition written before has none (None)
    segs = tuple(Segment(r["speaker"], r["start_s"], r["end_s"], r["text"], r["confidence"], (),
                         r.get("avg_logprob"), r.get("no_speech_prob"), r.get("compression_ratio"))
                 for r in rows if r["seg_idx"] is not None)
    t = Transcript(segs, facts.get("language"), facts.get("duration") or 0.0, facts.get("runtime") or "",
                   facts.get("model") or "", dict(facts.get("timings") or {}))
    return rows[0]["recording_id"], t, facts


def merged_partitions(store: Store) -> set[str]:
    """File names of the partitions already merged (whatever their outcome)."""
    return {r[0] for r in store.con.execute("SELECT partition FROM loaded_partitions").fetchall()}


def record_merged(store: Store, partition: str, recording_id: str, outcome: str) -> None:
    """Note a partition as merged: 'loaded' (its transcript is stored now) or 'already_stored'."""
    store.con.execute("INSERT OR REPLACE INTO loaded_partitions (partition, recording_id, outcome) "
                      "VALUES (?, ?, ?)", [partition, recording_id, outcome])

