"""The read model for a week: every number a QA lead sees, computed one way.

`callqa scorecard`, the scheduled weekly artifact, `callqa report` (HTML, CSV, Parquet) and the
trainer notebook all read calls through `load_dataset` and agents through `agent_weeks`, so they
cannot disagree. Each call's score is recomputed from its *effective* verdicts (the latest human
override where there is one) by `qa_rules`' own `call_score`, on the checklist rebuilt from the YAML
stored with that version: weighted share of applicable items passed, 0 when a critical item failed.
The machine's stored `call_scores.score` is only the score before review.

The queries live in `pipelines/store/reads.py`; every function here takes what the caller holds (a
`Store`, usually `Store.open_readonly`, or the web app's pooled connection) and passes it on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields

from callqa.pipelines.store import reads
from callqa.pipelines.store.reader import Reader
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST
from callqa.qa_rules.engine import call_score

from callqa.records import ItemVerdict, ReviewedVerdict, StoredCall

# A verdict of the read model: the stored one with the latest human review applied (callqa.records).
Verdict = ReviewedVerdict


def weeks(db: Reader, checklist_id: str = DEFAULT_CHECKLIST) -> list[str]:
    """Every ISO week with a scored call under `checklist_id`, oldest first."""
    return reads.scored_weeks(db, checklist_id)


_STORED_FIELDS = tuple(f.name for f in fields(StoredCall))


@dataclass(frozen=True)
class Call(StoredCall):
    """A stored call (who, when, where the audio is) with its verdicts, human reviews applied, and the score
    `qa_rules` gives them."""

    score: float
    critical_fail: bool
    verdicts: dict[str, Verdict]

    @classmethod
    def of(cls, stored: StoredCall, score: float, critical_fail: bool, verdicts: dict[str, Verdict]) -> Call:
        return cls(*(getattr(stored, name) for name in _STORED_FIELDS), score, critical_fail, verdicts)

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
        """Share of this agent's applicable calls that passed `item_id` (None: never applicable)."""
        n = self.applicable.get(item_id, 0)
        return round(self.passed.get(item_id, 0) / n, 3) if n else None

    def rank_key(self) -> tuple:
        """Best score first, then fewer critical fails, then agent id."""
        return -self.score, self.critical_fails, self.agent_id


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


def load_dataset(db: Reader, checklist_id: str = DEFAULT_CHECKLIST,
                 version: int | None = None, weeks: list[str] | None = None) -> Dataset:
    """Every scored call with a start time under one checklist version (only `weeks`, when given),
    human overrides applied and each call scored by `qa_rules`' `call_score`."""
    version = version or reads.latest_version(db, checklist_id)
    if version is None:
        raise LookupError(f"no calls scored with checklist {checklist_id!r} yet")
    checklist = reads.checklist_at(db, checklist_id, version)
    items = reads.checklist_items(db, checklist_id, version)
    by_rec = reads.reviewed_verdicts(db, checklist_id, version, weeks)
    calls = []
    for c in reads.scored_calls(db, checklist_id, version, weeks):
        verdicts = by_rec.get(c.recording_id, {})
        scored = call_score(checklist, [ItemVerdict(v.item_id, v.verdict, v.confidence) for v in verdicts.values()])
        calls.append(Call.of(c, scored.score, scored.critical_fail, verdicts))
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
    agents = sorted(now.values(), key=AgentWeek.rank_key)
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


@dataclass(frozen=True)
class Scorecard:
    """One week's per-agent scorecard (what `callqa scorecard` prints and the weekly artifact shows)."""

    checklist_id: str
    checklist_version: int
    week: str
    items: list[dict]  # the stored checklist's items, in order (id, title, weight, ...)
    agents: list[AgentWeek]  # best first
    # calls routing decided this week, per agent: {"routed": to this checklist, "elsewhere": to another one,
    # "skipped": not scored, "<reason>": skipped for that reason}; empty when no routing file was used
    routing: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return ({"routing": self.routing} if self.routing else {}) | {
            "checklist": {"id": self.checklist_id, "version": self.checklist_version},
            "week": self.week,
            "items": [{"id": it["id"], "title": it["title"], "weight": it["weight"]} for it in self.items],
            "agents": [{"agent_id": a.agent_id, "week": self.week, "calls": a.calls, "score": a.score,
                        "critical_fails": a.critical_fails,
                        "pass_rate": {it["id"]: a.pass_rate(it["id"]) for it in self.items}}
                       for a in self.agents],
        }


def weekly_scorecard(db: Reader, week: str | None = None,
                     checklist_id: str = DEFAULT_CHECKLIST, version: int | None = None) -> Scorecard:
    """Per agent for one ISO week (default: the latest): calls, mean score, critical fails, pass rate
    per item, human overrides applied."""
    version = version or reads.latest_version(db, checklist_id)
    if version is None:
        raise LookupError(f"no calls scored with checklist {checklist_id!r} yet")
    if week is None:
        all_weeks = weeks(db, checklist_id)
        if not all_weeks:
            raise LookupError("no scored calls with a start time")
        week = all_weeks[-1]
    ds = load_dataset(db, checklist_id, version, weeks=[week])
    return Scorecard(checklist_id, version, week, ds.items, sorted(agent_weeks(ds, week).values(),
                                                                  key=AgentWeek.rank_key),
                     routing_counts(db, week, checklist_id))


def routing_counts(db: Reader, week: str, checklist_id: str) -> dict[str, dict[str, int]]:
    """Per agent, the week's calls as routing last decided them (see `Scorecard.routing`)."""
    out: dict[str, dict[str, int]] = {}
    for r in reads.route_counts(db, week):
        a = out.setdefault(r.agent_id, {"routed": 0, "elsewhere": 0, "skipped": 0})
        if r.skip_reason:
            a["skipped"] += r.calls
            a[r.skip_reason] = a.get(r.skip_reason, 0) + r.calls
        else:
            a["routed" if r.checklist_id == checklist_id else "elsewhere"] += r.calls
    return dict(sorted(out.items()))
