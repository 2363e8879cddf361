"""Call metrics and follow-up detection on hand-made segments (exact numbers)."""

from __future__ import annotations

import pytest

from callqa.records import Segment


def test_call_metrics_exact():
    from callqa.pipelines.reports.call_metrics import call_metrics

    segs = [
        Segment("agent", 0.0, 4.0, "Hello, this is Sam from Nova."),  # 6 words
        Segment("customer", 5.0, 9.0, "I want a phone."),
        Segment("customer", 9.5, 14.0, "A cheap one."),  # joins the previous: monologue 5.0-14.0
        Segment("agent", 13.0, 16.0, "我们有三款。"),  # cuts in 1.0 s before the customer stops; 5 characters
        Segment("customer", 20.0, 21.0, "OK."),
    ]
    m = call_metrics(segs, duration_s=25.0)
    assert m.agent_talk_s == 7.0 and m.customer_talk_s == pytest.approx(9.5)
    assert m.talk_ratio == pytest.approx(7.0 / 16.5, abs=1e-3)
    assert m.longest_customer_monologue_s == pytest.approx(9.0)
    # speech covers 0-4, 5-9, 9.5-16, 20-21 = 15.5 s of 25
    assert m.silence_share == pytest.approx(1 - 15.5 / 25, abs=1e-3)
    assert (m.interruptions_by_agent, m.interruptions_by_customer) == (1, 0)
    assert m.agent_words == 11 and m.agent_words_per_min == pytest.approx(60 * 11 / 7.0, abs=0.1)


def test_agent_metrics_aggregate():
    from callqa.pipelines.reports.call_metrics import agent_metrics, call_metrics

    a = call_metrics([Segment("agent", 0, 6, "one two three"), Segment("customer", 6, 8, "ok")], 10)
    b = call_metrics([Segment("agent", 0, 2, "hi"), Segment("customer", 2, 10, "long story here")], 10)
    (m,) = agent_metrics([("A1", "en", a), ("A1", "en", b)])
    assert m.calls == 2 and m.talk_ratio == pytest.approx((0.75 + 0.2) / 2)
    assert m.longest_customer_monologue_s == 8.0 and m.words_per_min == {"en": pytest.approx((30 + 30) / 2)}


@pytest.mark.parametrize("text,kind,due", [
    ("到货了我第一时间通知您。", "restock_alert", None),
    ("我明天下午再给您回个电话。", "call_back", "明天"),
    ("我把报价单整理好发给您。", "send_quote", None),
    ("I'll call you back tomorrow with the numbers.", "call_back", "tomorrow"),
    ("I can put you on the restock list for the red one.", "restock_alert", None),
    ("I'll send you a quote by Friday.", "send_quote", "Friday"),
    ("It has a stainless steel drum.", None, None),
])
def test_promise_patterns(text, kind, due):
    from callqa.pipelines.reports.followups import PromiseDetector

    found = PromiseDetector().find([Segment("agent", 0, 1, "Hello, this is Sam."), Segment("agent", 1, 3, text)])
    assert [p.kind for p in found] == ([kind] if kind else [])
    if kind:
        assert found[0].due == due and found[0].segment == 1


def test_semantic_promise_detector_catches_other_wording(encoder):
    from callqa.pipelines.reports.followups import PromiseDetector

    segs = [Segment("agent", 0, 1, "您好，我是王琳。"),
            Segment("agent", 1, 3, "好的，您到店里找我，我帮您把安装尺寸量好。"),
            Segment("agent", 3, 4, "这款是不锈钢内胆，容量五升。")]
    assert PromiseDetector().find(segs) == []
    found = PromiseDetector(encoder).find(segs)
    assert [(p.segment, p.kind, p.detector) for p in found] == [(1, "other", "semantic")]
