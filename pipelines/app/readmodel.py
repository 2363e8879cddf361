"""A cached read model: each week's calls and agent numbers kept between requests while the week is unchanged.

Every page needs one or more weeks as `report_data` computes them (`load_dataset`, `agent_weeks`): on 10,000
calls one week is ~1,000 calls and 6,000 verdicts, turned into Python objects and re-scored (human overrides
applied) on every request, and the agent page's 8-week trend needs 8 of them. Here each (checklist version,
week) is computed once, by those same functions, and kept with the week's *fingerprint*, one grouped query per
request (milliseconds):

- per week, the number of scored calls and a hash over each call's recording id, `recordings.updated_at`
  (which every `Store.save_score` and `upsert_recording` moves), `call_scores.scored_at` and start time;
- per week, the number and the highest id of its reviews.

A page uses a cached week only when its fingerprint is unchanged, so every page still shows the database as it
is now: a batch that scores a call of this week, a review, a re-scored or moved call each change the fingerprint
of the week(s) they touch, and only those weeks are computed again. Changes made around the `Store` with raw SQL
(an UPDATE of `item_verdicts` that leaves `recordings.updated_at` alone) are not seen until the app restarts.

`enabled=False` computes everything on every request (the bench's "before", and the tests' reference).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from callqa.pipelines.reports.report_data import AgentWeek, Dataset, agent_weeks, load_dataset
from callqa.pipelines.store.app_reads import Fingerprint, week_fingerprints
from callqa.pipelines.store.reader import Reader

MAX_WEEKS = 32  # weeks kept (each ~1,000 calls on a 10,000-call database)


@dataclass(frozen=True)
class WeekData:
    week: str
    ds: Dataset  # this week's calls only (ds.weeks == [week])
    agents: dict[str, AgentWeek]  # agent_weeks(ds, week); never mutate: copy with dataclasses.replace


class ReadModel:
    def __init__(self, checklist_id: str, enabled: bool = True, max_weeks: int = MAX_WEEKS):
        self.checklist_id = checklist_id
        self.enabled = enabled
        self.max_weeks = max_weeks
        self._weeks: OrderedDict[tuple[int, str], tuple[tuple, WeekData]] = OrderedDict()
        self._memo: dict[tuple, tuple[tuple, Any]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def fingerprints(self, con: Reader, version: int) -> dict[str, Fingerprint]:
        return week_fingerprints(con, self.checklist_id, version)

    def week(self, con: Reader, version: int, week: str,
             fingerprints: dict[str, Fingerprint] | None = None) -> WeekData:
        """One week's calls and agents, from the cache when its fingerprint is unchanged."""
        if not self.enabled:
            return self._compute(con, version, week)
        fps = fingerprints if fingerprints is not None else self.fingerprints(con, version)
        fp = fps.get(week, ())
        key = (version, week)
        with self._lock:
            hit = self._weeks.get(key)
            if hit is not None and hit[0] == fp:
                self._weeks.move_to_end(key)
                self.hits += 1
                return hit[1]
        data = self._compute(con, version, week)
        with self._lock:
            self.misses += 1
            self._weeks[key] = (fp, data)
            self._weeks.move_to_end(key)
            while len(self._weeks) > self.max_weeks:
                self._weeks.popitem(last=False)
        return data

    def _compute(self, con: Reader, version: int, week: str) -> WeekData:
        ds = load_dataset(con, self.checklist_id, version, weeks=[week])
        return WeekData(week, ds, agent_weeks(ds, week) if week in ds.weeks else {})

    def memo(self, key: tuple, fingerprint: tuple, compute: Any) -> Any:
        """`compute()` kept under `key` while `fingerprint` is unchanged (e.g. a week's review queue)."""
        if not self.enabled:
            return compute()
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None and hit[0] == fingerprint:
                return hit[1]
        value = compute()
        with self._lock:
            if len(self._memo) > 4 * self.max_weeks:
                self._memo.clear()
            self._memo[key] = (fingerprint, value)
        return value


def merged(weeks: list[WeekData]) -> Dataset:
    """Several cached weeks as one Dataset (calls in the order load_dataset gives: start time, recording id)."""
    first = weeks[0].ds
    calls = sorted((c for w in weeks for c in w.ds.calls), key=lambda c: (c.started_local, c.recording_id))
    return Dataset(first.checklist_id, first.version, first.items, calls, sorted({c.week for c in calls}))


def with_previous(agents: dict[str, AgentWeek], before: dict[str, AgentWeek]) -> dict[str, AgentWeek]:
    """Copies of `agents` with `prev_score` from the previous week, as `week_summary` sets it."""
    return {a: replace(x, prev_score=before[a].score if a in before else None) for a, x in agents.items()}
