"""PII masking: phone numbers, national IDs, bank cards (zh and en formats), and what must stay."""

from __future__ import annotations

import pytest
from callqa.qa_rules.pii import PiiConfig, cn_id_ok, luhn_ok, mask_pii, mask_transcript

from callqa.records import Segment, Transcript


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的手机是138 1234 5678，谢谢", "我的手机是[PHONE]，谢谢"),
        ("电话13912345678", "电话[PHONE]"),
        ("+86 139-1234-5678", "[PHONE]"),
        ("电话是幺三八一二三四五六七八", "电话是[PHONE]"),
        ("座机010-62345678", "座机[PHONE]"),
        ("call me at (415) 555-2671 or 415.555.2671", "call me at [PHONE] or [PHONE]"),
        ("it's five five five, two three four, five six seven eight.", "it's [PHONE]."),
        ("UK: +44 20 7946 0958", "UK: [PHONE]"),
        ("身份证号11010519491231002X", "身份证号[ID]"),
        ("ID 11010519491231002x please", "ID [ID] please"),
        ("card 4111 1111 1111 1111 exp 12/28", "card [CARD] exp 12/28"),
        ("卡号6222 0212 3456 7890 123", "卡号[CARD]"),
        ("write to crystal.m@example.com", "write to [EMAIL]"),
    ],
)
def test_masks_zh_and_en_formats(text, expected):
    assert mask_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "八只装的是五百九十八元，今天下单明天就能寄出。",
        "It costs 1,299.00 dollars, 3.5 liters, model SP3.",
        "Order ID: 3348917502",  # a reference number, not a phone
        "商品链接 521521942026 这个",  # a 12-digit item id (fails every check)
        "身份证号110105194912310021",  # wrong check digit: not an ID
        "delivery on 2026-11-03 at 12:30",
        "一共三千二百块，分六期",
    ],
)
def test_leaves_prices_dates_and_reference_numbers(text):
    assert mask_pii(text) == text


def test_config_partial_style_and_kinds():
    assert mask_pii("card 4111-1111-1111-1111", PiiConfig(style="partial")) == "card ************1111"
    assert mask_pii("13812345678 / 4111111111111111", PiiConfig(bank_card=False)) == "[PHONE] / 4111111111111111"


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert cn_id_ok("11010519491231002X") and not cn_id_ok("11010519491331002X")  # month 13


def test_mask_transcript_keeps_times_and_speakers():
    tr = Transcript((Segment("customer", 1.0, 3.5, "我的电话是13812345678"), Segment("agent", 3.5, 5.0, "好的")), "zh")
    out = mask_transcript(tr)
    assert out.segments[0].text == "我的电话是[PHONE]" and out.segments[0].start == 1.0
    assert out.segments[1] is tr.segments[1] and out.language == "zh"
