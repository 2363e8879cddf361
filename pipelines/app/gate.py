"""The auto-accept gate: an item's verdicts skip the review queue only while people measurably agree with them.

A checklist item may carry `review: {auto_accept_min_lower: 0.8, agreement: kappa|ac1, min_reviewed: 30}`
(docs/checklists.md). Its agreement is measured over every reviewed verdict of the checklist version (the machine's
verdict when it was stored beside the latest human one, what `callqa review stats` reads), with the same functions
(`cohen_kappa`, `gwet_ac1`, `bootstrap_interval`: a seeded 95% percentile bootstrap). The gate opens when at least
`min_reviewed` verdicts were reviewed and the lower end of the chosen statistic's interval reaches the bar; until
then every unreviewed verdict of the item goes to the queue. Items without `review` are not gated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
from callqa.pipelines.store.review import cohen_kappa, effective_verdicts_sql, gwet_ac1

AUTO, QUEUE, UNGATED = "auto-accept", "to the queue", "not gated"


@dataclass(frozen=True)
class ItemGate:
    item_id: str
    reviewed: int
    agreed: int
    kappa: float | None
    kappa_interval: tuple[float, float] | None
    ac1: float | None
    ac1_interval: tuple[float, float] | None
    rule: dict[str, Any]  # the item's `review` section ({} when not gated)

    @property
    def raw_agreement(self) -> float | None:
        return round(self.agreed / self.reviewed, 3) if self.reviewed else None

    @property
    def lower(self) -> float | None:
        """The lower end of the interval of the statistic the rule names (kappa unless told)."""
        stat = self.rule.get("agreement", "kappa")
        ci = self.ac1_interval if stat == "ac1" else self.kappa_interval
        return None if ci is None else ci[0]

    @property
    def status(self) -> str:
        if not self.rule:
            return UNGATED
        if self.reviewed >= self.rule["min_reviewed"] and self.lower is not None \
                and self.lower >= self.rule["auto_accept_min_lower"]:
            return AUTO
        return QUEUE

    @property
    def why(self) -> str:
        """The decision in words, with the numbers it rests on."""
        if not self.rule:
            return "no auto-accept rule: low confidence, critical fails and the sample go to the queue"
        stat, bar, need = self.rule["agreement"], self.rule["auto_accept_min_lower"], self.rule["min_reviewed"]
        if self.reviewed < need:
            return f"{self.reviewed} of {need} reviewed verdicts needed before {stat} can open the gate"
        if self.lower is None:
            return f"no interval of {stat} yet"
        sign = ">=" if self.status == AUTO else "<"
        return f"{stat} 95% lower bound {self.lower:.2f} {sign} {bar:.2f} over {self.reviewed} reviewed"


def reviewed_pairs(con: duckdb.DuckDBPyConnection, checklist_id: str, version: int) -> dict[str, list[tuple[str, str]]]:
    """(machine verdict, latest human verdict) per item for every reviewed verdict of one checklist version."""
    rows = con.execute(
        f"SELECT e.item_id, e.auto_verdict, e.human_verdict FROM ({effective_verdicts_sql(con)}) e "
        "JOIN recordings r ON r.recording_id = e.recording_id "
        "WHERE e.checklist_id = ? AND e.checklist_version = ? AND e.human_verdict IS NOT NULL "
        "ORDER BY e.recording_id, e.item_id", [checklist_id, version]).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for item, auto, human in rows:
        out.setdefault(item, []).append((auto, human))
    return out


def item_gates(pairs: dict[str, list[tuple[str, str]]], item_ids: list[str],
               rules: dict[str, dict[str, Any]]) -> dict[str, ItemGate]:
    out = {}
    for item in item_ids:
        p = pairs.get(item, [])
        k, ac1 = cohen_kappa(p), gwet_ac1(p)
        k_ci, ac1_ci = bootstrap_intervals(p)
        out[item] = ItemGate(item, len(p), sum(a == h for a, h in p), None if k is None else round(k, 3), k_ci,
                             None if ac1 is None else round(ac1, 3), ac1_ci, rules.get(item) or {})
    return out


def reviews_fingerprint(con: duckdb.DuckDBPyConnection, checklist_id: str, version: int) -> tuple:
    """Changes whenever a review of this version is added or a reviewed call is re-scored."""
    from .db import has_table

    if not has_table(con, "verdict_reviews"):
        return (0,)
    return con.execute(
        "SELECT count(*), max(v.review_id), max(r.updated_at) FROM verdict_reviews v "
        "LEFT JOIN recordings r ON r.recording_id = v.recording_id "
        "WHERE v.checklist_id = ? AND v.checklist_version = ?", [checklist_id, version]).fetchone()


def bootstrap_intervals(pairs: list[tuple[str, str]], resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """The 95% bootstrap intervals of kappa and of AC1 that `review.bootstrap_interval(pairs, stat)` gives, with the
    same seeded resamples, in milliseconds instead of seconds (it re-counts every resample in Python: ~4 s for
    1,000 reviewed verdicts and both statistics, on every change, too slow for a page).

    Same draws: `random.Random(seed).randrange(n)` takes `n.bit_length()` top bits of each 32-bit Mersenne Twister
    output and rejects values >= n; numpy's MT19937, set to that generator's state, yields the same outputs, so
    the same indices come out, resample by resample. Each resample is then a 3x3 table of (machine, human)
    counts, and kappa and AC1 are computed from the tables exactly as `cohen_kappa` and `gwet_ac1` do (tests
    compare both functions on real and skewed data)."""
    n = len(pairs)
    if n < 5:
        return None, None
    cats = sorted({c for p in pairs for c in p})
    k = len(cats)
    code = np.array([cats.index(a) * k + cats.index(h) for a, h in pairs], dtype=np.int64)
    state = random.Random(seed).getstate()[1]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": np.array(state[:624], dtype=np.uint32),
                                                       "pos": state[624]}}
    shift = 32 - n.bit_length()
    need = n * resamples
    picks: list[np.ndarray] = []
    have = 0
    while have < need:
        raw = bits.random_raw(int((need - have) * 2.2) + 64) >> shift
        ok = raw[raw < n]
        picks.append(ok)
        have += len(ok)
    idx = np.concatenate(picks)[:need].reshape(resamples, n)
    cells = code[idx] + (np.arange(resamples) * k * k)[:, None]
    tables = np.bincount(cells.ravel(), minlength=resamples * k * k).reshape(resamples, k, k)
    agreed = np.trace(tables, axis1=1, axis2=2)
    observed = agreed / n
    rows, cols = tables.sum(axis=2), tables.sum(axis=1)  # machine's and human's counts per category
    expected = (rows * cols).sum(axis=1) / (n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(expected >= 1.0, np.where(observed == 1.0, 1.0, 0.0),
                         (observed - expected) / (1.0 - expected))
        both = rows + cols
        present = (both > 0).sum(axis=1)
        share = both / (2 * n)
        chance = (share * (1 - share)).sum(axis=1) / np.maximum(present - 1, 1)
        ac1 = np.where(present < 2, np.where(observed == 1.0, 1.0, 0.0), (observed - chance) / (1.0 - chance))
    last = resamples - 1

    def interval(values: np.ndarray) -> tuple[float, float]:
        v = np.sort(values)
        return round(float(v[int((1 - level) / 2 * last)]), 3), round(float(v[int((1 + level) / 2 * last)]), 3)

    return interval(kappa), interval(ac1)
