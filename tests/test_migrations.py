"""Schema migrations: a database made by schema v1 (frozen SQL in tests/fixtures) upgrades in place."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from callqa.pipelines.run.status import run_status
from callqa.pipelines.store.database import Store
from callqa.pipelines.store.migrations import LATEST, MIGRATIONS, current_version, migrate

V1_SQL = Path(__file__).parent / "fixtures" / "schema_v1.sql"


@pytest.fixture()
def v1_db(tmp_path) -> Path:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(V1_SQL.read_text(encoding="utf-8"))
    con.close()
    return db


def test_migrations_are_numbered_without_gaps():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST == len(MIGRATIONS) >= 3


def test_v1_database_upgrades_in_place_and_keeps_its_data(v1_db):
    con = duckdb.connect(str(v1_db), read_only=True)
    assert current_version(con) == 1
    con.close()
    with Store(v1_db) as store:  # opening for writing upgrades
        con = store.con
        assert current_version(con) == LATEST
        assert [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] == list(
            range(1, LATEST + 1))
        assert store.counts() == {"recordings": 2, "segments": 2, "item_verdicts": 1, "call_scores": 1}
        assert store.load_transcript("aaaa").segments[0].text == "您好，我是王琳"
        assert con.execute("SELECT failure_kind FROM recordings WHERE recording_id = 'bbbb'").fetchone()[0] == (
            "permanent")
        assert dict(con.execute("SELECT run_id, status FROM runs").fetchall()) == {
            "run1": "finished", "run2": "interrupted"}
    with Store(v1_db) as store:  # a second open is a no-op
        assert migrate(store.con) == []
    st = run_status(v1_db)
    assert [r["run_id"] for r in st["runs"]] == ["run2", "run1"]
    assert st["failures"][0]["reason"] == "empty"


def test_a_failing_migration_leaves_the_previous_version(v1_db, monkeypatch):
    from callqa.pipelines.store import migrations

    broken = [*MIGRATIONS[:2], migrations.Migration(3, "broken", "CREATE TABLE x (a INT); SELECT no_such_column")]
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    con = duckdb.connect(str(v1_db))
    with pytest.raises(duckdb.Error):
        migrate(con, target=3)
    assert current_version(con) == 2  # v2 committed, v3 rolled back entirely
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'x'").fetchone()[0] == 0
    con.close()


def test_newer_database_than_code_is_refused(tmp_path):
    db = tmp_path / "new.duckdb"
    with Store(db):
        pass
    con = duckdb.connect(str(db))
    con.execute("UPDATE schema_info SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(RuntimeError, match="newer than this callqa"):
        Store(db)


def test_v1_database_gets_whisper_confidence_columns_and_old_verdicts_stay_unflagged(v1_db):
    """Schema v8: segments gain Whisper's confidence (NULL for old rows: never measured), item_verdicts the
    low-confidence-audio flag (NULL: never assessed). Re-scoring an old transcript cannot flag: it has no numbers."""
    from callqa.pipelines.store.review import effective_verdicts_sql
    from callqa.qa_rules.checklist import load_checklist
    from callqa.qa_rules.engine import call_score

    from callqa.records import Evidence, ItemVerdict

    con = duckdb.connect(str(v1_db), read_only=True)  # read without upgrading, as the app and reports do
    assert con.execute(f"SELECT item_id, audio_flag FROM ({effective_verdicts_sql(con)})").fetchall() == [
        ("greeting", None)]
    con.close()
    with Store(v1_db) as store:
        cols = {r[0] for r in store.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'segments'").fetchall()}
        assert {"avg_logprob", "no_speech_prob", "compression_ratio"} <= cols
        assert store.con.execute("SELECT count(*) FROM segments WHERE avg_logprob IS NULL AND no_speech_prob IS NULL "
                                 "AND compression_ratio IS NULL").fetchone()[0] == 2
        assert store.con.execute("SELECT low_confidence_audio, audio_flag FROM item_verdicts").fetchall() == [
            (None, None)]
        seg = store.load_transcript("aaaa").segments[0]
        assert (seg.text, seg.confidence, seg.avg_logprob) == ("您好，我是王琳", 0.9, None)
        checklist = load_checklist("sales_core")
        store.save_checklist(checklist)
        ev = Evidence(0, "agent", seg.text, seg.start, seg.end)
        store.save_score("aaaa", call_score(checklist, [ItemVerdict("greeting", "pass", 0.9, (ev,))]))
        assert store.con.execute("SELECT low_confidence_audio, audio_flag FROM item_verdicts WHERE "
                                 "checklist_version = ?", [checklist.version]).fetchall() == [(False, None)]
