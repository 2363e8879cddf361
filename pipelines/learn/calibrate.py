"""`callqa calibrate`: fit a checklist's thresholds and confidences on a labelled manifest and write
the result as a new checklist version (see callqa.qa_rules.calibration)."""

from __future__ import annotations

from pathlib import Path

from callqa.pipelines.learn.evaluate import attach_labels, call_key
from callqa.pipelines.run.batch import read_manifest
from callqa.qa_rules.calibration import CalibrationResult, LabelledCall, calibrate, render_calibrated
from callqa.qa_rules.checklist import Checklist

from callqa.records import TextEmbedder, Transcript


def _paths(manifests: Path | list[Path]) -> list[Path]:
    return [Path(manifests)] if isinstance(manifests, str | Path) else [Path(m) for m in manifests]


def labelled_calls(manifests: Path | list[Path], labels: Path | None = None) -> list[LabelledCall]:
    """Rows of one or more manifests with both `labels` and reference `turns` (text-mode calibration);
    `labels`: a JSONL of labels joined on call_id/source_id (see `callqa eval --labels`)."""
    paths = _paths(manifests)
    rows = [r for m in paths for r in read_manifest(m, require_file=False)]
    if labels is not None:
        rows = attach_labels(rows, read_manifest(Path(labels), require_file=False))
    calls = [LabelledCall(call_key(r), Transcript.from_turns(r["turns"], r.get("language")), dict(r["labels"]))
             for r in rows if r.get("labels") and r.get("turns")]
    if not calls:
        raise ValueError(f"{', '.join(map(str, paths))}: no rows with both 'labels' and 'turns'")
    return calls


def run_calibration(checklist: Checklist, manifests: Path | list[Path], embedder: TextEmbedder | None,
                    out: Path | None = None, folds: int = 5, labels: Path | None = None,
                    ) -> tuple[CalibrationResult, Path, str]:
    """Calibrate on the manifests' calls, write the new version to `out` (default ./<id>.v<N+1>.yaml)."""
    calls = labelled_calls(manifests, labels)
    result = calibrate(checklist, calls, embedder, folds=folds)
    text = render_calibrated(result, source_name=" + ".join(p.name for p in _paths(manifests)))
    out = Path(out) if out else Path(f"{checklist.id}.v{checklist.version + 1}.yaml")
    out.write_text(text, encoding="utf-8")
    return result, out, text


def format_calibration(result: CalibrationResult) -> str:
    lines = [f"checklist {result.checklist.id} v{result.checklist.version} → v{result.checklist.version + 1}: "
             f"{result.n_calls} labelled calls, {result.folds}-fold cross-validation",
             f"{'item':20s} {'shift':>6s} {'thresholds':24s} {'train F1':>8s} {'CV F1':>6s}  confidence"]
    for f in result.items.values():
        thr = ", ".join(f"{a:.2f}→{b:.2f}" for a, b in f.thresholds) or "-"
        conf = f"sigmoid({f.slope:.2f}·s{f.intercept:+.2f})" if f.slope is not None else "-"
        cv = f"{f.cv_f1:6.3f}" if f.cv_f1 is not None else f"{'-':>6s}"
        lines.append(f"{f.item_id:20s} {f.shift:+6.2f} {thr[:24]:24s} {f.train_f1:8.3f} {cv}  {conf}")
    lines.append(f"macro-F1: train {result.train_macro_f1:.3f}, cross-validated {result.cv_macro_f1 or 0:.3f}")
    return "\n".join(lines)


def result_dict(result: CalibrationResult, out: Path) -> dict:
    return {"checklist": result.checklist.id, "from_version": result.checklist.version,
            "version": result.checklist.version + 1, "out": str(out), "calls": result.n_calls,
            "folds": result.folds, "train_macro_f1": result.train_macro_f1, "cv_macro_f1": result.cv_macro_f1,
            "items": {k: {"threshold_shift": f.shift, "train_f1": f.train_f1, "cv_f1": f.cv_f1,
                          "slope": f.slope, "intercept": f.intercept, "calls": f.n}
                      for k, f in result.items.items()}}
