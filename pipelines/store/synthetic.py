"""Synthetic scored calls for benchmarks of the read side (`callqa pipeline-bench`'s scorecard on a big
database): made in SQL inside DuckDB, so a million verdict rows take seconds, not minutes."""

from __future__ import annotations

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
