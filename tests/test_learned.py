"""Trained judgement: the heads file, the `model`/`model_answer` operators, `callqa train`, and the shipped
checklist measured on calls its heads never saw (dev and the real chats are kept out of training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from callqa.pipelines.learn.evaluate import LABELS, attach_labels, classify_text, evaluate_calls, predicted_label
from callqa.pipelines.run.batch import read_manifest
from callqa.qa_rules.checklist import CHECKLIST_DIR, ChecklistError, load_checklist, parse_checklist
from callqa.qa_rules.learned import Head, Heads, load_heads

from tests.conftest import DEV, ROOT

HELDOUT = ROOT / "tests" / "data" / "heldout"
CORPUS = ROOT / "corpus"


def _tiny_heads() -> Heads:
    rng = np.random.default_rng(0)
    return Heads({"x": Head(rng.normal(size=(4, 3)).astype(np.float32), np.zeros(3, np.float32),
                            rng.normal(size=(3, 1)).astype(np.float32), np.zeros(1, np.float32), a=2.0, b=-1.0)},
                 {"encoder": "test"})


def test_heads_file_round_trips_and_is_pinned_by_its_hash(tmp_path):
    heads = _tiny_heads()
    digest = heads.save(tmp_path / "h.npz")
    back = load_heads(tmp_path / "h.npz", digest)
    x = np.ones((2, 4), np.float32)
    assert np.allclose(back.head("x").probability(x), heads.head("x").probability(x))
    assert back.sha256 == digest and back.meta["encoder"] == "test"
    with pytest.raises(ValueError, match="SHA-256"):
        load_heads(tmp_path / "h.npz", "0" * 64)
    with pytest.raises(KeyError, match="no head 'y'"):
        back.head("y")


@pytest.mark.parametrize("detect, message", [
    ("{model: {threshold: 0.5}}", "head"),
    ("{model: {head: x, threshold: 1.5}}", "between 0 and 1"),
    ("{model_answer: {head: x}}", "trigger"),
    ("{model: {head: x, colour: red}}", "colour"),
])
def test_model_operators_are_validated_with_the_field_named(detect, message):
    text = ("id: t\nversion: 1\nmodel: {heads: h.npz}\nitems:\n  - id: a\n    title: {en: A}\n"
            f"    detect: {detect}\n")
    with pytest.raises(ChecklistError, match=message):
        parse_checklist(text)


def test_a_checklist_using_heads_must_name_its_heads_file():
    text = "id: t\nversion: 1\nitems:\n  - id: a\n    title: {en: A}\n    detect: {model: {head: x}}\n"
    with pytest.raises(ChecklistError, match="heads file"):
        parse_checklist(text)


def test_shipped_checklist_pins_the_bundled_heads():
    cl = load_checklist("sales_core")
    heads = load_heads(cl.heads_path, cl.heads_sha256)
    assert set(heads.heads) >= {"usage_scenario", "selling_point", "objection", "greeting", "forbidden_phrase",
                                "answer"}
    # trained without the calls the tests score below
    assert "dev" not in heads.meta["writers"] and heads.meta["calls"] >= 1500


def test_engine_verdicts_match_the_trainers_own_prediction(engine, checklist, encoder):
    """The engine (operators over utterances) and the trainer's predictor (features over the same split) agree
    call by call: what `callqa train` measured is what the pipeline does. Since v14 the objection is the
    cross-encoder's (tests/test_cross.py), and the resolution depends on it: those two are not the heads' to match."""
    from callqa.pipelines.learn.train import prepare
    from callqa.pipelines.learn.train_eval import COMBOS, predict_with_rules

    rows = read_manifest(DEV / "calls.jsonl", require_file=False)
    rules_cl = load_checklist("sales_core_rules")
    from callqa.qa_rules.engine import ChecklistEngine

    rule_engine = ChecklistEngine(rules_cl, encoder)
    rules = [{v.item_id: predicted_label(rules_cl, v) for v in vs} for _, _, vs in classify_text(rule_engine, rows)]
    calls = prepare(rows, encoder)
    expected = predict_with_rules(engine.heads.heads, calls, rules, COMBOS)
    got = [{v.item_id: predicted_label(checklist, v) for v in vs} for _, _, vs in classify_text(engine, rows)]
    mismatches = [(r["call_id"], k, e[k], g[k]) for r, e, g in zip(rows, expected, got, strict=True)
                  for k in LABELS if k not in ("objection", "objection_resolved") and e[k] != g[k]]
    assert not mismatches


def test_verdicts_carry_the_heads_probability_and_the_sentence_that_decided(engine):
    rows = read_manifest(DEV / "calls.jsonl", require_file=False)
    (_, _, verdicts), = classify_text(engine, rows[:1])
    v = next(v for v in verdicts if v.item_id == "usage_scenario")
    assert 0.5 <= v.confidence <= 1.0
    if v.verdict == "pass":
        assert v.evidence and all(e.speaker == "agent" for e in v.evidence)
        assert all(len(e.quote) < len(rows[0]["turns"][2]["text"]) + 5 for e in v.evidence)


# measured on calls the heads never saw (docs/corpus.md): dev 0.943, real chats 0.558 (the rules, tuned on
# these very chats, read 0.915; their blind reading was 0.490). Floors are regression guards under the
# measured figures, not the targets (0.90 dev, 0.88 real), which the real chats miss.
FLOORS = {"dev": 0.88, "real": 0.50, "final": 0.82}


def test_trained_checklist_on_the_final_blind_set(checklist, engine):
    """W11: 60 calls written after the heads were frozen, by a writer who saw nothing else; read once: 0.868."""
    rows = read_manifest(HELDOUT / "calls_w11_final.jsonl", require_file=False)
    ev = evaluate_calls(checklist, classify_text(engine, rows))
    assert ev.macro_f1 >= FLOORS["final"], {k: round(m["f1"], 3) for k, m in ev.items.items()}


def test_trained_checklist_on_dev_it_never_saw(checklist, engine):
    ev = evaluate_calls(checklist, classify_text(engine, read_manifest(DEV / "calls.jsonl", require_file=False)))
    assert ev.macro_f1 >= FLOORS["dev"], {k: round(m["f1"], 3) for k, m in ev.items.items()}


def test_trained_checklist_on_real_chats_it_never_saw(shared_data, checklist, engine):
    rows = attach_labels(read_manifest(shared_data / "real" / "dialogues.jsonl", require_file=False),
                         read_manifest(HELDOUT / "real_labels.jsonl", require_file=False))
    ev = evaluate_calls(checklist, classify_text(engine, rows))
    assert ev.macro_f1 >= FLOORS["real"], {k: round(m["f1"], 3) for k, m in ev.items.items()}


def test_callqa_train_is_seeded_and_reproducible(tmp_path, capsys):
    """Two runs of `callqa train` on the same small slice of the corpus write byte-identical heads."""
    from callqa.pipelines.cli.main import main

    part = tmp_path / "slice"
    part.mkdir()
    for w in ("W01", "W02"):
        lines = (CORPUS / f"{w}.jsonl").read_text(encoding="utf-8").splitlines()[:24]
        (part / f"{w}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    digests = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        assert main(["-q", "train", "--manifest", str(part), "--out", str(out), "--epochs", "4"]) == 0
        report = json.loads((out / "sales_core.heads.json").read_text(encoding="utf-8"))
        assert report["calls"] == 48 and set(report["writers"]) == {"W01", "W02"}
        digests.append(report["sha256"])
    assert digests[0] == digests[1]
    assert "sha256:" in capsys.readouterr().out
    assert (CHECKLIST_DIR / "sales_core.heads.npz").is_file()


# --- a team's own item, fitted from its examples --------------------------------------------------

TEAM = CHECKLIST_DIR / "team_follow_up.yaml"


@pytest.fixture(scope="module")
def team_engine(encoder):
    from callqa.qa_rules.engine import ChecklistEngine

    return ChecklistEngine(load_checklist(TEAM), encoder)


def test_team_item_is_refit_from_its_examples(tmp_path, capsys, team_engine, encoder):
    """`callqa train --checklist` on the shipped team checklist refits heads that judge every example as the shipped
    ones do, and writes a checklist that pins the new file. Byte-identity holds on one machine (the seeded test above);
    across CPUs it cannot: the encoder runs bf16 where the CPU has it and fp32 elsewhere, and the refit weights then
    move by a few hundredths (0.047 of 2.7 between the two measured), so what must hold is the behaviour."""
    from callqa.pipelines.cli.main import main
    from callqa.qa_rules.engine import ChecklistEngine
    from callqa.qa_rules.learned import file_sha256

    from callqa.records import Transcript

    assert main(["-q", "train", "--checklist", str(TEAM), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fitted follow_up_time from 18 pass / 20 fail examples" in out
    shipped = load_checklist(TEAM)
    refit = load_checklist(tmp_path / "team_follow_up.yaml")
    assert refit.heads_sha256 == file_sha256(refit.heads_path)
    heads = load_heads(refit.heads_path, refit.heads_sha256)
    old = load_heads(shipped.heads_path, shipped.heads_sha256)
    assert heads.head("follow_up_time").unit == "pieces"
    assert heads.head("follow_up_time").w1.shape == old.head("follow_up_time").w1.shape
    rep = heads.meta["example_heads"]["heads"]["follow_up_time"]
    was = old.meta["example_heads"]["heads"]["follow_up_time"]
    assert rep["loo_pass_recall"] >= 0.8 and rep["bank_flagged"] < 0.1
    assert abs(rep["loo_pass_recall"] - was["loo_pass_recall"]) <= 0.12  # at most one of 18 held-out examples moves
    refit_engine = ChecklistEngine(refit, encoder)

    def verdict(engine: ChecklistEngine, text: str) -> str:
        t = Transcript.from_turns([{"speaker": "customer", "text": "好的 / ok"}, {"speaker": "agent", "text": text}])
        return next(v for v in engine.verdicts(t) if v.item_id == "follow_up_time").verdict
    examples = shipped.item("follow_up_time").examples
    texts = examples["pass"] + examples["fail"]
    moved = [x for x in texts if verdict(team_engine, x) != verdict(refit_engine, x)]
    # 0 today between the shipped file (fitted on a bf16 CPU) and an fp32 refit
    assert len(moved) <= 1, moved


def test_team_item_passes_its_own_examples(team_engine):
    """Every pass example, said by the agent in a two-turn call, passes; at most 4 of the 20 fail examples pass
    (3 today: a clause read alone, such as "那您明天下午三点给我们回电就行", looks like a promise). The head is
    fitted on them, so this is what it learned, not how it generalises: see the next test."""
    from callqa.records import Transcript

    item = load_checklist(TEAM).item("follow_up_time")
    def verdict(text: str) -> str:
        t = Transcript.from_turns([{"speaker": "customer", "text": "好的 / ok"}, {"speaker": "agent", "text": text}])
        return next(v for v in team_engine.verdicts(t) if v.item_id == "follow_up_time").verdict
    assert [x for x in item.examples["pass"] if verdict(x) != "pass"] == []
    assert len([x for x in item.examples["fail"] if verdict(x) == "pass"]) <= 4  # 3 today


def test_team_item_on_calls_it_never_saw(team_engine):
    """W11 (written after everything was frozen, by a writer who never saw the examples): the follow-up head, fitted
    on 38 snippets, read 0.889 there once (P 0.909, R 0.870; docs/corpus.md). Floor under it with room."""
    checklist = load_checklist(TEAM)
    rows = read_manifest(HELDOUT / "calls_w11_final.jsonl", require_file=False)
    ev = evaluate_calls(checklist, classify_text(team_engine, rows), ("follow_up_time",))
    assert ev.items["follow_up_time"]["support"] == 23
    assert ev.items["follow_up_time"]["f1"] >= 0.80, ev.items


@pytest.mark.parametrize("examples, message", [
    ("{pass: [a, b], colour: [c]}", "colour"),
    ("{pass: 'one sentence'}", "list of non-empty snippets"),
    ("[a, b]", "mapping"),
])
def test_item_examples_are_validated(examples, message):
    text = ("id: t\nversion: 1\nmodel: {heads: h.npz}\nitems:\n  - id: a\n    title: {en: A}\n"
            f"    detect: {{model: {{head: a}}}}\n    examples: {examples}\n")
    with pytest.raises(ChecklistError, match=message):
        parse_checklist(text)


def test_an_item_needs_enough_examples_to_fit(tmp_path):
    from callqa.pipelines.learn.train_items import run_item_training

    path = tmp_path / "few.yaml"
    path.write_text("id: few\nversion: 1\nmodel: {heads: few.heads.npz}\nitems:\n  - id: a\n    title: {en: A}\n"
                    "    detect: {model: {head: a}}\n    examples: {pass: [x1, x2], fail: [y1, y2]}\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="at least 5 pass"):
        run_item_training(path, tmp_path / "out")
