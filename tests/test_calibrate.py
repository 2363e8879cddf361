"""Calibration on the real dev calls with the real encoder: new version, cross-validated numbers,
calibrated confidences that behave like probabilities."""

from __future__ import annotations

import json

import pytest
from callqa.pipelines.learn.calibrate import labelled_calls, result_dict, run_calibration
from callqa.qa_rules.calibration import f1, fit_logistic, folds_of, sigmoid
from callqa.qa_rules.checklist import parse_checklist
from callqa.qa_rules.engine import ChecklistEngine

from tests.conftest import DEV, on_the_rules_checklist

# These tests pin behaviours of the hand-grown rules (operators, thresholds, calibration): they run on
# sales_core_rules v11. The trained sales_core v12 is tested in test_learned.py.
checklist, engine = on_the_rules_checklist()


@pytest.fixture(scope="module")
def calibrated(shared_data, checklist, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "sales_core.next.yaml"
    result, path, text = run_calibration(checklist, DEV / "calls.jsonl", encoder, out, folds=3)
    return result, path, text


def test_writes_a_new_valid_version_with_a_calibration_section(calibrated, checklist):
    result, path, text = calibrated
    new = parse_checklist(path.read_text(encoding="utf-8"), str(path))
    assert new.version == checklist.version + 1 and new.id == checklist.id
    assert set(new.calibration) == set(checklist.item_ids)
    assert new.item_ids == checklist.item_ids  # rules untouched, only the calibration is added
    for fit in new.calibration.values():
        assert -0.5 < fit.threshold_shift < 0.5 and "cv_f1" in fit.fit
    # re-calibrating the calibrated file replaces the section instead of adding a second one
    assert text.count("\ncalibration:") == 1 and text.count("Written by `callqa calibrate`") == 1


def test_reports_cross_validated_f1_per_item(calibrated):
    result, path, _ = calibrated
    d = result_dict(result, path)
    json.dumps(d)
    assert d["folds"] == 3 and d["calls"] == 30
    for item, m in d["items"].items():
        assert m["cv_f1"] is not None and 0.0 <= m["cv_f1"] <= 1.0, item
    # the dev targets hold under cross-validation, not only on the training fit
    assert d["cv_macro_f1"] >= 0.92
    assert min(m["cv_f1"] for m in d["items"].values()) >= 0.85


def test_calibrated_confidence_is_a_probability_that_ranks_verdicts(calibrated, encoder, shared_data):
    _, path, _ = calibrated
    engine = ChecklistEngine(parse_checklist(path.read_text(encoding="utf-8"), str(path)), encoder)
    right = []
    for call in labelled_calls(DEV / "calls.jsonl"):
        for v in engine.verdicts(call.transcript):
            assert 0.0 <= v.confidence <= 1.0
            if v.verdict != "na":
                right.append(v.confidence)
    assert sum(right) / len(right) > 0.7  # mean confidence of the verdicts given


def test_threshold_shift_changes_semantic_verdicts(checklist, encoder):
    from callqa.records import Segment, Transcript

    # no keyword of the objection rule: only the semantic exemplars can find this concern
    tr = Transcript((Segment("agent", 0, 2, "Hi, this is Joe."),
                     Segment("customer", 2, 5, "I have a feeling it'll fall apart within a month.")), "en")
    got = {s: any(v.item_id == "objection" and v.verdict == "pass"
                  for v in ChecklistEngine(checklist, encoder, threshold_shifts={"objection": s}).verdicts(tr))
           for s in (-0.05, 0.2)}
    assert got == {-0.05: True, 0.2: False}


def test_helpers():
    assert folds_of(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert f1([True, False, None], [True, True, None]) == pytest.approx(2 / 3)
    a, b = fit_logistic([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [False, False, False, True, True, True])
    assert a > 0 and sigmoid(a * 0.9 + b) > 0.8 and sigmoid(a * 0.1 + b) < 0.2


def test_calibration_reads_several_labelled_sets(shared_data):
    from tests.conftest import ROOT

    calls = labelled_calls([DEV / "calls.jsonl", ROOT / "tests" / "data" / "heldout" / "calls_a.jsonl"])
    assert len(calls) == 70 and len({c.call_id for c in calls}) == 70
    real = labelled_calls(shared_data / "real" / "dialogues.jsonl",
                          labels=ROOT / "tests" / "data" / "heldout" / "real_labels.jsonl")
    assert len(real) == 40 and all(c.labels for c in real)
