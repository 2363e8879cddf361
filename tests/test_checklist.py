"""The checklist schema and the engine's verdicts on reference transcripts of labelled dev calls."""

from __future__ import annotations

import pytest
from callqa.pipelines.learn.evaluate import predicted_label
from callqa.qa_rules.checklist import ChecklistError, load_checklist, parse_checklist
from callqa.qa_rules.engine import call_score

from callqa.records import Segment, Transcript
from tests.conftest import dev_calls


def _call(call_id: str) -> dict:
    return next(c for c in dev_calls() if c["call_id"] == call_id)


@pytest.mark.parametrize("call_id", ["D001", "D016", "D006"])
def test_core_items_match_reviewer_labels(shared_data, checklist, engine, call_id):
    call = _call(call_id)
    verdicts = engine.verdicts(Transcript.from_turns(call["turns"], call["language"]))
    got = {v.item_id: predicted_label(checklist, v) for v in verdicts}
    for label in ("usage_scenario", "greeting"):
        assert got[label] == call["labels"][label], (call_id, label)


def test_every_pass_has_evidence_with_times(shared_data, engine):
    call = _call("D001")
    tr = Transcript.from_turns(call["turns"], "zh")
    for v in engine.verdicts(tr):
        if v.verdict == "pass" and v.item_id != "forbidden_phrase":
            assert v.evidence, v.item_id
            for e in v.evidence:
                seg = tr.segments[e.segment]
                assert e.quote in seg.text and (e.start, e.end) == (seg.start, seg.end)
        if v.verdict == "fail":
            assert v.reason


def test_evidence_points_at_the_labelled_turn(shared_data, engine):
    call = _call("D001")
    verdicts = {v.item_id: v for v in engine.verdicts(Transcript.from_turns(call["turns"], "zh"))}
    for item in ("usage_scenario", "greeting"):
        assert call["evidence"][item] in {e.segment for e in verdicts[item].evidence}


@pytest.mark.parametrize("which", [
    "rules",
    pytest.param("trained", marks=pytest.mark.xfail(strict=True, reason=(
        "known weakness of sales_core v12 (docs/corpus.md): its forbidden-phrase head, OR-ed with the rules, flags "
        "an apology that takes the blame; strict, so a fix shows up here"))),
])
def test_forbidden_phrase_fails_the_call_and_apology_does_not(which, engine, rules_engine):
    engine = rules_engine if which == "rules" else engine

    def score(agent_line: str) -> tuple[str, float]:
        tr = Transcript((
            Segment("agent", 0, 3, "您好，我是小李，请问有什么可以帮您？"),
            Segment("customer", 3, 6, "我上周买的吸尘器坏了。"),
            Segment("agent", 6, 9, agent_line),
        ), "zh")
        s = engine.score(tr)
        return next(v.verdict for v in s.verdicts if v.item_id == "forbidden_phrase"), s.score

    verdict, total = score("这不是我们的问题，您自己去找厂家吧。")
    assert verdict == "fail" and total == 0.0
    verdict, total = score("真对不起，这是我们的问题，我马上给您换一台。")
    assert verdict == "pass" and total > 0


def test_no_objection_makes_resolution_not_applicable(engine):
    tr = Transcript((
        Segment("agent", 0, 3, "Hi, this is Maria from Brightside Furniture."),
        Segment("customer", 3, 6, "Hi, I'd like to order the oak desk."),
        Segment("agent", 6, 9, "Sure, it's solid oak, 120 centimeters wide, with two drawers."),
    ), "en")
    verdicts = {v.item_id: v for v in engine.verdicts(tr)}
    assert verdicts["objection_resolved"].verdict == "na"
    assert verdicts["selling_point"].verdict == "pass"


def test_call_score_weights_and_na(checklist, engine):
    call = _call("D001")
    s = engine.score(Transcript.from_turns(call["turns"], "zh"))
    assert s == call_score(checklist, list(s.verdicts))
    applicable = [it for it in checklist.items if it.weight > 0
                  and next(v for v in s.verdicts if v.item_id == it.id).verdict != "na"]
    assert s.max_points == sum(it.weight for it in applicable)
    assert 0 <= s.score <= 100


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    colour: red\n    detect: {keyword: [hi]}\n",
         ":4: items[0]: unknown field 'colour'"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect: {regex: ['(']}\n",
         "bad regular expression"),
        ("id: x\nversion: 0\nitems: []\n", "version: must be a positive integer"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect: {smell: [x]}\n", "unknown operator 'smell'"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    applies_if: b\n    detect: {keyword: [x]}\n",
         "unknown item 'b'"),
        ("!!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect:\n      semantic: {positive: [hi], thr: 1}\n",
         ":7: item 'a'.detect.semantic: unknown field 'thr'"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect: {semantic: {positive: [hi], unit: call}}\n",
         "semantic.unit: must be 'sentence' or 'turn'"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    speaker: boss\n    detect: {keyword: [x]}\n",
         "item 'a'.speaker: must be one of agent, customer, any"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect: {keyword: [x]}\ncalibration:\n  b: {}\n",
         "calibration.b: unknown item 'b'"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect: {keyword: [x]}\n"
         "calibration:\n  a: {threshold_shift: 0.9}\n", ":8: calibration.a.threshold_shift: must be between"),
        ("id: x\nversion: 1\nitems:\n  - id: a\n    title: A\n    detect:\n      sequence: {trigger: {keyword: [x]}, "
         "response: {keyword: [y]}, within_turns: 0}\n", "sequence.within_turns: must be a positive integer"),
    ],
)
def test_checklist_errors_name_file_line_and_field(yaml_text, expected):
    with pytest.raises(ChecklistError) as err:
        parse_checklist(yaml_text, source="team.yaml")
    assert str(err.value).startswith("team.yaml")
    assert expected in str(err.value)


def test_same_turn_needs_both_parts_in_one_turn(engine):
    one = Transcript((Segment("agent", 0, 2, "Hello!"), Segment("agent", 2, 4, "This is Dana from Northwind."),
                      Segment("customer", 4, 6, "Hi.")), "en")
    apart = Transcript((Segment("agent", 0, 2, "Hello!"), Segment("customer", 2, 4, "Hi."),
                        Segment("agent", 4, 6, "This is Dana from Northwind.")), "en")
    got = [next(v.verdict for v in engine.verdicts(t) if v.item_id == "greeting") for t in (one, apart)]
    assert got == ["pass", "fail"]


def test_bundled_checklist_items_are_bilingual(checklist):
    for it in checklist.items:
        assert {"zh", "en"} <= set(it.title) and {"zh", "en"} <= set(it.description), it.id


def test_where_coaching_looks_for_a_miss_comes_from_the_checklist():
    """No generic code names an item: the moment shown for a miss is the item's `coaching.miss`, or derived from
    its own definition (applies_if → the trigger and the reply; read in the first turns → the opening)."""
    cl = load_checklist("sales_core")
    assert {it.id: it.miss_context for it in cl.items} == {
        "greeting": "opening", "usage_scenario": "first_reply", "selling_point": "longest_turn",
        "objection": "longest_turn", "forbidden_phrase": "longest_turn", "objection_resolved": "after_trigger"}
    with pytest.raises(ChecklistError, match="coaching.miss: must be one of"):
        parse_checklist("id: t\nversion: 1\nitems:\n  - id: a\n    title: A\n    coaching: {miss: somewhere}\n"
                        "    detect: {keyword: [x]}\n")
