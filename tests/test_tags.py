"""Customer need tags: data-defined, computed with evidence, on real dev calls and written cases."""

from __future__ import annotations

import pytest
from callqa.qa_rules.checklist import ChecklistError
from callqa.qa_rules.tags import load_tags, parse_tags, tag_needs

from callqa.records import NeedTag, Segment, Transcript
from tests.conftest import dev_calls


def _tags(*lines: str, speaker: str = "customer", embedder=None) -> dict[str, NeedTag]:
    tr = Transcript(tuple(Segment(speaker, i, i + 1, t) for i, t in enumerate(lines)))
    return {t.tag_id: t for t in tag_needs(tr, embedder)}


def test_bundled_tags_load_with_titles_in_both_languages():
    ts = load_tags()
    assert {"allergy", "elderly_user", "baby", "budget_sensitive", "gift"} <= {t.id for t in ts.tags}
    assert all({"zh", "en"} <= set(t.title) for t in ts.tags)


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        ("孩子对花生过敏，这个里面有吗？", "allergy"),
        ("My daughter has sensitive skin and gets a rash easily.", "allergy"),
        ("主要是给家里老人用的，字要大一点。", "elderly_user"),
        ("It's for my grandfather, he's 84.", "elderly_user"),
        ("宝宝八个月大了，刚开始加辅食。", "baby"),
        ("We have a newborn at home.", "baby"),
        ("预算三百以内，有没有便宜点的？", "budget_sensitive"),
        ("Anything under $50? That's my limit.", "budget_sensitive"),
        ("想买个礼物送朋友，过生日用。", "gift"),
        ("It's an anniversary present for my wife.", "gift"),
    ],
)
def test_tags_from_customer_words(line, tag):
    got = _tags(line)
    assert tag in got, got
    assert got[tag].evidence[0].quote in line and got[tag].evidence[0].speaker == "customer"


def test_agent_words_and_negations_do_not_tag():
    assert _tags("宝宝多大了？送人还是自己用？", speaker="agent") == {}
    assert "budget_sensitive" not in _tags("I don't have any budget restrictions.")
    assert "gift" not in _tags("快递都送给我了。")


def test_dev_calls_get_the_needs_their_customers_state(shared_data):
    calls = {c["call_id"]: c for c in dev_calls()}

    def tags_of(cid):
        c = calls[cid]
        return {t.tag_id for t in tag_needs(Transcript.from_turns(c["turns"], c["language"]))}

    assert "pregnancy" in tags_of("D013")
    assert "elderly_user" in tags_of("D024")
    assert "pet" in tags_of("D003")
    assert "budget_sensitive" in tags_of("D019")
    assert "baby" not in tags_of("D015")  # "一个月大概三四百克" is about coffee, not a baby's age


def test_semantic_parts_run_with_an_encoder(encoder):
    # no budget keyword: only the semantic exemplars see the budget concern
    assert "budget_sensitive" in _tags("有没有实惠一点的款式？", embedder=encoder)
    assert "budget_sensitive" not in _tags("有没有实惠一点的款式？")


def test_tag_file_errors_name_line_and_field():
    with pytest.raises(ChecklistError, match=r"t.yaml:4: tags\[0\]: unknown field 'colour'"):
        parse_tags("id: x\nversion: 1\ntags:\n  - {id: a, title: A, colour: red, detect: {keyword: [x]}}\n", "t.yaml")
    with pytest.raises(ChecklistError, match="cannot refer to checklist items"):
        parse_tags("id: x\nversion: 1\ntags:\n  - {id: a, title: A, detect: {item: objection}}\n", "t.yaml")
