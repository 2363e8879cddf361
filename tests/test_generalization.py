"""The hand-grown rules (sales_core_rules v11, the baseline the trained sales_core v12 is compared with) on calls
beyond dev: five sets of 40 calls (other products and phrasing, written
and labelled blind to the rules: tests/data/heldout/) and 40 real chats (../shared/data/real, labels kept
apart by id). Sets A, C, D, E and the real chats were then used to tune the rules (D and E after one blind
reading); set B never was (its figure is the honest one). Floors sit a little under the measured figures
(docs/generalisation.md), so a rule change that only fits one set's wording shows up here."""

from __future__ import annotations

import pytest
from callqa.pipelines.learn.evaluate import attach_labels, classify_text, evaluate_calls
from callqa.pipelines.run.batch import read_manifest

from tests.conftest import ROOT

HELDOUT = ROOT / "tests" / "data" / "heldout"

# measured macro-F1 minus a margin (see docs/generalisation.md for the per-item table)
FLOORS = {"calls_a": 0.97, "calls_b": 0.80, "calls_c": 0.97, "calls_d": 0.88, "calls_e": 0.85, "real": 0.88}
# measured (v11): A 1.000, B 0.838, C 1.000, D 0.926 (0.785 blind, v8), E 0.886 (0.741 blind, v10), real 0.915


def _evaluate(checklist, engine, rows):
    return evaluate_calls(checklist, classify_text(engine, rows))


@pytest.mark.parametrize("name", ["calls_a", "calls_b", "calls_c", "calls_d", "calls_e"])
def test_heldout_calls(rules_checklist, rules_engine, name):
    ev = _evaluate(rules_checklist, rules_engine, read_manifest(HELDOUT / f"{name}.jsonl", require_file=False))
    assert ev.macro_f1 >= FLOORS[name], {k: round(m["f1"], 3) for k, m in ev.items.items()}


def test_real_chats(shared_data, rules_checklist, rules_engine):
    rows = attach_labels(read_manifest(shared_data / "real" / "dialogues.jsonl", require_file=False),
                         read_manifest(HELDOUT / "real_labels.jsonl", require_file=False))
    assert len(rows) == 40
    ev = _evaluate(rules_checklist, rules_engine, rows)
    assert ev.macro_f1 >= FLOORS["real"], {k: round(m["f1"], 3) for k, m in ev.items.items()}
