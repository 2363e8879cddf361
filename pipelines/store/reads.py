"""The queries behind the week's read model (`pipelines/reports/report_data.py`) and the report pages:
weeks with scored calls, the scored calls of a checklist version, their verdicts with human reviews
applied, routing decisions, a call's segments. Every function takes a `Reader` (a `Store` or a pooled
connection) and returns records from `callqa.records`, never raw rows."""

from __future__ import annotations

import json

from callqa.pipelines.store.database import WEEK_EXPR, latest_checklist_version, stored_checklist
from callqa.pipelines.store.reader import Reader, connection
from callqa.pipelines.store.review import effective_verdicts_sql
from callqa.qa_rules.checklist import Checklist

from callqa.records import AgentActivity, ReviewedVerdict, RouteCount, Segment, StoredCall


def scored_weeks(db: Reader, checklist_id: str) -> list[str]:
    """Every ISO week with a scored call under `checklist_id`, oldest first."""
    rows = connection(db).execute(
        f"SELECT DISTINCT {WEEK_EXPR} AS wk FROM recordings r JOIN call_scores s USING (recording_id) "
        "WHERE s.checklist_id = ? AND r.started_local IS NOT NULL ORDER BY wk", [checklist_id],
    ).fetchall()
    return [r[0] for r in rows]


def latest_version(db: Reader, checklist_id: str) -> int | None:
    """The newest checklist version any call was scored with (None: no call scored with it)."""
    return latest_checklist_version(connection(db), checklist_id)


def checklist_at(db: Reader, checklist_id: str, version: int) -> Checklist:
    """The checklist as stored with its verdicts, rebuilt from its YAML (LookupError when not stored)."""
    return stored_checklist(connection(db), checklist_id, version)


def checklist_items(db: Reader, checklist_id: str, version: int) -> list[dict]:
    """The stored checklist's items as the reports show them (id, title, weight, critical, ...); [] if unknown."""
    row = connection(db).execute("SELECT items FROM checklists WHERE checklist_id = ? AND version = ?",
                                 [checklist_id, version]).fetchone()
    return json.loads(row[0]) if row else []


def _week_filter(weeks: list[str] | None, params: list) -> str:
    if weeks is None:
        return ""
    params.append(list(weeks))
    return f"AND {WEEK_EXPR} IN (SELECT unnest(?))"


def scored_calls(db: Reader, checklist_id: str, version: int, weeks: list[str] | None = None) -> list[StoredCall]:
    """Every call scored under one checklist version that has a start time (only `weeks`, when given),
    in start-time order (then recording id)."""
    params: list = [checklist_id, version]
    week_filter = _week_filter(weeks, params)
    rows = connection(db).execute(
        f"SELECT r.recording_id, coalesce(r.call_id, r.file_name), coalesce(r.agent_id, '(unknown)'), "
        f"r.started_local, {WEEK_EXPR}, coalesce(r.language, r.detected_language), r.path, r.duration_s "
        "FROM recordings r JOIN call_scores s ON s.recording_id = r.recording_id "
        f"WHERE s.checklist_id = ? AND s.checklist_version = ? AND r.started_local IS NOT NULL {week_filter} "
        "ORDER BY r.started_local, r.recording_id", params,
    ).fetchall()
    return [StoredCall(rid, str(call_id), str(agent), started, week, lang, path, duration)
            for rid, call_id, agent, started, week, lang, path, duration in rows]


def reviewed_verdicts(db: Reader, checklist_id: str, version: int,
                      weeks: list[str] | None = None) -> dict[str, dict[str, ReviewedVerdict]]:
    """recording id -> item id -> its verdict with the latest human review applied, under one checklist version
    (only calls of `weeks`, when given)."""
    con = connection(db)
    params: list = [checklist_id, version]
    week_filter = _week_filter(weeks, params)
    rows = con.execute(
        f"SELECT e.recording_id, e.item_id, e.verdict, e.auto_verdict, e.human_verdict, e.reviewer, e.comment, "
        f"e.confidence, e.evidence, e.reason, e.audio_flag FROM ({effective_verdicts_sql(con)}) e "
        "JOIN recordings r ON r.recording_id = e.recording_id "
        f"WHERE e.checklist_id = ? AND e.checklist_version = ? {week_filter}", params,
    ).fetchall()
    by_rec: dict[str, dict[str, ReviewedVerdict]] = {}
    for rid, item, verdict, auto, human, reviewer, comment, conf, ev, reason, flag in rows:
        by_rec.setdefault(rid, {})[item] = ReviewedVerdict(item, verdict, auto, human, reviewer, comment,
                                                           conf or 0.0, ev or "[]", reason or "", flag)
    return by_rec


def route_counts(db: Reader, week: str) -> list[RouteCount]:
    """The week's calls per agent as routing last decided them (the newest decision per recording);
    [] on a database from before routing (no `call_routes`)."""
    con = connection(db)
    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'call_routes'").fetchone()[0]
    if not has:
        return []
    rows = con.execute(
        "SELECT coalesce(r.agent_id, '(unknown)'), c.checklist_id, c.skip_reason, count(*) FROM ("
        "  SELECT * FROM call_routes QUALIFY row_number() OVER (PARTITION BY recording_id ORDER BY decided_at DESC,"
        "  routing_version DESC) = 1) c JOIN recordings r ON r.recording_id = c.recording_id "
        f"WHERE r.started_local IS NOT NULL AND {WEEK_EXPR} = ? GROUP BY ALL", [week]).fetchall()
    return [RouteCount(agent, cid, reason, n) for agent, cid, reason, n in rows]


def call_segments(db: Reader, recording_id: str) -> list[Segment]:
    """A call's stored segments in order (speaker, times, masked text, ASR confidence)."""
    rows = connection(db).execute(
        "SELECT speaker, start_s, end_s, text, confidence FROM segments WHERE recording_id = ? ORDER BY seg_idx",
        [recording_id]).fetchall()
    return [Segment(*r) for r in rows]


def recording_duration(db: Reader, recording_id: str) -> float | None:
    """The stored audio duration of a recording in seconds (None: unknown or no such recording)."""
    row = connection(db).execute("SELECT duration_s FROM recordings WHERE recording_id = ?",
                                 [recording_id]).fetchone()
    return row[0] if row else None


def scored_audio_seconds(db: Reader) -> float:
    """Total audio duration of every scored recording."""
    return connection(db).execute(
        "SELECT coalesce(sum(duration_s), 0) FROM recordings WHERE status = 'scored'").fetchone()[0]


def verdict_rows(db: Reader) -> int:
    """How many verdict rows the database holds (all checklists and versions)."""
    return connection(db).execute("SELECT count(*) FROM item_verdicts").fetchone()[0]


def agent_activity(db: Reader) -> list[AgentActivity]:
    """Per agent (None: recordings without one), the scored calls stored and the first and last of them."""
    rows = connection(db).execute(
        "SELECT agent_id, count(*) AS calls, min(started_local) AS first_call, max(started_local) AS last_call "
        "FROM recordings WHERE status = 'scored' GROUP BY agent_id ORDER BY agent_id").fetchall()
    return [AgentActivity(*r) for r in rows]
