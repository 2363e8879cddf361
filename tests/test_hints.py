"""Decoder hints (issue 15, deliverable 2): terms known before decoding reach Whisper, per call, as prompt or hotwords.

The clip test decodes a real 6 s Mandarin clip (`shared/data/speech/funasr_llamacpp_sample.wav`, "我想问，我在滨海新区
有房") with the real weights: with no hints Whisper base writes the place name as homophones; the hints change what the
decoder scores (its log-probability moves), and an unrelated product's terms do not spoil the text.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from callqa.models.asr import AsrOptions, decoder_hints, transcribe_audio
from callqa.models.audio import load_audio
from callqa.models.hints import (
    MAX_HINT_CHARS,
    VocabularyError,
    call_options,
    merge_terms,
    product_terms,
    read_vocab_file,
    run_vocabulary,
    split_terms,
)
from callqa.pipelines.bench.asr_bench import clip_report, parse_runtime_spec
from callqa.pipelines.cli.main import main
from callqa.pipelines.run.batch import entries_from_manifest
from callqa.qa_rules.checklist import ChecklistError, parse_checklist

from tests.conftest import ROOT, SHARED

CLIP = SHARED / "speech" / "funasr_llamacpp_sample.wav"
REFERENCE = "我想问我在滨海新区有房"
UNRELATED = ("洗碗机", "嵌入式", "13套")  # D001's product: nothing to do with this clip


def test_product_terms_split_at_brackets_and_chinese_spaces():
    assert product_terms("洗碗机(嵌入式 13套)") == ("洗碗机", "嵌入式", "13套")
    assert product_terms("精华水(SK-II 神仙水 230ml)") == ("精华水", "SK-II", "神仙水", "230ml")
    assert product_terms("toddler car seat (out of stock)") == ("toddler car seat", "out of stock")
    assert product_terms("床垫（乳胶弹簧 1.8米）") == ("床垫", "乳胶弹簧", "1.8米")
    assert product_terms(None) == product_terms("") == ()
    assert split_terms("美家电器, 王琳、王琳;SK-II") == ("美家电器", "王琳", "SK-II")
    assert split_terms(["A", "a", " b "]) == ("A", "b")


def test_merge_keeps_order_and_the_character_budget():
    many = [f"术语{i:03d}" for i in range(60)]  # 5 characters each: far past the budget
    merged = merge_terms(["王琳"], many, ["王琳"])
    assert merged[0] == "王琳" and merged.count("王琳") == 1
    assert len("、".join(merged)) <= MAX_HINT_CHARS < len("、".join(["王琳", *many]))
    assert merged[1:4] == tuple(many[:3])


def test_each_call_gets_its_own_terms_first(tmp_path):
    """A manifest's `product` (with product_hints), `vocabulary` and `hotwords` columns become that call's hints,
    before the run's; other calls keep theirs; hints off shows nothing."""
    rows = [{"file": "a.wav", "agent_id": "A1", "started_at": "2026-11-01T10:00:00", "product": "洗碗机(嵌入式 13套)",
             "vocabulary": "美家电器, 王琳"},
            {"file": "b.wav", "agent_id": "A1", "started_at": "2026-11-01T11:00:00", "product": "wireless earbuds",
             "hotwords": ["FreshNest"]}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    a, b = entries_from_manifest(tmp_path / "m.jsonl", tmp_path)
    run = AsrOptions(vocabulary=("以旧换新",), product_hints=True)
    assert call_options(run, a.metadata).vocabulary == ("美家电器", "王琳", "洗碗机", "嵌入式", "13套", "以旧换新")
    assert call_options(run, b.metadata).vocabulary == ("FreshNest", "wireless earbuds", "以旧换新")
    assert call_options(replace(run, product_hints=False), a.metadata).vocabulary == ("美家电器", "王琳", "以旧换新")
    assert call_options(replace(run, hints="off"), a.metadata) == replace(run, hints="off")
    assert call_options(run, {}) == run


def test_decoder_hints_per_mode():
    opts = AsrOptions(vocabulary=("美家电器", "王琳"))
    assert decoder_hints("zh", opts) == ("以下是普通话的销售电话录音。涉及：美家电器、王琳。", None)
    assert decoder_hints("zh", replace(opts, hints="hotwords")) == ("以下是普通话的销售电话录音。", "美家电器、王琳")
    assert decoder_hints("zh", replace(opts, hints="off")) == ("以下是普通话的销售电话录音。", None)
    assert decoder_hints("en", replace(opts, vocabulary=("FreshNest",), hints="hotwords")) == (None, "FreshNest")
    assert decoder_hints("en", AsrOptions(hints="hotwords")) == (None, None)
    with pytest.raises(ValueError, match="hints must be one of prompt, hotwords, off"):
        AsrOptions(hints="hotword")
    with pytest.raises(TypeError, match="tuple of terms"):
        AsrOptions(vocabulary="洗碗机")  # type: ignore[arg-type]
    spec = parse_runtime_spec("faster-whisper:product_hints=true,hints=hotwords", AsrOptions())
    assert (spec.hints, spec.product_hints) == ("hotwords", True)
    with pytest.raises(ValueError, match="hints must be one of"):
        parse_runtime_spec("faster-whisper:hints=loud", AsrOptions())


def test_vocab_file_reading_and_its_errors(tmp_path):
    good = tmp_path / "team.txt"
    good.write_text("\ufeff# our products\n美家电器\n\n 王琳 \nSK-II\n美家电器\n", encoding="utf-8")
    assert read_vocab_file(good) == ("美家电器", "王琳", "SK-II")
    assert run_vocabulary(("extra",), good, ("清单词",)) == ("清单词", "美家电器", "王琳", "SK-II", "extra")
    with pytest.raises(VocabularyError, match="missing.txt: no such vocabulary file"):
        read_vocab_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match="empty.txt: no terms"):
        read_vocab_file(tmp_path / "empty.txt")
    (tmp_path / "prose.txt").write_text("王琳\n" + "这不是一个词而是一整段话，" * 5 + "\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"prose.txt:2: .* one term per line"):
        read_vocab_file(tmp_path / "prose.txt")
    (tmp_path / "gbk.txt").write_bytes("美家电器\n".encode("gbk"))
    with pytest.raises(VocabularyError, match="gbk.txt: not UTF-8 text"):
        read_vocab_file(tmp_path / "gbk.txt")


def test_a_missing_vocab_file_is_a_usage_error_before_anything_runs(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    db = tmp_path / "calls.duckdb"
    assert main(["-q", "run", str(tmp_path), "--no-prefect", "--db", str(db), "--vocab", str(missing)]) == 2
    assert "nope.txt: no such vocabulary file" in capsys.readouterr().err
    assert not db.exists()
    manifest = SHARED / "speech" / "manifest.jsonl"
    assert main(["-q", "asr-bench", "--manifest", str(manifest), "--vocab", str(missing)]) == 2
    assert "nope.txt: no such vocabulary file" in capsys.readouterr().err


def test_a_checklist_may_declare_product_terms():
    source = (ROOT / "qa_rules" / "checklists" / "sales_core.yaml").read_text(encoding="utf-8")
    head = "id: sales_core\n"
    assert head in source
    cl = parse_checklist(source.replace(head, head + "vocabulary: [美家电器, ' 嵌入式洗碗机 ']\n", 1))
    assert cl.vocabulary == ("美家电器", "嵌入式洗碗机")
    assert parse_checklist(source).vocabulary == ()
    with pytest.raises(ChecklistError, match="vocabulary: must be a list of product terms"):
        parse_checklist(source.replace(head, head + "vocabulary: 美家电器\n", 1))


@pytest.fixture(scope="module")
def decoded(runtime, asr_options):
    """The clip decoded with no hints, the place name as hotwords and as prompt, and an unrelated product's terms."""
    if not CLIP.is_file():
        pytest.fail(f"real voice clip not found: {CLIP} (set CALLQA_SHARED_DATA)")
    audio = load_audio(CLIP)
    runs = {"off": replace(asr_options, hints="off", vocabulary=("滨海新区",)),
            "hotwords": replace(asr_options, hints="hotwords", vocabulary=("滨海新区",)),
            "prompt": replace(asr_options, hints="prompt", vocabulary=("滨海新区",)),
            "unrelated hotwords": replace(asr_options, hints="hotwords", vocabulary=UNRELATED),
            "unrelated prompt": replace(asr_options, hints="prompt", vocabulary=UNRELATED)}
    return {name: transcribe_audio(audio, runtime, opts) for name, opts in runs.items()}


def _logprobs(tr) -> list[float | None]:
    return [s.avg_logprob for s in tr.segments]


def _text(tr) -> str:
    return "".join(s.text for s in tr.segments)


def test_hints_reach_the_decoder(decoded):
    """Each mode changes what the decoder scores (hints off ignores the vocabulary: nothing would move), and the
    place name given as hotwords is written as such."""
    for mode in ("hotwords", "prompt", "unrelated hotwords", "unrelated prompt"):
        assert _logprobs(decoded[mode]) != _logprobs(decoded["off"]), f"{mode}: the decoder saw no hint"
    assert "滨海新区" in _text(decoded["hotwords"]), _text(decoded["hotwords"])
    err = {m: clip_report(REFERENCE, _text(tr), "zh")["error_rate"] for m, tr in decoded.items()}
    assert err["hotwords"] <= err["off"], err


def test_unrelated_hints_change_nothing_else(decoded):
    """Another product's terms are accepted and spoil nothing: no more than 2 more wrong characters (of 11) than with
    no hints, no term written into the text, no repeats or invented tail."""
    off = clip_report(REFERENCE, _text(decoded["off"]), "zh")
    for mode in ("unrelated hotwords", "unrelated prompt"):
        text = _text(decoded[mode])
        rep = clip_report(REFERENCE, text, "zh")
        assert rep["errors"] <= off["errors"] + 2, (mode, text, off["hypothesis"])
        assert not any(t in text for t in UNRELATED), (mode, text)
        assert not rep["repeats"] and len(rep["tail"]) <= 1, (mode, rep)


def test_term_hits_count_what_the_reference_says():
    from callqa.pipelines.bench.asr_bench import term_hits

    hits = term_hits(["洗碗机", "嵌入式", "13套", "豆浆机"], "那建议您选十三套的嵌入式洗碗机。",
                     "那建议您选13套的欠入室洗碗机。", "zh")
    assert hits == {"洗碗机": [1, 1], "嵌入式": [1, 0], "13套": [1, 1]}


def test_the_bench_gives_each_row_its_own_hints(tmp_path):
    """asr-bench sends a row's `vocabulary` to the worker, which decodes with it and reports the terms it used and
    how often the reference's terms were written (one runtime, the 6 s clip)."""
    from callqa.pipelines.bench.asr_bench import run_bench

    row = {"file": str(CLIP), "call_id": "clip", "language": "zh", "reference_text": REFERENCE,
           "vocabulary": "滨海新区"}
    manifest = tmp_path / "clip.jsonl"
    manifest.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    r = run_bench(manifest, ["faster-whisper:hints=hotwords"], progress=False)["faster-whisper:hints=hotwords"]
    assert r["terms"] == {"clip": ["滨海新区"]}
    assert r["term_hits"] == {"clip": {"滨海新区": [1, 1]}}, r["clips"]["clip"]["hypothesis"]
    assert r["rtf_clips"] > 0 and r["cer_zh_clips"] <= 2 / len(REFERENCE)
