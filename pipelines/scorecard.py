"""Weekly per-agent scorecards from the store (ISO weeks of the call's local wall-clock time)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

WEEK_EXPR = "isoyear(r.started_local) || '-W' || lpad(CAST(week(r.started_local) AS VARCHAR), 2, '0')"


@dataclass(frozen=True)
class AgentWeek:
    agent_id: str
    week: str
    calls: int
    score: float  # mean call score 0-100
    critical_fails: int
    pass_rate: dict[str, float | None]  # item → share of applicable calls passed (None: never applicable)


@dataclass(frozen=True)
class Scorecard:
    checklist_id: str
    checklist_version: int
    week: str
    items: list[dict]  # the stored checklist's items, in order (id, title, weight, ...)
    agents: list[AgentWeek]

    def to_dict(self) -> dict:
        return {
            "checklist": {"id": self.checklist_id, "version": self.checklist_version},
            "week": self.week,
            "items": [{"id": it["id"], "title": it["title"], "weight": it["weight"]} for it in self.items],
            "agents": [a.__dict__ for a in self.agents],
        }


def latest_checklist_version(con: duckdb.DuckDBPyConnection, checklist_id: str) -> int | None:
    row = con.execute(
        "SELECT max(checklist_version) FROM call_scores WHERE checklist_id = ?", [checklist_id]
    ).fetchone()
    return row[0] if row else None


def weeks(con: duckdb.DuckDBPyConnection, checklist_id: str = "sales_core") -> list[str]:
    rows = con.execute(
        f"SELECT DISTINCT {WEEK_EXPR} AS wk FROM recordings r JOIN call_scores s USING (recording_id) "
        "WHERE s.checklist_id = ? AND r.started_local IS NOT NULL ORDER BY wk", [checklist_id],
    ).fetchall()
    return [r[0] for r in rows]


def weekly_scorecard(
    con: duckdb.DuckDBPyConnection, week: str | None = None, checklist_id: str = "sales_core",
    version: int | None = None,
) -> Scorecard:
    """Per agent for one ISO week: calls, mean score, critical fails, pass rate per item."""
    version = version or latest_checklist_version(con, checklist_id)
    if version is None:
        raise LookupError(f"no calls scored with checklist {checklist_id!r} yet")
    if week is None:
        all_weeks = weeks(con, checklist_id)
        if not all_weeks:
            raise LookupError("no scored calls with a start time")
        week = all_weeks[-1]
    items_json = con.execute(
        "SELECT items FROM checklists WHERE checklist_id = ? AND version = ?", [checklist_id, version]
    ).fetchone()
    items = json.loads(items_json[0]) if items_json else []
    params = [checklist_id, version, week]
    base = (
        "FROM recordings r JOIN call_scores s USING (recording_id) "
        f"WHERE s.checklist_id = ? AND s.checklist_version = ? AND {WEEK_EXPR} = ?"
    )
    totals = con.execute(
        f"SELECT coalesce(r.agent_id, '(unknown)') AS agent, count(*), avg(s.score), "
        f"sum(CAST(s.critical_fail AS INTEGER)) {base} GROUP BY agent ORDER BY avg(s.score) DESC, agent", params,
    ).fetchall()
    rates = con.execute(
        "SELECT coalesce(r.agent_id, '(unknown)') AS agent, v.item_id, "
        "count(*) FILTER (WHERE v.verdict = 'pass'), count(*) FILTER (WHERE v.verdict IN ('pass', 'fail')) "
        "FROM recordings r JOIN call_scores s USING (recording_id) "
        "JOIN item_verdicts v ON v.recording_id = s.recording_id AND v.checklist_id = s.checklist_id "
        "AND v.checklist_version = s.checklist_version "
        f"WHERE s.checklist_id = ? AND s.checklist_version = ? AND {WEEK_EXPR} = ? GROUP BY agent, v.item_id",
        params,
    ).fetchall()
    by_agent: dict[str, dict[str, float | None]] = {}
    for agent, item, passed, applicable in rates:
        by_agent.setdefault(agent, {})[item] = round(passed / applicable, 3) if applicable else None
    agents = [
        AgentWeek(agent, week, int(n), round(float(score), 1), int(crit or 0),
                  {it["id"]: by_agent.get(agent, {}).get(it["id"]) for it in items})
        for agent, n, score, crit in totals
    ]
    return Scorecard(checklist_id, version, week, items, agents)


def format_scorecard(card: Scorecard, lang: str = "en") -> str:
    """A plain-text table: one row per agent, one column per scored item."""
    scored = [it for it in card.items if it.get("weight", 0) > 0]
    heads = ["agent", "calls", "score", "crit"] + [it["id"] for it in scored]
    rows = [[a.agent_id, str(a.calls), f"{a.score:.1f}", str(a.critical_fails)]
            + ["-" if a.pass_rate.get(it["id"]) is None else f"{100 * a.pass_rate[it['id']]:.0f}%" for it in scored]
            for a in card.agents]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    out = [f"Weekly scorecard {card.week} — checklist {card.checklist_id} v{card.checklist_version}", line,
           "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append("score: mean call score 0-100 (a critical fail scores 0); item columns: share of applicable "
               "calls passed")
    return "\n".join(out)
