"""Honest measurement of trained heads: leave-one-writer-out, side by side with the rules.

For every writer's set: train on all the other writers, predict that set, score per label. The same
split scores (a) the rules checklist, (b) the heads alone, and (d) the heads combined with rules where
rules are right (`COMBOS`), so one table compares them. Predictions from heads follow the engine's own
semantics (an item is found when one turn of its speaker reaches 0.5 calibrated probability; resolution
needs every predicted concern answered by one of the next agent turns and no forbidden phrase); a test
checks that the shipped checklist, run through the engine, gives the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from callqa.pipelines.learn.train import PAIR_HEAD, TURN_HEADS, CallData, TrainConfig, eligible, fit_heads, replies
from callqa.qa_rules.learned import Head, pair_features

LABELS = ("usage_scenario", "selling_point", "objection", "objection_resolved", "greeting", "forbidden_phrase")

# label → how (d) combines heads with rules: "model", "rules", "or" (either finds it), "and" (both must)
COMBOS: dict[str, str] = {"greeting": "or", "forbidden_phrase": "or"}


def _p(head: Head, x: np.ndarray) -> np.ndarray:
    return head.probability(x) if len(x) else np.zeros(0, np.float32)


def predict_call(heads: dict[str, Head], call: CallData, forbidden: bool | None = None,
                 objection: bool | None = None) -> dict[str, bool | None]:
    """Labels the heads give one call (`forbidden`/`objection` override the heads' own, for combinations)."""
    out: dict[str, bool | None] = {}
    probs: dict[str, np.ndarray] = {}
    for name, (speaker, first) in TURN_HEADS.items():
        if name not in heads:
            continue
        idx = eligible(call, speaker, first)
        p = _p(heads[name], call.feats[idx])
        probs[name] = np.zeros(len(call.speakers), np.float32)  # per turn: its best sentence
        np.maximum.at(probs[name], call.sent_turn[idx], p)
        out[name] = bool(len(p) and p.max() >= heads[name].threshold)
    if forbidden is not None:
        out["forbidden_phrase"] = forbidden
    if objection is not None:
        out["objection"] = objection
    if not out.get("objection"):
        out["objection_resolved"] = None
        return out
    concerns = [t for t, s in enumerate(call.speakers) if s == "customer"
                and probs["objection"][t] >= heads["objection"].threshold]
    answered = True
    for c in concerns:
        answers = replies(call, c)
        if not answers:
            answered = False
            break
        p = _p(heads[PAIR_HEAD], pair_features(np.repeat(call.vecs[[c]], len(answers), 0), call.vecs[answers]))
        if p.max() < heads[PAIR_HEAD].threshold:
            answered = False
            break
    out["objection_resolved"] = answered and not out.get("forbidden_phrase", False)
    return out


def combine(model: dict[str, bool | None], rules: dict[str, bool | None], combos: dict[str, str]
            ) -> dict[str, bool | None]:
    out = dict(model)
    for label, how in combos.items():
        m, r = model.get(label), rules.get(label)
        out[label] = r if how == "rules" else m if how == "model" else (bool(m) or bool(r)) if how == "or" \
            else (bool(m) and bool(r))
    return out


@dataclass
class Scores:
    f1: dict[str, float]

    @property
    def macro(self) -> float:
        return float(np.mean(list(self.f1.values()))) if self.f1 else 0.0


def score(gold: list[dict], pred: list[dict], labels: Iterable[str] = LABELS) -> Scores:
    """Per-label F1 with `true` as the positive class (None counts as not true), as `callqa eval` scores."""
    f1 = {}
    for label in labels:
        pairs = [(g.get(label), p.get(label)) for g, p in zip(gold, pred, strict=True) if label in g]
        if not pairs:
            continue
        tp = sum(bool(g) and bool(p) for g, p in pairs)
        fp = sum((not g) and bool(p) for g, p in pairs)
        fn = sum(bool(g) and not p for g, p in pairs)
        prec = tp / (tp + fp) if tp + fp else (1.0 if tp + fn == 0 else 0.0)
        rec = tp / (tp + fn) if tp + fn else 1.0
        f1[label] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return Scores(f1)


def predict_with_rules(heads: dict[str, Head], calls: list[CallData], rules: list[dict], combos: dict[str, str]
                       ) -> list[dict]:
    """(d): heads, with combined labels settled first so resolution sees the combined forbidden phrase."""
    out = []
    for call, r in zip(calls, rules, strict=True):
        base = predict_call(heads, call)
        comb = combine(base, r, combos)
        out.append(predict_call(heads, call, forbidden=comb.get("forbidden_phrase"),
                                objection=comb.get("objection")) | {k: comb[k] for k in combos})
    return out


def leave_one_writer_out(calls: list[CallData], rules: dict[str, dict], cfg: TrainConfig | None = None,
                         writers: Iterable[str] | None = None, folds: int = 3,
                         progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Writer → {n, rules, model, combined}: per-label F1 of each approach on that writer's calls when the heads
    were trained on every other writer. `rules`: call key → the rules' labels."""
    cfg = cfg or TrainConfig()
    table: dict[str, dict] = {}
    for w in writers or sorted({c.writer for c in calls}):
        test = [c for c in calls if c.writer == w]
        train = [c for c in calls if c.writer != w]
        if progress:
            progress(w)
        heads = fit_heads(train, cfg, folds=folds)
        gold = [c.labels for c in test]
        rule_pred = [rules[c.key] for c in test]
        model_pred = [predict_call(heads, c) for c in test]
        comb_pred = predict_with_rules(heads, test, rule_pred, COMBOS)
        table[w] = {"n": len(test), "rules": score(gold, rule_pred), "model": score(gold, model_pred),
                    "combined": score(gold, comb_pred)}
    return table


def format_table(table: dict[str, dict], labels: tuple[str, ...] = LABELS) -> str:
    short = {"usage_scenario": "usage", "selling_point": "sell", "objection": "obj", "objection_resolved": "resolv",
             "greeting": "greet", "forbidden_phrase": "forbid"}
    head = f"{'set':8s} {'n':>4s} {'approach':9s} {'macro':>6s} " + " ".join(f"{short[x]:>6s}" for x in labels)
    lines = [head, "-" * len(head)]
    for w, row in table.items():
        for name in ("rules", "model", "combined"):
            s: Scores = row[name]
            cells = " ".join(f"{s.f1[x]:6.3f}" if x in s.f1 else f"{'-':>6s}" for x in labels)
            lines.append(f"{w:8s} {row['n']:4d} {name:9s} {s.macro:6.3f} {cells}")
    return "\n".join(lines)
