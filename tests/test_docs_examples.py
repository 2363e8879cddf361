"""Every YAML example in docs/checklists.md is parsed by the checklist parser, so the docs and the schema cannot
drift apart (a field the docs show and the parser rejects fails here)."""

from __future__ import annotations

import re

import pytest
import yaml
from callqa.qa_rules.checklist import parse_checklist

from tests.conftest import ROOT

DOC = ROOT / "docs" / "checklists.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
# what an example that is not a whole checklist is wrapped in: items it may refer to, then the example
WRAP = ("id: doc\nversion: 1\nmodel: {heads: doc.heads.npz}\nitems:\n"
        "  - {id: objection, title: Objection, speaker: customer, detect: {keyword: [太贵]}}\n"
        "  - {id: greeting, title: Greeting, detect: {keyword: [您好]}}\n")


def as_checklist(block: str) -> str:
    doc = yaml.safe_load(block)
    if "items" in doc:
        return block
    if set(doc) <= {"calibration", "model"}:
        return WRAP.replace("model: {heads: doc.heads.npz}\n", "") + block if "model" in doc else WRAP + block
    return WRAP + "  - id: example\n    title: Example\n    detect:\n" + "".join(
        f"      {line}\n" for line in block.splitlines())


def test_the_docs_have_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_yaml_example_in_the_docs_parses(block):
    checklist = parse_checklist(as_checklist(block), source=str(DOC))
    assert checklist.items
