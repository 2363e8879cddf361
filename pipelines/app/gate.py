"""The auto-accept gate: an item's verdicts skip the review queue only while people measurably agree with them.

A checklist item may carry `review: {auto_accept_min_lower: 0.8, agreement: kappa|ac1, min_reviewed: 30}`
(docs/checklists.md). Its agreement is measured over every reviewed verdict of the checklist version (the machine's
verdict when it was stored beside the latest human one, what `callqa review stats` reads), with the same functions
(`cohen_kappa`, `gwet_ac1`, `bootstrap_interval`: a seeded 95% percentile bootstrap). The gate opens when at least
`min_reviewed` verdicts were reviewed and the lower end of the chosen statistic's interval reaches the bar; until
then every unreviewed verdict of the item goes to the queue. Items without `review` are not gated. The pairs come
from `store.app_reads.reviewed_pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callqa.pipelines.store.review import bootstrap_intervals, cohen_kappa, gwet_ac1

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
