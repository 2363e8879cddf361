"""Synthetic scored calls for benchmarks of the read side (`callqa pipeline-bench`'s scorecard on a big
database; the review workstation's bench): made in SQL inside DuckDB, so a million verdict rows take seconds, not
minutes."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
from callqa.pipelines.store.database import Store
from callqa.qa_rules.checklist import Checklist


def add_synthetic_calls(store: Store, checklist: Checklist, n_calls: int, agents: int, weeks: int,
                        seed: int) -> None:
    """Add `n_calls` scored calls ('gen<i>') spread over `agents` agents and `weeks` weeks from 2026-05-04, each
    with a random score and one random verdict per item of `checklist` (70% pass, 24% fail, 6% na)."""
    con = store.con
    store.save_checklist(checklist)
    items = [it.id for it in checklist.items]
    con.execute(f"SELECT setseed({seed / 100})")
    con.execute(
        "INSERT INTO recordings (recording_id, path, file_name, agent_id, started_at, started_local, status, "
        "duration_s) SELECT 'gen' || i, '/gen/' || i || '.flac', i || '.flac', "
        "'A' || lpad(CAST(i % ? AS VARCHAR), 3, '0'), TIMESTAMPTZ '2026-05-04 09:00:00+08' + "
        "to_seconds(CAST(floor(random() * ? * 7 * 86400) AS BIGINT)), NULL, 'scored', 60 + random() * 300 "
        "FROM range(?) t(i)", [agents, weeks, n_calls],
    )
    con.execute("UPDATE recordings SET started_local = CAST(timezone('Asia/Shanghai', started_at) AS TIMESTAMP) "
                "WHERE recording_id LIKE 'gen%'")
    con.execute(
        "INSERT INTO call_scores (recording_id, checklist_id, checklist_version, score, points, max_points, "
        "critical_fail) SELECT recording_id, ?, ?, round(random() * 100, 1), 0, 0, random() < 0.05 "
        "FROM recordings WHERE recording_id LIKE 'gen%'", [checklist.id, checklist.version],
    )
    con.execute(
        "INSERT INTO item_verdicts (recording_id, checklist_id, checklist_version, item_id, verdict, confidence, "
        "evidence, reason) SELECT r.recording_id, ?, ?, it.item_id, CASE WHEN random() < 0.7 THEN 'pass' WHEN "
        "random() < 0.8 THEN 'fail' ELSE 'na' END, random(), '[]', '' FROM recordings r, "
        "(SELECT unnest(?) AS item_id) it WHERE r.recording_id LIKE 'gen%'", [checklist.id, checklist.version, items],
    )


def copy_calls(src: Path, dst: Path, copies: int) -> dict[str, int]:
    """`dst`: a copy of the database `src` with every scored call copied `copies` times under new recording ids,
    call ids (`<call>-<nnn>`), agents (54 from 9 shifts of the dev set's 6) and start times (0-7 weeks earlier),
    with its segments, verdicts and score, in SQL (the review workstation's bench: `pipelines/app/bench.py`).
    Returns the table counts of `dst`."""
    shutil.copy(src, dst)
    with Store(dst) as store:
        with store.transaction() as con:
            con.execute("""CREATE TEMP TABLE copymap AS
                SELECT r.recording_id AS old, sha256(r.recording_id || '#' || i) AS new, i,
                       r.call_id || '-' || lpad(CAST(i AS VARCHAR), 3, '0') AS call_id,
                       'A' || lpad(CAST(1 + (CAST(substr(r.agent_id, 2) AS INTEGER) - 1 + 6 * (i % 9))
                                        AS VARCHAR), 2, '0') AS agent_id,
                       (i % 8) * 7 AS days_back
                FROM recordings r, range(1, ? + 1) t(i)
                WHERE r.recording_id IN (SELECT recording_id FROM call_scores)""", [copies])
            cols = _columns(con, "recordings")
            override = {"recording_id": "m.new", "call_id": "m.call_id", "agent_id": "m.agent_id",
                        "started_at": "r.started_at - to_days(m.days_back)",
                        "started_local": "r.started_local - to_days(m.days_back)"}
            select = ", ".join(override.get(c, f"r.{c}") for c in cols)
            con.execute(f"INSERT INTO recordings ({', '.join(cols)}) SELECT {select} "
                        "FROM recordings r JOIN copymap m ON m.old = r.recording_id")
            for table in ("segments", "item_verdicts", "call_scores"):
                tcols = _columns(con, table)
                sel = ", ".join("m.new" if c == "recording_id" else f"t.{c}" for c in tcols)
                con.execute(f"INSERT INTO {table} ({', '.join(tcols)}) SELECT {sel} "
                            f"FROM {table} t JOIN copymap m ON m.old = t.recording_id")
        store.con.execute("CHECKPOINT")
        return store.counts()


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table]).fetchall()]
