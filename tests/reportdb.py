"""A DuckDB of the shared dev set for the report tests, built once per test session.

The reference `turns` are scored by the real engine (no audio decoding, so it takes seconds) and
written through the real `Store`; each recording points at its real dev audio file, so coaching
clips are cut from real recordings.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from tests.conftest import DEV, dev_calls

_lock = threading.Lock()
_built: dict[str, Path] = {}


def build_dev_db(path: Path) -> Path:
    from callqa.pipelines.run.batch import file_sha256
    from callqa.pipelines.run.flows import make_engine
    from callqa.pipelines.store.database import Store, parse_started_at
    from callqa.qa_rules.checklist import load_checklist

    from callqa.records import Transcript

    checklist = load_checklist("sales_core")
    engine = make_engine(checklist)
    with Store(path) as store:
        store.save_checklist(checklist)
        for row in dev_calls():
            audio = DEV / row["file"]
            rid = file_sha256(audio)
            aware, local = parse_started_at(row["started_at"])
            store.upsert_recording(
                rid, path=str(audio), file_name=audio.name, size_bytes=audio.stat().st_size, call_id=row["call_id"],
                agent_id=row["agent_id"], customer_id=row["customer_id"], started_at=aware, started_local=local,
                language=row["language"], direction=row["direction"], agent_channel=0, duration_s=row["duration_s"],
                channels=2, sample_rate=16000, status="new", metadata={"product": row.get("product")},
            )
            transcript = Transcript.from_turns(row["turns"], row["language"])
            store.save_transcript(rid, transcript)
            store.save_score(rid, engine.score(transcript))
    return path


def dev_db(tmp_path_factory) -> Path:
    """The session's dev DB (built on first use); callers that write must copy it (`dev_db_copy`)."""
    with _lock:
        if "dev" not in _built:
            _built["dev"] = build_dev_db(tmp_path_factory.mktemp("devdb") / "dev.duckdb")
        return _built["dev"]


def dev_db_copy(tmp_path_factory, name: str = "copy") -> Path:
    src = dev_db(tmp_path_factory)
    dst = tmp_path_factory.mktemp(name) / "dev.duckdb"
    shutil.copy(src, dst)
    return dst
