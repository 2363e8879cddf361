"""`callqa asr-bench` and the metrics behind it (normalisation, alignment, speaker attribution)."""

from __future__ import annotations

import json

import pytest
from callqa.models.metrics import align, normalize, score_call, tokens, zh_numerals_to_digits
from callqa.pipelines.bench.asr_bench import format_bench, run_bench

from callqa.records import Segment, Transcript
from tests.conftest import DEV, dev_calls


@pytest.mark.parametrize(
    ("ref", "hyp"),
    [
        ("那建议您选十三套的嵌入式。", "那建议您选13套的嵌入式"),
        ("能去掉百分之九十九点九的大肠杆菌", "能去掉99.9%的大肠杆菌"),
        ("我们这次购买送一百颗洗碗块，三十天内可以退。", "我們這次購買送100顆洗碗塊,30天內可以退"),
        ("全角ＡＢＣ，１２３", "全角abc 123"),
        ("一万二千块", "12000块"),
    ],
)
def test_mandarin_normalisation_makes_equivalent_text_equal(ref, hyp):
    assert normalize(ref, "zh") == normalize(hyp, "zh")


def test_decimal_point_and_digit_strings_survive():
    assert normalize("九十九点九", "zh") != normalize("九百九十九", "zh")
    assert zh_numerals_to_digits("一三八") == "138"


def test_english_normalisation():
    ref = "A three-pack of cartridges is twenty-four dollars. Use the code HOME ten for ten percent off."
    hyp = "A 3 pack of cartridges is $24. Use the code home 10 for 10% off."
    assert tokens(ref, "en") == tokens(hyp, "en")


def test_alignment_is_minimal_edit_distance():
    pairs = align(list("kitten"), list("sitting"))
    edits = sum(i is None or j is None or "kitten"[i] != "sitting"[j] for i, j in pairs)
    assert edits == 3


def test_speaker_attribution_counts_aligned_reference_tokens():
    turns = [{"speaker": "agent", "text": "good morning this is sam"}, {"speaker": "customer", "text": "hi sam"}]
    hyp = Transcript((Segment("agent", 0, 1, "Good morning, this is"), Segment("customer", 1, 2, "Sam. Hi Sam.")))
    sc = score_call(turns, hyp, "en")
    assert sc.ref_tokens == 7 and sc.errors == 0 and sc.aligned == 7
    assert sc.speaker_right == 6  # "sam" of the agent's turn went to the customer


@pytest.fixture(scope="session")
def one_call_manifest(shared_data, tmp_path_factory):
    """D007 (31 s, Mandarin) with its 8 kHz mono copy; paths made absolute."""
    row = dict(next(r for r in dev_calls() if r["call_id"] == "D007"))
    row["file"] = str(DEV / row["file"])
    row["audio"] = {k: str(DEV / v) for k, v in row["audio"].items()}
    path = tmp_path_factory.mktemp("bench") / "one.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def test_bench_reports_every_metric(one_call_manifest):
    result = run_bench(one_call_manifest, ["faster-whisper"], progress=False)
    r = result["faster-whisper"]
    for key in ("rtf", "cer_zh", "wer_en", "speaker_acc_stereo", "speaker_acc_mono", "peak_rss_mb"):
        assert key in r
    assert r["calls"] == 1 and r["mono_calls"] == 1 and r["wer_en"] is None
    assert 0 < r["rtf"] and 0 <= r["cer_zh"] < 0.3
    assert r["speaker_acc_stereo"] >= 0.98 and r["speaker_acc_mono"] >= 0.9
    assert r["peak_rss_mb"] > 100
    table = format_bench(result)
    assert "whole-call RTF" in table and "speaker attribution, mono 8 kHz" in table


def test_a_missing_mono_copy_skips_its_mono_figures_with_a_warning(one_call_manifest, tmp_path, caplog):
    row = json.loads(one_call_manifest.read_text(encoding="utf-8"))
    row["audio"]["mono_8k_telephone"] = str(tmp_path / "gone.8k.flac")
    manifest = tmp_path / "no_mono.jsonl"
    manifest.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        r = run_bench(manifest, ["faster-whisper"], progress=False)["faster-whisper"]
    assert r["calls"] == 1 and r["mono_calls"] == 0 and r["speaker_acc_mono"] is None
    assert r["speaker_acc_stereo"] >= 0.98
    assert any("gone.8k.flac" in m and "mono figures are skipped" in m for m in caplog.messages)


def test_a_worker_that_dies_ends_the_bench_with_an_error_naming_the_file(one_call_manifest):
    """The worker is killed (as the OOM killer would) while it transcribes: the command exits 1 within seconds
    and says which file it was on, instead of waiting forever."""
    import subprocess
    import sys
    import threading
    import time

    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "callqa.pipelines.cli", "asr-bench", "--manifest",
                             str(one_call_manifest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while "asr-bench:" not in "".join(err) and time.monotonic() < deadline:  # the bar: models loaded
            time.sleep(0.2)
        assert "asr-bench:" in "".join(err), "the bench never loaded its model"
        time.sleep(1.0)  # inside the first transcription (31 s of audio)
        (worker,) = [k for k in psutil.Process(proc.pid).children(recursive=True)
                     if "spawn_main" in " ".join(k.cmdline())]  # not multiprocessing's resource tracker
        worker.kill()
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(err)
    assert proc.returncode == 1, text
    assert "worker died" in text and "D007" in text, text
