"""Checklist operators on timing: silence_after, interrupts, speech_rate, within_seconds and sequence.within_seconds,
on the dev calls' reference transcripts with their real segment times (clean TTS calls: no pause over 0.8 s, no
overlap), and on copies of them with one reply delayed or one turn pulled into the one before, as real calls have."""

from __future__ import annotations

import json
import re
from functools import cache

import pytest
from callqa.qa_rules.checklist import ChecklistError, load_checklist, parse_checklist
from callqa.qa_rules.engine import ChecklistEngine
from callqa.qa_rules.operators import Context, evaluate
from callqa.qa_rules.utterances import utterances

from callqa.records import Segment, Transcript
from tests.conftest import DEV


@cache
def _turns(call_id: str) -> tuple[dict, ...]:
    for line in (DEV / "calls.jsonl").read_text(encoding="utf-8").splitlines():
        call = json.loads(line)
        if call["call_id"] == call_id:
            return tuple(call["turns"])
    raise KeyError(call_id)


def call(call_id: str, delay: dict[int, float] | None = None, pull: dict[int, float] | None = None) -> Transcript:
    """The reference transcript; `delay` {turn: s} shifts that turn and all after it later by s (a reply left
    waiting); `pull` {turn: s} starts that turn s before the previous turn ends (talking over it)."""
    segs, shift = [], 0.0
    turns = _turns(call_id)
    for k, t in enumerate(turns):
        shift += (delay or {}).get(k, 0.0)
        start, end = t["start"] + shift, t["end"] + shift
        if pull and k in pull:
            start = turns[k - 1]["end"] + shift - pull[k]
        segs.append(Segment(t["speaker"], round(start, 3), round(end, 3), t["text"]))
    return Transcript(tuple(segs), duration=segs[-1].end)


def hits(op: dict, transcript: Transcript, speaker: str = "agent") -> list[str]:
    ctx = Context(utterances(transcript), None, {})
    return [ctx.utts[i].quote for i in sorted(evaluate(op, ctx, speaker).hits)]


def one_item(detect: str, polarity: str = "present") -> ChecklistEngine:
    text = (f"id: t\nversion: 1\nitems:\n  - id: x\n    title: X\n    polarity: {polarity}\n    detect:\n"
            + "".join(f"      {line}\n" for line in detect.strip().splitlines()))
    return ChecklistEngine(parse_checklist(text))


# D016 turns: 5 customer "How often would we need to change it with four people?" 36.269-38.698,
#             6 agent "About once a month. ..." 39.423-43.543


def test_silence_after_finds_the_question_left_waiting():
    op = {"silence_after": {"seconds": 5, "trigger": {"question": True}}}
    assert hits(op, call("D016")) == []  # every reply within 0.8 s
    assert hits(op, call("D016", delay={6: 6.0})) == ["How often would we need to change it with four people?"]
    assert hits(op, call("D016", delay={6: 4.0})) == []  # 4.7 s: not more than 5
    # the pause after a statement is no question left waiting; without a trigger every customer turn counts
    assert hits(op, call("D016", delay={4: 6.0})) == []
    assert hits({"silence_after": {"seconds": 5}}, call("D016", delay={4: 6.0})) == [
        "Four of us.", "Mostly drinking and making tea, but my wife also uses it for the baby's bottles."]


def test_silence_after_as_an_absent_item_fails_with_the_question_as_evidence():
    engine = one_item("silence_after: {seconds: 5, trigger: {question: true}, trigger_speaker: customer}", "absent")
    (ok,) = engine.verdicts(call("D016"))
    (bad,) = engine.verdicts(call("D016", delay={6: 6.0}))
    assert ok.verdict == "pass"
    assert bad.verdict == "fail" and bad.evidence[0].speaker == "customer"
    assert (bad.evidence[0].start, bad.evidence[0].end) == (36.269, 38.698)


def test_silence_after_reads_the_whole_turn_and_ignores_the_calls_end():
    # zh D001: the customer's last turn (9, "行，谢谢啊。") gets a reply; delaying only that reply by 10 s flags it
    op = {"silence_after": {"seconds": 5}}
    assert hits(op, call("D001", delay={10: 10.0})) == ["行，谢谢啊。"]
    # the agent's last turn is followed by nobody: never judged, whatever the item's speaker
    assert hits({"silence_after": {"seconds": 0.1, "trigger_speaker": "agent"}}, call("D001"))[-1] != "不客气，周末见。"


def test_interrupts_counts_what_call_metrics_counts():
    from callqa.pipelines.reports.call_metrics import call_metrics

    talked_over = call("D016", pull={6: 1.2})  # the agent starts 1.2 s before the customer's question ends
    assert hits({"interrupts": {"seconds": 1.0}}, talked_over) == [
        "About once a month.", "A three-pack of cartridges is twenty-four dollars."]
    assert hits({"interrupts": {"seconds": 1.5}}, talked_over) == []
    assert hits({"interrupts": {}}, call("D016")) == []
    assert hits({"interrupts": {"speaker": "customer"}}, talked_over) == []  # the customer cut no one off
    for overlap in (0.3, 1.0, 1.5):
        by_agent = call_metrics(list(talked_over.segments), min_overlap=overlap).interruptions_by_agent
        assert by_agent == (1 if hits({"interrupts": {"seconds": overlap}}, talked_over) else 0)


def test_speech_rate_with_ranges_per_language():
    en, zh = call("D016"), call("D001")  # agent: about 208 words/min (en), 284 characters/min (zh)
    # evidence: the segments beyond the range (per segment 208, 218, 207, 189, 217 words/min; the whole 208)
    too_fast = hits({"speech_rate": {"max": 200}}, en)
    assert too_fast and "About once a month." not in too_fast and "Great." in too_fast
    assert hits({"speech_rate": {"min": 100, "max": 250}}, en) == []
    assert hits({"speech_rate": {"max": 150, "en": {"max": 250}}}, en) == []  # the en range replaces the plain one
    assert hits({"speech_rate": {"max": 180, "zh": {"min": 180, "max": 330}}}, zh) == []
    assert hits({"speech_rate": {"zh": {"max": 250}}}, zh)
    assert hits({"speech_rate": {"min": 300}}, en)  # too slow
    assert hits({"speech_rate": {"max": 180, "min_talk_seconds": 60}}, en) == []  # 36 s of agent speech: no verdict


def test_within_seconds_for_an_early_greeting():
    engine = one_item("all:\n  - within_seconds: {start: 0, end: 10}\n  - regex: ['good (morning|afternoon)']")
    assert engine.verdicts(call("D016"))[0].verdict == "pass"
    assert engine.verdicts(call("D016", delay={0: 12.0}))[0].verdict == "fail"  # 12 s of hold music first
    # a sentence's time is its segment's: turn 4 (24.3-35.6 s) starts before 30, turn 6 starts at 39.4
    assert hits({"within_seconds": {"start": 30, "end": 40}}, call("D016")) == [
        "About once a month.", "A three-pack of cartridges is twenty-four dollars."]


def test_sequence_within_seconds_of_the_trigger():
    engine = one_item("sequence:\n  trigger: {question: true}\n  response: {keyword: [month]}\n  within_seconds: 3")
    assert engine.verdicts(call("D016"))[0].verdict == "pass"
    late = engine.verdicts(call("D016", delay={6: 5.0}))[0]
    assert late.verdict == "fail" and "How often would we need" in late.reason
    # the same answer within 1 turn but no time limit passes; both limits apply when both are given
    turns_only = one_item("sequence:\n  trigger: {question: true}\n  response: {keyword: [month]}\n  within_turns: 1")
    assert turns_only.verdicts(call("D016", delay={6: 5.0}))[0].verdict == "pass"
    both = one_item("sequence:\n  trigger: {question: true}\n  response: {keyword: [month]}\n"
                    "  within_turns: 1\n  within_seconds: 3")
    assert both.verdicts(call("D016", delay={6: 5.0}))[0].verdict == "fail"


@pytest.mark.parametrize(("detect", "field"), [
    ("silence_after: {trigger: {question: true}}", "silence_after: missing required field 'seconds'"),
    ("silence_after: {seconds: -1}", "silence_after.seconds"),
    ("interrupts: {seconds: fast}", "interrupts.seconds"),
    ("speech_rate: {min: 200, max: 100}", "speech_rate"),
    ("speech_rate: {speaker: agent}", "speech_rate"),
    ("speech_rate: {zh: {max: 0}}", "speech_rate.zh.max"),
    ("speech_rate: {fr: {max: 100}}", "speech_rate"),
    ("within_seconds: {start: 10, end: 5}", "within_seconds"),
    ("within_seconds: {start: 0}", "within_seconds"),
    ("sequence: {trigger: {question: true}, response: {question: false}, within_seconds: 0}",
     "sequence.within_seconds"),
])
def test_bad_timing_fields_are_rejected_with_the_field(detect, field):
    with pytest.raises(ChecklistError, match=re.escape(field)):
        one_item(detect)


def test_the_timing_checklist_reuses_sales_core_heads(encoder):
    timing, core = load_checklist("sales_core_timing"), load_checklist("sales_core")
    assert timing.id == "sales_core_timing" and timing.heads_path == core.heads_path
    assert timing.heads_sha256 == core.heads_sha256
    engine = ChecklistEngine(timing, encoder)
    fine = {v.item_id: v for v in engine.verdicts(call("D016"))}
    assert fine["greets_within_10s"].verdict == "pass" and fine["questions_answered_within_5s"].verdict == "pass"
    assert fine["no_talking_over"].verdict == "pass"
    slow = {v.item_id: v for v in engine.verdicts(call("D016", delay={0: 12.0, 6: 6.0}, pull={8: 1.5}))}
    assert slow["greets_within_10s"].verdict == "fail"
    assert slow["questions_answered_within_5s"].verdict == "fail"
    assert slow["questions_answered_within_5s"].evidence[0].quote.startswith("How often")
    assert slow["no_talking_over"].verdict == "fail"
    assert slow["usage_scenario"].verdict == fine["usage_scenario"].verdict == "pass"  # the heads still judge
