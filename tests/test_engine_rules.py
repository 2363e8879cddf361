"""sales_core on real dev calls and on calls written for these tests (other products, other wording):
the behaviours the label rules describe, not the dev set's sentences."""

from __future__ import annotations

import pytest
from callqa.pipelines.learn.evaluate import evaluate_calls
from callqa.qa_rules.calibration import verdict_label

from callqa.records import Segment, Transcript
from tests.conftest import dev_calls, on_the_rules_checklist

# These tests pin behaviours of the hand-grown rules (operators, thresholds, calibration): they run on
# sales_core_rules v11. The trained sales_core v12 is tested in test_learned.py.
checklist, engine = on_the_rules_checklist()


def _labels(checklist, engine, *turns: tuple[str, str], language: str = "zh") -> dict[str, bool | None]:
    tr = Transcript(tuple(Segment(sp, 2.0 * i, 2.0 * i + 2, text) for i, (sp, text) in enumerate(turns)), language)
    return {v.item_id: verdict_label(checklist.item(v.item_id), v) for v in engine.verdicts(tr)}


def test_dev_text_mode_meets_the_targets(shared_data, checklist, engine):
    results = [(c["call_id"], c["labels"], engine.verdicts(Transcript.from_turns(c["turns"], c["language"])))
               for c in dev_calls()]
    ev = evaluate_calls(checklist, results)
    assert ev.macro_f1 >= 0.92, ev.items
    assert min(m["f1"] for m in ev.items.values()) >= 0.85, ev.items


def test_every_pass_has_evidence_and_every_fail_a_reason(shared_data, checklist, engine):
    for c in dev_calls():
        tr = Transcript.from_turns(c["turns"], c["language"])
        for v in engine.verdicts(tr):
            assert v.reason, (c["call_id"], v.item_id)
            detected = verdict_label(checklist.item(v.item_id), v)
            if detected:  # the behaviour was found: quote it, with its segment and times
                assert v.evidence, (c["call_id"], v.item_id)
                for e in v.evidence:
                    seg = tr.segments[e.segment]
                    assert e.quote in seg.text and (e.start, e.end) == (seg.start, seg.end)
            assert 0.0 <= v.confidence <= 1.0


@pytest.mark.parametrize(
    ("customer", "objection"),
    [
        ("这个多少钱？", False),  # a question, not a concern
        ("有没有灰色的？", False),
        ("How long is the warranty?", False),
        ("这个价格比网上贵了不少啊。", True),
        ("我朋友买过你们家的，用了半年就坏了。", True),
        ("I'm not sure it will be strong enough for my tall son.", True),
        ("Honestly that's more than I planned to spend on a kettle.", True),
        ("我 还是 觉得 太 贵 了", True),  # word-segmented chat text
    ],
)
def test_objection_needs_a_concern_not_just_a_question(checklist, engine, customer, objection):
    got = _labels(checklist, engine, ("agent", "您好，我是小林。"), ("customer", customer),
                  ("agent", "好的。"), language="en" if customer.isascii() else "zh")
    assert got["objection"] is objection


def test_resolution_is_judged_on_the_whole_reply(checklist, engine):
    objection = ("customer", "这款电热水壶比超市里的贵了快一百块。")
    answered = _labels(checklist, engine, ("agent", "您好，我是小林。"), objection,
                       ("agent", "理解您的顾虑。超市那款是塑料内胆，我们这款是三零四不锈钢的，"
                                 "还能保温十二个小时。这周买再送一个滤网。"))
    praised = _labels(checklist, engine, ("agent", "您好，我是小林。"), objection,
                      ("agent", "我们这款质量很好的，很多人买。"))
    assert answered["objection_resolved"] is True
    assert praised["objection_resolved"] is False


def test_every_objection_must_be_answered_and_refusals_do_not_count(checklist, engine):
    got = _labels(checklist, engine,
                  ("agent", "Hi, this is Dana from Northwind Outdoor."),
                  ("customer", "The tent I bought last spring leaked in the first rain."),
                  ("agent", "I'm sorry to hear that. We can replace it with the new model, which has taped seams."),
                  ("customer", "And I'm worried the new one is too heavy to carry."),
                  ("agent", "Unfortunately we can't offer a refund on the old one."),
                  language="en")
    assert got["objection"] is True and got["objection_resolved"] is False


@pytest.mark.parametrize(
    ("agent", "usage"),
    [
        ("请问这台烤箱主要是给家里谁用？平时烤面包多还是烤肉多？", True),
        ("Are you buying the sofa for a small apartment or a family room?", True),
        ("您的预算大概是多少？", False),  # budget only
        ("What's the best phone number to reach you?", False),
    ],
)
def test_usage_scenario_questions(checklist, engine, agent, usage):
    got = _labels(checklist, engine, ("agent", agent), ("customer", "嗯。"), language="en" if agent.isascii() else "zh")
    assert got["usage_scenario"] is usage


@pytest.mark.parametrize(
    ("agent", "selling"),
    [
        ("This backpack is made of recycled nylon and holds twenty-eight liters.", True),
        ("这款羽绒服是九十的白鹅绒，充绒量两百克。", True),
        ("It's a fantastic product, everyone loves it.", False),  # vague praise
        ("这周下单打八折，还包邮。", False),  # promotion only
        ("Your order will arrive in three to five days.", False),  # logistics
    ],
)
def test_selling_point_needs_a_concrete_feature(checklist, engine, agent, selling):
    got = _labels(checklist, engine, ("customer", "Hi."), ("agent", agent), language="en" if agent.isascii() else "zh")
    assert got["selling_point"] is selling


@pytest.mark.parametrize(
    ("first", "greeting"),
    [
        ("Hi, this is Dana from Northwind Outdoor. How can I help?", True),
        ("Hello, this is Northwind Outdoor.", False),  # store name only
        ("您好，欢迎致电家乐家居，我是客服。", False),  # a role, not a name
        ("您好，家乐家居，我是周敏，很高兴为您服务。", True),
        ("喂，你好 我是小周", True),  # ASR wrote a space instead of a comma
    ],
)
def test_greeting_needs_a_greeting_and_own_name(checklist, engine, first, greeting):
    got = _labels(checklist, engine, ("agent", first), ("customer", "Hi."), language="en" if first.isascii() else "zh")
    assert got["greeting"] is greeting


class _Counting:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder):
        self.encoder, self.texts = encoder, []

    def embed(self, texts):
        self.texts += list(texts)
        return self.encoder.embed(texts)


_ONE_ITEM = """
id: spec_only
version: 1
title: {zh: 卖点, en: Selling point}
description: {zh: 说出具体参数。, en: States a spec.}
items:
  - id: spec
    title: {zh: 卖点, en: Spec}
    description: {zh: 说出具体参数。, en: States a spec.}
    speaker: agent
    weight: 1
    detect:
      any:
        - regex: ['[0-9]+ ?(升|瓦|liters?|watts?)']
        - semantic:
            positive: [It has a powerful motor., 它的电机功率很大。]
            threshold: 0.9
"""


def test_an_item_stops_embedding_once_a_literal_rule_decided_it(tmp_path, encoder):
    from callqa.qa_rules.checklist import load_checklist
    from callqa.qa_rules.engine import ChecklistEngine

    path = tmp_path / "spec_only.yaml"
    path.write_text(_ONE_ITEM, encoding="utf-8")
    counting = _Counting(encoder)
    engine = ChecklistEngine(load_checklist(path), counting)
    engine.warm_up()  # the exemplars: embedded once per engine, all in one pass
    assert counting.texts == ["It has a powerful motor.", "它的电机功率很大。"]
    counting.texts = []

    def call(*agent: str) -> Transcript:
        return Transcript(tuple(Segment("agent", 2.0 * i, 2.0 * i + 2, t) for i, t in enumerate(agent)), "en")

    (v,) = engine.verdicts(call("Hello, I'm Sam.", "It holds 2 liters.", "The lid is very sturdy."))
    assert v.verdict == "pass" and "2 liters" in v.evidence[0].quote
    assert counting.texts == []  # decided by the regex: nothing embedded
    (v,) = engine.verdicts(call("Hello, I'm Sam.", "The lid is very sturdy."))
    assert v.verdict == "fail" and "The lid is very sturdy." in counting.texts  # no literal hit: embedded


def test_items_read_by_other_items_still_find_every_match(checklist, encoder):
    from callqa.qa_rules.engine import ChecklistEngine

    counting = _Counting(encoder)
    engine = ChecklistEngine(checklist, counting)
    turns = [("agent", "您好，我是小林。请问家里几口人用？"), ("customer", "三个人，就是有点贵。"),
             ("agent", "这台是十三套的，加热到七十度除菌。"), ("agent", "它的内胆是不锈钢的，很耐用。"),
             ("customer", "好的。")]
    tr = Transcript(tuple(Segment(sp, 2.0 * i, 2.0 * i + 2, t) for i, (sp, t) in enumerate(turns)), "zh")
    got = {v.item_id: v for v in engine.verdicts(tr)}
    assert got["selling_point"].verdict == "pass" and got["usage_scenario"].verdict == "pass"
    # objection is read by objection_resolved match by match: every customer sentence is looked at
    assert "好的。" in counting.texts
    # and an engine that must find every match gives the same verdicts
    full = {i.id for i in checklist.items}
    engine_all = ChecklistEngine(checklist, encoder)
    engine_all._read_by_others = full
    assert [v.verdict for v in engine_all.verdicts(tr)] == [v.verdict for v in engine.verdicts(tr)]


def test_scoring_many_calls_at_once_gives_the_same_verdicts(shared_data, checklist, encoder):
    from callqa.qa_rules.engine import ChecklistEngine

    calls = [Transcript.from_turns(c["turns"], c["language"]) for c in dev_calls()[:6]]
    one_by_one = [ChecklistEngine(checklist, encoder).verdicts(t) for t in calls]
    together = ChecklistEngine(checklist, encoder).verdicts_many(calls)
    assert [[(v.item_id, v.verdict) for v in vs] for vs in together] == \
        [[(v.item_id, v.verdict) for v in vs] for vs in one_by_one]


def test_many_calls_embed_only_what_the_rules_read_in_one_pass(tmp_path, encoder, monkeypatch):
    """matches_many finds the texts the rules will read (a dry run with stand-in vectors), encodes them in one
    pass, and gives the verdicts call-by-call scoring gives."""
    from callqa.qa_rules.checklist import load_checklist
    from callqa.qa_rules.engine import ChecklistEngine

    path = tmp_path / "spec_only.yaml"
    path.write_text(_ONE_ITEM, encoding="utf-8")
    engine = ChecklistEngine(load_checklist(path), encoder)
    engine.warm_up()
    encoder.clear_cache()
    batches: list[list[str]] = []  # what the model itself runs on (the memo cache answers the rest)
    encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: batches.append(list(texts)) or encode(texts))

    def call(*agent: str) -> Transcript:
        return Transcript(tuple(Segment("agent", 2.0 * i, 2.0 * i + 2, t) for i, t in enumerate(agent)), "en")

    calls = [call("It holds 2 liters.", "The lid is very sturdy."),  # decided by the regex
             call("Hello there.", "Its motor is really powerful."),  # needs the semantic rule
             call("Hello there.", "Thanks for calling.")]  # needs it too, and fails
    together = [[(v.verdict, v.evidence[0].quote if v.evidence else None) for v in engine.judge(ctx)]
                for ctx in engine.matches_many(calls)]
    monkeypatch.undo()
    # one pass for all calls, and none of the first call's sentences: the regex decided it
    assert [set(b) for b in batches] == [{"Hello there.", "Its motor is really powerful.", "Thanks for calling."}]
    plain = ChecklistEngine(load_checklist(path), encoder)
    assert together == [[(v.verdict, v.evidence[0].quote if v.evidence else None) for v in plain.verdicts(t)]
                         for t in calls]
    assert [v[0][0] for v in together] == ["pass", "pass", "fail"]


def test_many_calls_with_shared_turn_texts_match_call_by_call(checklist, encoder):
    """Whole-turn embeddings join a later round; a turn text two calls share must not keep its stand-in."""
    from callqa.qa_rules.engine import ChecklistEngine

    turns = [("agent", "您好，我是小林。"), ("customer", "这个太贵了，别家便宜很多。"),
             ("agent", "理解您。我们可以送您一套滤芯。另外三十天内可以无理由退货。"), ("customer", "好吧。")]
    first = Transcript(tuple(Segment(sp, 2.0 * i, 2.0 * i + 2, t) for i, (sp, t) in enumerate(turns)), "zh")
    second = Transcript(first.segments[1:], "zh")  # the same objection and reply, no greeting
    encoder.clear_cache()
    engine = ChecklistEngine(checklist, encoder)
    together = [[(v.item_id, v.verdict, v.confidence) for v in engine.judge(ctx)]
                for ctx in engine.matches_many([first, second, first])]
    one_by_one = [[(v.item_id, v.verdict, v.confidence) for v in ChecklistEngine(checklist, encoder).verdicts(t)]
                  for t in (first, second, first)]
    assert together == one_by_one
    assert dict((i, v) for i, v, _ in together[0])["objection_resolved"] == "pass"


def test_calls_already_embedded_skip_the_dry_run(checklist, encoder, monkeypatch):
    """Scoring a call whose sentences the encoder holds runs each item once: no stand-ins, no second pass."""
    from callqa.qa_rules import engine as engine_mod

    calls = [Transcript.from_turns(c["turns"], c["language"]) for c in dev_calls()[:3]]
    engine = engine_mod.ChecklistEngine(checklist, encoder)
    first = engine.verdicts_many(calls)  # embeds what the rules read
    runs: list[int] = []
    run = engine._run
    monkeypatch.setattr(engine, "_run", lambda ctx, start=0, probe=None: runs.append(start) or run(ctx, start, probe))
    again = engine.verdicts_many(calls)
    assert runs == [0, 0, 0]  # each call evaluated once, from its first item
    assert [[(v.item_id, v.verdict, v.confidence) for v in vs] for vs in again] == \
        [[(v.item_id, v.verdict, v.confidence) for v in vs] for vs in first]
    assert encoder.cached(["no such sentence was ever embedded"]) == []


def test_evidence_is_the_span_that_passed():
    """Consecutive matched sentences of one turn are one piece of evidence: quote and times cover the span (a
    greeting is not cut to its "Hello."); a match in another turn stays its own piece."""
    from callqa.qa_rules.checklist import parse_checklist
    from callqa.qa_rules.engine import ChecklistEngine

    cl = parse_checklist("id: t\nversion: 1\nitems:\n  - id: greeting\n    title: Greeting\n    evidence_limit: 3\n"
                         "    detect: {any: [{keyword: [hello, 您好]}, {regex: ['this is \\w+', '我是\\S+']}]}\n")
    eng = ChecklistEngine(cl, None)
    tr = Transcript((Segment("agent", 0.0, 4.0, "Hello. This is Dave from HomeCo. How can I help?"),
                     Segment("customer", 4.0, 6.0, "Hi Dave."),
                     Segment("agent", 6.0, 9.0, "您好。我是小李。"),
                     Segment("agent", 9.0, 12.0, "OK, hello again.")), "en")
    (v,) = eng.verdicts(tr)
    assert v.verdict == "pass"
    assert [(e.quote, e.segment) for e in v.evidence] == [
        ("Hello. This is Dave from HomeCo.", 0), ("您好。我是小李。OK, hello again.", 2)]
    # times span from the first sentence's start to the last one's end (here segment times: no word timings)
    assert (v.evidence[0].start, v.evidence[0].end) == (0.0, 4.0)
    assert (v.evidence[1].start, v.evidence[1].end) == (6.0, 12.0)
