"""What the weekly report shows, computed from the store with human overrides applied.

Calls are read once per report (all weeks of one checklist version, so trends and the change
against the previous week come from the same numbers); each call's score is recomputed from its
effective verdicts with the stored checklist's weights, the same rule as the engine's
`call_score`: weighted share of applicable items passed, 0 when a critical item failed.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
from callqa.pipelines.review import effective_verdicts_sql
from callqa.pipelines.scorecard import WEEK_EXPR, latest_checklist_version

from callqa.records import Evidence


@dataclass(frozen=True)
class Verdict:
    item_id: str
    verdict: str  # effective: the human override when there is one
    auto_verdict: str
    human_verdict: str | None
    reviewer: str | None
    comment: str | None
    confidence: float
    evidence: tuple[Evidence, ...]
    reason: str


@dataclass(frozen=True)
class Call:
    recording_id: str
    call_id: str
    agent_id: str
    started_local: datetime | None
    week: str
    language: str | None
    path: str
    duration_s: float | None
    score: float
    critical_fail: bool
    verdicts: dict[str, Verdict]

    @property
    def slug(self) -> str:
        """A file-name-safe call name for drill-down pages and clips."""
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in self.call_id)


@dataclass
class AgentWeek:
    agent_id: str
    calls: int
    score: float
    critical_fails: int
    passed: dict[str, int]
    applicable: dict[str, int]
    prev_score: float | None = None

    @property
    def change(self) -> float | None:
        return None if self.prev_score is None else round(self.score - self.prev_score, 1)

    def pass_rate(self, item_id: str) -> float | None:
        n = self.applicable.get(item_id, 0)
        return round(self.passed.get(item_id, 0) / n, 3) if n else None


@dataclass
class Dataset:
    checklist_id: str
    version: int
    items: list[dict]
    calls: list[Call]
    weeks: list[str] = field(default_factory=list)

    def item(self, item_id: str) -> dict:
        return next(it for it in self.items if it["id"] == item_id)

    @property
    def scored_items(self) -> list[dict]:
        return [it for it in self.items if it.get("weight", 0) > 0]

    def week_calls(self, week: str, agent: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.week == week and (agent is None or c.agent_id == agent)]


def item_title(item: dict, lang: str = "en") -> str:
    title = item.get("title")
    if isinstance(title, dict):
        return title.get(lang) or next(iter(title.values()), item["id"])
    return str(title or item["id"])


def _score(items: list[dict], verdicts: dict[str, Verdict]) -> tuple[float, bool]:
    points = max_points = 0.0
    critical = False
    for it in items:
        v = verdicts.get(it["id"])
        if v is None or v.verdict == "na":
            continue
        max_points += it.get("weight", 0)
        if v.verdict == "pass":
            points += it.get("weight", 0)
        elif it.get("critical"):
            critical = True
    return (0.0 if critical or max_points == 0 else round(100.0 * points / max_points, 2)), critical


def load_dataset(con: duckdb.DuckDBPyConnection, checklist_id: str = "sales_core",
                 version: int | None = None) -> Dataset:
    """Every scored call with a start time under one checklist version, overrides applied."""
    version = version or latest_checklist_version(con, checklist_id)
    if version is None:
        raise LookupError(f"no calls scored with checklist {checklist_id!r} yet")
    row = con.execute("SELECT items FROM checklists WHERE checklist_id = ? AND version = ?",
                      [checklist_id, version]).fetchone()
    items = json.loads(row[0]) if row else []
    recs = con.execute(
        f"SELECT r.recording_id, coalesce(r.call_id, r.file_name), coalesce(r.agent_id, '(unknown)'), "
        f"r.started_local, {WEEK_EXPR}, coalesce(r.language, r.detected_language), r.path, r.duration_s "
        "FROM recordings r JOIN call_scores s ON s.recording_id = r.recording_id "
        "WHERE s.checklist_id = ? AND s.checklist_version = ? AND r.started_local IS NOT NULL "
        "ORDER BY r.started_local, r.recording_id", [checklist_id, version],
    ).fetchall()
    verdict_rows = con.execute(
        f"SELECT recording_id, item_id, verdict, auto_verdict, human_verdict, reviewer, comment, confidence, "
        f"evidence, reason FROM ({effective_verdicts_sql(con)}) WHERE checklist_id = ? AND checklist_version = ?",
        [checklist_id, version],
    ).fetchall()
    by_rec: dict[str, dict[str, Verdict]] = {}
    for rid, item, verdict, auto, human, reviewer, comment, conf, ev, reason in verdict_rows:
        evidence = tuple(Evidence(**e) for e in json.loads(ev or "[]"))
        by_rec.setdefault(rid, {})[item] = Verdict(item, verdict, auto, human, reviewer, comment, conf or 0.0,
                                                   evidence, reason or "")
    calls = []
    for rid, call_id, agent, started, week, lang, path, duration in recs:
        verdicts = by_rec.get(rid, {})
        score, critical = _score(items, verdicts)
        calls.append(Call(rid, str(call_id), str(agent), started, week, lang, path, duration, score, critical,
                          verdicts))
    return Dataset(checklist_id, version, items, calls, sorted({c.week for c in calls}))


def agent_weeks(ds: Dataset, week: str) -> dict[str, AgentWeek]:
    """Per agent for one week: calls, mean score, critical fails, passed / applicable per item."""
    out: dict[str, AgentWeek] = {}
    for c in ds.week_calls(week):
        a = out.setdefault(c.agent_id, AgentWeek(c.agent_id, 0, 0.0, 0, {}, {}))
        a.calls += 1
        a.score += c.score
        a.critical_fails += int(c.critical_fail)
        for item_id, v in c.verdicts.items():
            if v.verdict in ("pass", "fail"):
                a.applicable[item_id] = a.applicable.get(item_id, 0) + 1
                a.passed[item_id] = a.passed.get(item_id, 0) + (v.verdict == "pass")
    for a in out.values():
        a.score = round(a.score / a.calls, 1)
    return out


def previous_week(ds: Dataset, week: str) -> str | None:
    earlier = [w for w in ds.weeks if w < week]
    return earlier[-1] if earlier else None


@dataclass
class WeekSummary:
    week: str
    previous_week: str | None
    agents: list[AgentWeek]  # sorted: best score first
    team_median_score: float | None
    team_median_pass_rate: dict[str, float | None]
    team_pass_rate: dict[str, float | None]  # all the week's calls pooled
    trends: dict[str, list[float | None]]  # agent → mean score per week of `trend_weeks`
    trend_weeks: list[str]


def week_summary(ds: Dataset, week: str, trend_span: int = 8) -> WeekSummary:
    if week not in ds.weeks:
        raise LookupError(f"no scored calls in week {week}; weeks with calls: {', '.join(ds.weeks) or 'none'}")
    prev = previous_week(ds, week)
    now = agent_weeks(ds, week)
    before = agent_weeks(ds, prev) if prev else {}
    for agent, a in now.items():
        if agent in before:
            a.prev_score = before[agent].score
    agents = sorted(now.values(), key=lambda a: (-a.score, a.critical_fails, a.agent_id))
    median = round(statistics.median(a.score for a in agents), 1) if agents else None
    med_rate: dict[str, float | None] = {}
    pooled: dict[str, float | None] = {}
    for it in ds.items:
        rates = [r for a in agents if (r := a.pass_rate(it["id"])) is not None]
        med_rate[it["id"]] = round(statistics.median(rates), 3) if rates else None
        n = sum(a.applicable.get(it["id"], 0) for a in agents)
        pooled[it["id"]] = round(sum(a.passed.get(it["id"], 0) for a in agents) / n, 3) if n else None
    trend_weeks = [w for w in ds.weeks if w <= week][-trend_span:]
    per_week = {w: agent_weeks(ds, w) for w in trend_weeks}
    trends = {a.agent_id: [per_week[w][a.agent_id].score if a.agent_id in per_week[w] else None
                           for w in trend_weeks] for a in agents}
    return WeekSummary(week, prev, agents, median, med_rate, pooled, trends, trend_weeks)
