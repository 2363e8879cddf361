"""Appeals: an agent disputes one verdict with a reason; a reviewer closes it with a final judgment.

`upheld` keeps the verdict; `overturned` records the final verdict as a human review (`review.add_review`, so
reports, the scorecard and agreement use it like any other override). An appeal row is closed, never deleted:
the table (`verdict_appeals`, migration 6) is the history. Writes take a writing `Store` (it holds the writer lock:
`Store(path)`, or the web app's `Pool.write()`); reads any `Reader`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
from callqa.pipelines.store.reader import Reader, connection, has_table
from callqa.pipelines.store.review import VERDICTS, add_review, effective_verdicts_sql, resolve_recording
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

STATUSES = ("open", "upheld", "overturned")
OUTCOMES = ("upheld", "overturned")


@dataclass(frozen=True)
class Appeal:
    appeal_id: int
    recording_id: str
    call_id: str | None
    agent_id: str | None
    checklist_id: str
    checklist_version: int
    item_id: str
    disputed_verdict: str
    appellant: str
    reason: str
    created_at: datetime | None
    status: str
    resolver: str | None
    resolution: str | None
    final_verdict: str | None
    review_id: int | None
    resolved_at: datetime | None


_COLUMNS = ("a.appeal_id, a.recording_id, r.call_id, r.agent_id, a.checklist_id, a.checklist_version, a.item_id, "
            "a.disputed_verdict, a.appellant, a.reason, a.created_at, a.status, a.resolver, a.resolution, "
            "a.final_verdict, a.review_id, a.resolved_at")


def list_appeals(db: Reader, status: str | None = None, recording_id: str | None = None,
                 appeal_id: int | None = None) -> list[Appeal]:
    """Appeals, newest first (empty on a database that predates migration 6)."""
    con = connection(db)
    if not has_table(con, "verdict_appeals"):
        return []
    where, params = [], []
    if status:
        where.append("a.status = ?")
        params.append(status)
    if recording_id:
        where.append("a.recording_id = ?")
        params.append(recording_id)
    if appeal_id is not None:
        where.append("a.appeal_id = ?")
        params.append(appeal_id)
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM verdict_appeals a LEFT JOIN recordings r ON r.recording_id = a.recording_id "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY a.appeal_id DESC", params).fetchall()
    return [Appeal(*row) for row in rows]


def _current_verdict(con: duckdb.DuckDBPyConnection, rid: str, item_id: str, checklist_id: str) -> tuple[int, str]:
    row = con.execute(
        f"SELECT e.checklist_version, e.verdict FROM ({effective_verdicts_sql(con)}) e WHERE e.recording_id = ? "
        "AND e.checklist_id = ? AND e.item_id = ? ORDER BY e.checklist_version DESC LIMIT 1",
        [rid, checklist_id, item_id]).fetchone()
    if row is None:
        items = [r[0] for r in con.execute(
            "SELECT DISTINCT item_id FROM item_verdicts WHERE recording_id = ? AND checklist_id = ? ORDER BY 1",
            [rid, checklist_id]).fetchall()]
        raise LookupError(f"no verdict for item {item_id!r} on this call; items: {', '.join(items) or 'none'}")
    return int(row[0]), str(row[1])


def open_appeal(db: Reader, call: str, item_id: str, appellant: str, reason: str,
                checklist_id: str = DEFAULT_CHECKLIST) -> Appeal:
    """Dispute the current verdict of one item of one call (one open appeal per verdict at a time); `db`: a writing
    `Store`."""
    con = connection(db)
    if not appellant.strip():
        raise ValueError("an appeal needs the appellant's name")
    if not reason.strip():
        raise ValueError("an appeal needs a reason")
    try:
        rid = resolve_recording(con, call)
    except ValueError as e:
        raise LookupError(str(e)) from None
    version, verdict = _current_verdict(con, rid, item_id, checklist_id)
    already = con.execute(
        "SELECT appeal_id FROM verdict_appeals WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ? "
        "AND item_id = ? AND status = 'open'", [rid, checklist_id, version, item_id]).fetchone()
    if already:
        raise ValueError(f"appeal {already[0]} on this verdict is still open")
    next_id = con.execute("SELECT coalesce(max(appeal_id), 0) + 1 FROM verdict_appeals").fetchone()[0]
    con.execute(
        "INSERT INTO verdict_appeals (appeal_id, recording_id, checklist_id, checklist_version, item_id, "
        "disputed_verdict, appellant, reason, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open')",
        [next_id, rid, checklist_id, version, item_id, verdict, appellant.strip(), reason.strip()])
    return list_appeals(con, appeal_id=next_id)[0]


def close_appeal(db: Reader, appeal_id: int, outcome: str, resolver: str, comment: str = "",
                 verdict: str | None = None) -> Appeal:
    """Close an open appeal (`db`: a writing `Store`). `overturned` needs the final verdict (default: pass <-> fail
    flipped) and writes it as a review by `resolver`; `upheld` keeps the disputed verdict."""
    con = connection(db)
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if not resolver.strip():
        raise ValueError("closing an appeal needs the reviewer's name")
    found = list_appeals(con, appeal_id=appeal_id)
    if not found:
        raise LookupError(f"no appeal {appeal_id}")
    a = found[0]
    if a.status != "open":
        raise ValueError(f"appeal {appeal_id} is already closed ({a.status})")
    review_id = None
    if outcome == "upheld":
        if verdict not in (None, a.disputed_verdict):
            raise ValueError("an upheld appeal keeps the disputed verdict; overturn it to change the verdict")
        final = a.disputed_verdict
    else:
        if verdict is None:
            flips = {"pass": "fail", "fail": "pass"}
            if a.disputed_verdict not in flips:
                raise ValueError(f"overturning a {a.disputed_verdict!r} verdict needs the final verdict")
            verdict = flips[a.disputed_verdict]
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        if verdict == a.disputed_verdict:
            raise ValueError("an overturned appeal needs a verdict different from the disputed one")
        note = f"appeal {appeal_id} overturned" + (f": {comment.strip()}" if comment.strip() else "")
        review = add_review(con, a.recording_id, a.item_id, verdict, resolver, note, a.checklist_id,
                            a.checklist_version)
        review_id, final = review.review_id, verdict
    con.execute(
        "UPDATE verdict_appeals SET status = ?, resolver = ?, resolution = ?, final_verdict = ?, review_id = ?, "
        "resolved_at = current_timestamp WHERE appeal_id = ?",
        [outcome, resolver.strip(), comment.strip() or None, final, review_id, appeal_id])
    return list_appeals(con, appeal_id=appeal_id)[0]
