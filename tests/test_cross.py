"""The fine-tuned cross-encoder (models/cross_encoder.py), its operators (qa_rules/cross_ops.py) and
`callqa train --finetune` (pipelines/learn/finetune.py), on the real bundled e5 weights and the shipped adapters."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from callqa.models.cross_encoder import file_sha256, load_cross, read_meta
from callqa.qa_rules.checklist import CHECKLIST_DIR, ChecklistError, load_checklist, parse_checklist

from callqa.records import Transcript

SHIPPED = CHECKLIST_DIR / "sales_core.cross.safetensors"


@pytest.fixture(scope="module")
def engine(encoder):
    from callqa.qa_rules.engine import ChecklistEngine

    return ChecklistEngine(load_checklist("sales_core"), encoder)


@pytest.fixture(scope="module")
def cross():
    cl = load_checklist("sales_core")
    return load_cross(cl.cross_path, cl.cross_sha256)


def test_shipped_file_is_pinned_and_describes_itself(cross):
    cl = load_checklist("sales_core")
    assert cl.cross_sha256 == file_sha256(SHIPPED) == cross.sha256
    meta = read_meta(SHIPPED)
    assert set(meta["tasks"]) == {"concern", "answer", "dismissive"}
    assert meta["lora"]["scale"] == meta["lora"]["alpha"] / meta["lora"]["r"]
    assert "W10" in " ".join(meta["training"]["held_back"])  # the sets it was not trained on are named
    assert SHIPPED.stat().st_size < 25 * 2**20


def test_a_changed_file_is_refused(tmp_path):
    bad = tmp_path / "x.safetensors"
    shutil.copy(SHIPPED, bad)
    with open(bad, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="SHA-256"):
        load_cross(bad, file_sha256(SHIPPED))
    with pytest.raises(FileNotFoundError, match="train --finetune"):
        load_cross(tmp_path / "missing.safetensors")


def test_reads_a_turn_in_its_context(cross):
    """Clear cases each way, with wide margins: a complaint is a concern and a thank-you is not; a concrete reply
    answers a price objection and a change of subject does not; blame is dismissive and an apology is not."""
    concern = cross.probabilities("concern", [
        ("这也太贵了吧，隔壁店便宜两百块", "这款是今年的新款"),
        ("It arrived broken and nobody called me back.", "How can I help you today?"),
        ("好的，谢谢你", "那我帮您下单了"),
        ("Great, thanks a lot.", "Your order is confirmed."),
    ])
    assert min(concern[:2]) > 0.7 and max(concern[2:]) < 0.3, concern
    answer = cross.probabilities("answer", [
        ("这也太贵了吧，隔壁店便宜两百块", "我们可以给您再优惠两百，再送一年延保，价格就和隔壁一样了"),
        ("这也太贵了吧，隔壁店便宜两百块", "您家里几口人用呀？"),
    ])
    assert answer[0] > 0.6 and answer[1] < 0.4 and answer[0] - answer[1] > 0.4, answer
    dismissive = cross.probabilities("dismissive", [
        ("That's not our problem, take it up with the courier.", ""),
        ("I'm so sorry, that was our mistake and I'll send a new one today.", ""),
    ])
    assert dismissive[0] > 0.6 and dismissive[1] < 0.4, dismissive


def test_memo_gives_the_same_numbers(cross):
    pairs = [("还是有点贵", "这款有十年质保"), ("我再考虑一下吧", "")]
    first = cross.probabilities("concern", pairs)
    again = cross.probabilities("concern", list(reversed(pairs)))
    assert np.allclose(first, again[::-1])


def _call(turns):
    return Transcript.from_turns([{"speaker": s, "text": t} for s, t in turns])


def test_engine_finds_each_concern_and_the_one_left_unanswered(engine):
    """v14: the cross-encoder finds the customer's concerns (a price objection, then a delivery complaint) and not
    the closing "ok, this one"; the resolution (v13's pair head) fails and its reason quotes the concern it found
    unanswered (the pair head does not take the bare "再减三百，还送安装" as an answer to a price objection in a toy
    call like this: docs/corpus.md notes short toy calls are off its distribution)."""
    one = _call([("agent", "您好，我是小王，请问有什么可以帮您？"), ("customer", "这台空调太贵了，别家便宜三百"),
                 ("agent", "我们可以给您再减三百，还送安装"), ("customer", "那送货要等多久？上次等了半个月"),
                 ("agent", "您家里几口人住呀？")])
    none = _call([("agent", "您好，我是小王，请问有什么可以帮您？"), ("customer", "我想看看一级能效的空调"),
                  ("agent", "这款是一级能效，静音二十分贝"), ("customer", "好的，那就这台吧")])
    v1 = {v.item_id: v for v in engine.verdicts(one)}
    v0 = {v.item_id: v for v in engine.verdicts(none)}
    assert v1["objection"].verdict == "pass" and v0["objection"].verdict == "fail"
    assert any("贵" in e.quote or "送货" in e.quote for e in v1["objection"].evidence)
    assert v0["objection_resolved"].verdict == "na"
    assert v1["objection_resolved"].verdict == "fail"
    assert v1["objection_resolved"].reason.startswith("no answer to") and "贵" in v1["objection_resolved"].reason


def test_checklist_must_name_the_file_for_cross_items():
    text = """
id: t
version: 1
title: {en: t}
items:
- id: concern
  title: {en: concern}
  speaker: customer
  weight: 0
  detect: {cross: {task: concern}}
"""
    with pytest.raises(ChecklistError, match="cross-encoder file"):
        parse_checklist(text)
    with pytest.raises(ChecklistError, match="threshold"):
        parse_checklist(text.replace("{task: concern}", "{task: concern, threshold: 2}") +
                        "model: {cross: sales_core.cross.safetensors}\n")


def test_finetune_writes_a_file_the_engine_reads(tmp_path, capsys):
    """`callqa train --finetune` for a few batches on a slice of the corpus: the file loads without peft, its
    merged weights give what the trained peft model gives, and the report names what it was trained on."""
    import torch
    from callqa.pipelines.cli.main import main
    from callqa.pipelines.learn import finetune as ft

    part = tmp_path / "slice"
    part.mkdir()
    rows = (CHECKLIST_DIR.parents[1] / "corpus" / "W01.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (part / "W01.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["-q", "train", "--finetune", "--manifest", str(part), "--out", str(out), "--max-steps", "3"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "sales_core.cross.json").read_text(encoding="utf-8"))
    assert report["training"]["steps"] == 3 and report["training"]["calls"] == 40
    assert f"cross_sha256: {report['sha256']}" in printed
    model = load_cross(out / "sales_core.cross.safetensors", report["sha256"])
    pairs = [("太贵了，别家便宜", "这款是新款"), ("It broke again.", "Sorry to hear that.")]
    merged = model.probabilities("concern", pairs)

    # the same training again, kept in memory as the peft model: seeded, so it is the same network, and the file's
    # merged weights (read without peft) give what the adapters give
    from callqa.pipelines.learn.train import read_manifests

    net, record = ft.train_net(read_manifests([part]), ft.FinetuneConfig(max_steps=3))
    assert sum(p.numel() for p in net.parameters()) < 2_000_000  # adapters and heads only, not the encoder
    with torch.no_grad():
        direct = torch.sigmoid(net.logits("concern", [a for a, _ in pairs], [b for _, b in pairs])).numpy()
    assert np.allclose(direct, merged, atol=1e-4), (direct, merged)


def test_finetune_refuses_calls_without_both_classes(tmp_path):
    from callqa.pipelines.cli.main import main

    part = tmp_path / "W99.jsonl"
    part.write_text(json.dumps({"call_id": "x", "language": "en", "labels": {"objection": False},
                                "turns": [{"speaker": "agent", "text": "hi"}, {"speaker": "customer", "text": "ok"}]})
                    + "\n", encoding="utf-8")
    assert main(["-q", "train", "--finetune", "--manifest", str(part), "--out", str(tmp_path / "o")]) == 1
