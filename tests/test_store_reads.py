"""The store's typed reads: verdicts come back as the `ItemVerdict`s that were saved, a recording's state as a
`RecordingState`, and `Store.open_readonly` reads without the writer lock and cannot write."""

from __future__ import annotations

import duckdb
import pytest
from callqa.pipelines.store.database import Store
from callqa.qa_rules.checklist import load_checklist

from callqa.records import CallScore, Evidence, ItemVerdict, RecordingState


def test_verdicts_and_states_round_trip_through_a_read_only_store(tmp_path):
    db = tmp_path / "s.duckdb"
    cl = load_checklist("sales_core")
    verdicts = (
        ItemVerdict("greeting", "pass", 0.91, (Evidence(0, "agent", "Hello, this is Sam from Ink Hub.", 0.0, 2.5, 0.8),
                                               Evidence(1, "agent", "How can I help?", 2.5, 3.9)), "greets by name"),
        ItemVerdict("usage_scenario", "fail", 0.2),
    )
    with Store(db) as store:
        store.save_checklist(cl)
        for rid in ("r1", "r2"):
            store.upsert_recording(rid, path=f"/x/{rid}.wav", file_name=f"{rid}.wav", status="new")
        store.save_score("r1", CallScore(cl.id, cl.version, 50.0, 1.0, 2.0, False, verdicts))
        store.record_failure("r2", "failed", "corrupt", "bad bytes")
        store.record_failure("r2", "failed", "corrupt", "bad bytes")
    with Store.open_readonly(db) as store:
        assert sorted(store.item_verdicts("r1", cl.id, cl.version), key=lambda v: v.item_id) == list(verdicts)
        assert store.item_verdicts("r1", cl.id, cl.version + 1) == [] and store.item_verdicts("r2", cl.id, 1) == []
        assert store.recording_state("r1") == RecordingState("scored", 0, None)
        assert store.recording_state("r2") == RecordingState("failed", 2, "permanent")
        assert store.recording_state("nope") is None
        with pytest.raises(duckdb.Error, match="read-only"):
            store.con.execute("DELETE FROM item_verdicts")
        assert store._lock is None  # a reader never takes the writer lock
    with pytest.raises(FileNotFoundError, match="no database"):
        Store.open_readonly(tmp_path / "missing.duckdb")
