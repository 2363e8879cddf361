"""The queries behind the review workstation's pages (`pipelines/app/`) beyond the week's read model
(`reads.py`): the fingerprints its cache compares, the reviewed pairs its auto-accept gate measures, and
the small look-ups a page needs (a call's week, a recording's file, the items a call has verdicts for).
Every function takes a `Reader` (the app's pooled connection, or a `Store`) and returns plain values or
records, never raw rows."""

from __future__ import annotations

from callqa.pipelines.store.database import WEEK_EXPR
from callqa.pipelines.store.reader import Reader, connection, has_table
from callqa.pipelines.store.review import effective_verdicts_sql

# An opaque value that changes whenever what it covers changes: compared, never read.
Fingerprint = tuple


def week_fingerprints(db: Reader, checklist_id: str, version: int) -> dict[str, Fingerprint]:
    """{week: fingerprint} for every week with a call scored under this checklist version: the number of its scored
    calls and a hash over each call's recording id, `recordings.updated_at` (which every `Store.save_score` and
    `upsert_recording` moves), `call_scores.scored_at` and start time; then the number and highest id of its
    reviews."""
    con = connection(db)
    rows = con.execute(
        f"SELECT {WEEK_EXPR} AS wk, count(*), bit_xor(hash(r.recording_id, r.updated_at, s.scored_at, "
        "r.started_local)) FROM recordings r JOIN call_scores s ON s.recording_id = r.recording_id "
        "WHERE s.checklist_id = ? AND s.checklist_version = ? AND r.started_local IS NOT NULL GROUP BY ALL",
        [checklist_id, version]).fetchall()
    out = {wk: (n, h) for wk, n, h in rows}
    if has_table(con, "verdict_reviews"):
        for wk, n, last in con.execute(
                f"SELECT {WEEK_EXPR} AS wk, count(*), max(v.review_id) FROM verdict_reviews v "
                "JOIN recordings r ON r.recording_id = v.recording_id "
                "WHERE v.checklist_id = ? AND v.checklist_version = ? AND r.started_local IS NOT NULL GROUP BY ALL",
                [checklist_id, version]).fetchall():
            if wk in out:
                out[wk] = (*out[wk], n, last)
    return dict(sorted(out.items()))


def reviews_fingerprint(db: Reader, checklist_id: str, version: int) -> Fingerprint:
    """Changes whenever a review of this version is added or a reviewed call is re-scored."""
    con = connection(db)
    if not has_table(con, "verdict_reviews"):
        return (0,)
    return con.execute(
        "SELECT count(*), max(v.review_id), max(r.updated_at) FROM verdict_reviews v "
        "LEFT JOIN recordings r ON r.recording_id = v.recording_id "
        "WHERE v.checklist_id = ? AND v.checklist_version = ?", [checklist_id, version]).fetchone()


def reviewed_pairs(db: Reader, checklist_id: str, version: int) -> dict[str, list[tuple[str, str]]]:
    """(machine verdict, latest human verdict) per item for every reviewed verdict of one checklist version, in
    recording then item order."""
    con = connection(db)
    rows = con.execute(
        f"SELECT e.item_id, e.auto_verdict, e.human_verdict FROM ({effective_verdicts_sql(con)}) e "
        "JOIN recordings r ON r.recording_id = e.recording_id "
        "WHERE e.checklist_id = ? AND e.checklist_version = ? AND e.human_verdict IS NOT NULL "
        "ORDER BY e.recording_id, e.item_id", [checklist_id, version]).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for item, auto, human in rows:
        out.setdefault(item, []).append((auto, human))
    return out


def recording_week(db: Reader, recording_id: str) -> str | None:
    """The ISO week of a recording's local start time (None: no start time, or no such recording)."""
    row = connection(db).execute(f"SELECT {WEEK_EXPR} FROM recordings r WHERE r.recording_id = ?",
                                 [recording_id]).fetchone()
    return row[0] if row else None


def recording_file(db: Reader, recording_id: str) -> str | None:
    """The stored path of a recording's audio file (None: no such recording, or no path)."""
    row = connection(db).execute("SELECT path FROM recordings WHERE recording_id = ?", [recording_id]).fetchone()
    return row[0] if row and row[0] else None


def verdict_items(db: Reader, recording_id: str, checklist_id: str) -> list[str]:
    """The items a recording has stored verdicts for under `checklist_id` (any version), sorted."""
    return [r[0] for r in connection(db).execute(
        "SELECT DISTINCT item_id FROM item_verdicts WHERE recording_id = ? AND checklist_id = ? ORDER BY 1",
        [recording_id, checklist_id]).fetchall()]


def busiest_agent(db: Reader, week: str) -> tuple[str, str] | None:
    """(agent id, first call id) of the agent with the most scored calls in `week` (ties: the first agent id);
    None when the week has none. The app bench times that agent's page."""
    row = connection(db).execute(
        f"SELECT r.agent_id, min(r.call_id) FROM recordings r JOIN call_scores s USING (recording_id) "
        f"WHERE {WEEK_EXPR} = ? GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1", [week]).fetchone()
    return (row[0], row[1]) if row else None
