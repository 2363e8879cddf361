"""Calibration: fit each item's semantic thresholds and confidence curve on labelled calls.

For every item that has a label, calibration tries a grid of *threshold shifts* (one number added
to all of the item's semantic thresholds) and keeps the one with the best F1 on the training
calls; ties go to the smallest change, so the author's thresholds stand unless the data disagree.
Items are fitted in checklist order, because later items read earlier ones (`objection_resolved`
needs `objection`). Then a logistic curve maps the item's score (engine.item_score) to the
probability that the behaviour happened: that is the verdict's calibrated confidence.

Honest numbers: `fit` runs K-fold cross-validation (fit on K-1 folds, predict the held-out fold)
and reports CV F1 next to the train fit. The result is written as a new checklist version
(`render_calibrated`): the same YAML with `version: N+1` and a `calibration:` section.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from callqa.qa_rules.checklist import Checklist, Item, parse_checklist
from callqa.qa_rules.engine import ChecklistEngine, item_score
from callqa.qa_rules.operators import walk_operators

from callqa.records import ItemVerdict, TextEmbedder, Transcript

SHIFTS = tuple(round(x, 3) for x in np.arange(-0.06, 0.0601, 0.01))
Label = bool | None


@dataclass(frozen=True)
class LabelledCall:
    call_id: str
    transcript: Transcript
    labels: dict[str, Label]


@dataclass
class ItemFit:
    item_id: str
    shift: float
    slope: float | None
    intercept: float
    train_f1: float
    cv_f1: float | None = None
    n: int = 0
    thresholds: list[tuple[float, float]] = field(default_factory=list)  # (before, after) per semantic operator


@dataclass
class CalibrationResult:
    checklist: Checklist
    items: dict[str, ItemFit]
    folds: int
    n_calls: int

    @property
    def cv_macro_f1(self) -> float | None:
        vals = [f.cv_f1 for f in self.items.values() if f.cv_f1 is not None]
        return round(sum(vals) / len(vals), 4) if vals else None

    @property
    def train_macro_f1(self) -> float:
        vals = [f.train_f1 for f in self.items.values()]
        return round(sum(vals) / len(vals), 4) if vals else 0.0


def verdict_label(item: Item, verdict: ItemVerdict) -> Label:
    """A verdict as the label a reviewer gives: did the behaviour happen (None = not applicable)."""
    if verdict.verdict == "na":
        return None
    passed = verdict.verdict == "pass"
    return passed if item.polarity == "present" else not passed


def f1(gold: Sequence[Label], pred: Sequence[Label]) -> float:
    tp = sum(bool(g) and bool(p) for g, p in zip(gold, pred, strict=True))
    fp = sum((not g) and bool(p) for g, p in zip(gold, pred, strict=True))
    fn = sum(bool(g) and not p for g, p in zip(gold, pred, strict=True))
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def _semantic_ops(op) -> list[dict]:
    return [v for k, v in walk_operators(op) if k == "semantic"]


class _Predictor:
    """Labels and item scores of every call for a given set of shifts, memoised (embeddings stay cached)."""

    def __init__(self, checklist: Checklist, embedder: TextEmbedder | None, calls: list[LabelledCall]):
        self.checklist, self.embedder, self.calls = checklist, embedder, calls
        self._memo: dict[tuple, tuple[dict[str, list[Label]], dict[str, list[float]]]] = {}

    def run(self, shifts: dict[str, float]) -> tuple[dict[str, list[Label]], dict[str, list[float]]]:
        key = tuple(sorted(shifts.items()))
        if key not in self._memo:
            engine = ChecklistEngine(self.checklist, self.embedder, threshold_shifts=shifts)
            labels: dict[str, list[Label]] = {i.id: [] for i in self.checklist.items}
            scores: dict[str, list[float]] = {i.id: [] for i in self.checklist.items}
            for ctx in engine.matches_many([call.transcript for call in self.calls]):  # embeddings batched
                for it, v in zip(self.checklist.items, engine.judge(ctx), strict=True):
                    labels[it.id].append(verdict_label(it, v))
                    scores[it.id].append(item_score(ctx.item_matches[it.id]))
            self._memo[key] = (labels, scores)
        return self._memo[key]


def _fit_shifts(pred: _Predictor, checklist: Checklist, idx: list[int]) -> dict[str, float]:
    """Best shift per item on the calls `idx`, items in checklist order."""
    shifts: dict[str, float] = {}
    for item in checklist.items:
        gold = [pred.calls[i].labels.get(item.id) for i in idx]
        if not _semantic_ops(item.detect) or all(g is None for g in gold) or item.id not in pred.calls[0].labels:
            continue
        best = (-1.0, 0.0, 0.0)  # (f1, -|shift|, shift)
        for s in SHIFTS:
            labels, _ = pred.run({**shifts, item.id: s})
            score = f1(gold, [labels[item.id][i] for i in idx])
            best = max(best, (round(score, 6), -abs(s), s))
        shifts[item.id] = best[2]
    return shifts


def fit_logistic(x: Sequence[float], y: Sequence[bool], l2: float = 0.1, iters: int = 50) -> tuple[float, float]:
    """P(y) = sigmoid(a*x + b) by Newton's method with a small L2 penalty (data are often separable)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    w = np.zeros(2)
    feats = np.stack([xs, np.ones_like(xs)], axis=1)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(feats @ w)))
        grad = feats.T @ (p - ys) + l2 * np.array([w[0], 0.0])
        hess = feats.T @ (feats * (p * (1 - p))[:, None]) + l2 * np.diag([1.0, 1e-6])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def folds_of(n: int, k: int) -> list[list[int]]:
    """Deterministic interleaved folds (call i goes to fold i % k)."""
    k = max(2, min(k, n))
    return [[i for i in range(n) if i % k == f] for f in range(k)]


def calibrate(checklist: Checklist, calls: list[LabelledCall], embedder: TextEmbedder | None,
              folds: int = 5) -> CalibrationResult:
    """Fit shifts and confidence curves on all calls; report K-fold cross-validated F1 per item."""
    pred = _Predictor(checklist, embedder, calls)
    everything = list(range(len(calls)))
    shifts = _fit_shifts(pred, checklist, everything)
    labels, scores = pred.run(shifts)
    cv_pred: dict[str, list[Label]] = {it.id: [None] * len(calls) for it in checklist.items}
    for held_out in folds_of(len(calls), folds):
        train = [i for i in everything if i not in held_out]
        fold_labels, _ = pred.run(_fit_shifts(pred, checklist, train))
        for it in checklist.items:
            for i in held_out:
                cv_pred[it.id][i] = fold_labels[it.id][i]
    items: dict[str, ItemFit] = {}
    for it in checklist.items:
        idx = [i for i, c in enumerate(calls) if it.id in c.labels]
        if not idx:
            continue
        gold = [calls[i].labels[it.id] for i in idx]
        usable = [i for i in idx if calls[i].labels[it.id] is not None]
        slope, intercept = (fit_logistic([scores[it.id][i] for i in usable], [bool(calls[i].labels[it.id])
                                          for i in usable]) if len({bool(calls[i].labels[it.id]) for i in usable}) == 2
                            else (None, 0.0))
        shift = shifts.get(it.id, 0.0)
        thr = [(float(op.get("threshold", 0.85)), round(min(0.995, float(op.get("threshold", 0.85)) + shift), 3))
               for op in _semantic_ops(it.detect)]
        items[it.id] = ItemFit(
            it.id, shift, slope, intercept, round(f1(gold, [labels[it.id][i] for i in idx]), 4),
            round(f1(gold, [cv_pred[it.id][i] for i in idx]), 4), len(idx), thr)
    return CalibrationResult(checklist, items, len(folds_of(len(calls), folds)), len(calls))


def render_calibrated(result: CalibrationResult, source_name: str = "") -> str:
    """The checklist YAML as a new version (N+1) with a `calibration:` section; validated before return."""
    cl = result.checklist
    text = cl.source.rstrip("\n")
    # re-calibrating replaces the old section and its header comment
    text = re.split(r"(?m)^(?:# Written by `callqa calibrate`|calibration:)", text)[0].rstrip("\n")
    text, n = re.subn(r"(?m)^version:\s*\d+\s*$", f"version: {cl.version + 1}", text, count=1)
    if n != 1:
        raise ValueError(f"{cl.id}: no top-level 'version:' line to update")
    lines = ["", "", f"# Written by `callqa calibrate` on {date.today().isoformat()} from version {cl.version}"
             f"{' and ' + source_name if source_name else ''}:",
             "# threshold_shift is added to every semantic threshold of the item; confidence of a verdict =",
             "# sigmoid(slope * item score + intercept). fit: calls used, train F1, cross-validated F1.",
             "calibration:"]
    for fit in result.items.values():
        lines.append(f"  {fit.item_id}:")
        lines.append(f"    threshold_shift: {fit.shift:+.3f}")
        if fit.slope is not None:
            lines.append(f"    slope: {fit.slope:.4f}")
            lines.append(f"    intercept: {fit.intercept:.4f}")
        cv = "null" if fit.cv_f1 is None else f"{fit.cv_f1:.4f}"
        lines.append(f"    fit: {{calls: {fit.n}, train_f1: {fit.train_f1:.4f}, cv_f1: {cv}, folds: {result.folds}}}")
    out = text + "\n".join(lines) + "\n"
    parse_checklist(out, source=f"{cl.id} v{cl.version + 1} (calibrated)")
    return out


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
