"""Compare checklist verdicts with human labels (`labels` in a manifest): precision, recall, F1.

Label semantics follow shared/data/README.md: a label is true when the behaviour happened. For an
item with polarity `absent` (forbidden_phrase) the behaviour is the *forbidden* thing, so a `fail`
verdict means the label is true. `objection_resolved` is null when there was no objection: the
item's `na` verdict. For every label the positive class is `true`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callqa.qa_rules.checklist import Checklist
from callqa.qa_rules.engine import ChecklistEngine

from callqa.records import ItemVerdict, Transcript

LABELS = ("usage_scenario", "selling_point", "objection", "objection_resolved", "greeting", "forbidden_phrase")


def call_key(row: dict) -> str:
    """How a manifest row is named in results and label files: call_id, else source_id, else file."""
    return str(row.get("call_id") or row.get("source_id") or row.get("file"))


def attach_labels(rows: list[dict], label_rows: list[dict]) -> list[dict]:
    """Rows with `labels` taken from `label_rows` (joined on `call_key`), for corpora whose text must
    stay where it is while its labels live elsewhere. Other rows are kept as they are; a label row
    naming no manifest row is an error (a typo would silently shrink the evaluation)."""
    by_key = {call_key(r): r for r in label_rows}
    unknown = sorted(set(by_key) - {call_key(r) for r in rows})
    if unknown:
        raise ValueError(f"labels for calls not in the manifest: {', '.join(unknown[:5])}")
    return [{**r, "labels": by_key[call_key(r)]["labels"]} if call_key(r) in by_key else r for r in rows]


def classify_text(engine: ChecklistEngine, rows: list[dict]) -> list[tuple[str, dict, list[ItemVerdict]]]:
    """(call key, labels, verdicts) of labelled rows, classified from their reference `turns` (text mode),
    all calls scored together (`verdicts_many`)."""
    transcripts = [Transcript.from_turns(r["turns"], r.get("language")) for r in rows]
    return [(call_key(r), r["labels"], verdicts)
            for r, verdicts in zip(rows, engine.verdicts_many(transcripts), strict=True)]


def predicted_label(checklist: Checklist, verdict: ItemVerdict) -> bool | None:
    """A verdict as the label a reviewer would give (None = not applicable)."""
    if verdict.verdict == "na":
        return None
    item = checklist.item(verdict.item_id)
    passed = verdict.verdict == "pass"
    return passed if item.polarity == "present" else not passed


@dataclass
class Disagreement:
    call_id: str
    label: str
    expected: bool | None
    predicted: bool | None
    quote: str
    reason: str


@dataclass
class EvalResult:
    items: dict[str, dict[str, float | int]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def macro_f1(self) -> float:
        f1s = [m["f1"] for m in self.items.values()] + [0.0 for _ in self.missing]
        return round(sum(f1s) / len(f1s), 4) if f1s else 0.0

    def to_dict(self) -> dict:
        return {"items": self.items, "macro_f1": self.macro_f1, "missing": self.missing,
                "confusion": self.confusion,
                "disagreements": [d.__dict__ for d in self.disagreements]}


def _key(v: bool | None) -> str:
    return "na" if v is None else ("true" if v else "false")


def evaluate_calls(
    checklist: Checklist, results: list[tuple[str, dict[str, bool | None], list[ItemVerdict]]],
    labels: tuple[str, ...] = LABELS,
) -> EvalResult:
    """`results`: (call_id, labels, verdicts) per call. Labels the checklist lacks are reported missing."""
    out = EvalResult()
    for label in labels:
        if label not in checklist.item_ids:
            out.missing.append(label)
            continue
        tp = fp = fn = 0
        conf: dict[str, int] = {}
        for call_id, gold, verdicts in results:
            if label not in gold:
                continue
            v = next(v for v in verdicts if v.item_id == label)
            pred, exp = predicted_label(checklist, v), gold[label]
            conf[f"{_key(exp)}->{_key(pred)}"] = conf.get(f"{_key(exp)}->{_key(pred)}", 0) + 1
            tp += bool(exp) and bool(pred)
            fp += (not exp) and bool(pred)
            fn += bool(exp) and not pred
            if _key(pred) != _key(exp):
                quote = " | ".join(e.quote for e in v.evidence)
                out.disagreements.append(Disagreement(call_id, label, exp, pred, quote, v.reason))
        p = tp / (tp + fp) if tp + fp else (1.0 if tp + fn == 0 else 0.0)
        r = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out.items[label] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "support": tp + fn}
        out.confusion[label] = dict(sorted(conf.items()))
    return out


def format_eval(result: EvalResult) -> str:
    lines = [f"{'item':20s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'support':>7s}  confusion (label->verdict)"]
    for label, m in result.items.items():
        conf = ", ".join(f"{k}:{n}" for k, n in result.confusion.get(label, {}).items())
        lines.append(f"{label:20s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['support']:7d}  {conf}")
    for label in result.missing:
        lines.append(f"{label:20s} {'missing: the checklist does not produce this item':>40s}")
    lines.append(f"macro-F1 {result.macro_f1:.3f}")
    if result.disagreements:
        lines.append("")
        lines.append(f"disagreements ({len(result.disagreements)}):")
        for d in result.disagreements:
            lines.append(f"  {d.call_id} {d.label}: label {_key(d.expected)}, verdict {_key(d.predicted)}"
                         f" — {d.reason}{(' — ' + d.quote) if d.quote else ''}")
    return "\n".join(lines)
