"""Real human voices (issue 15): no phrase written twice, no invented tail, error well under the old one.

Two public clips from `shared/data/speech` (manifest.jsonl there names source and licence):
`whisper_jfk.flac` (en, 11 s, a stereo FLAC with the same voice on both channels) and
`funasr_asr_example.wav` (zh, 5.5 s). Before the fix callqa wrote JFK's every phrase twice
(WER 1.00: each channel transcribed as its own speaker) and invented "我认识了你" after the zh clip
(CER 0.26); plain faster-whisper with vad_filter=True gets both right (docs/asr.md, "Real voices").
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from callqa.models.asr import (
    DUAL_MONO_CORRELATION,
    RawSegment,
    _looks_invented,
    _Timeline,
    channel_correlation,
    transcribe_audio,
)
from callqa.models.audio import load_audio
from callqa.models.metrics import tokens
from callqa.models.vad import SpeechSpan
from callqa.pipelines.bench.asr_bench import clip_report

from callqa.records import Word
from tests.conftest import DEV, SHARED

SPEECH = SHARED / "speech"
CLIPS = ("whisper_jfk.flac", "funasr_asr_example.wav")
# Bounds, half of the error before the fix or less, with room over today's 0.00 on both clips:
# JFK 3 word errors of 22, the zh clip 2 characters of 19 (Whisper base's homophone slips).
MAX_ERROR = {"en": 0.15, "zh": 0.11}


def _rows() -> dict[str, dict]:
    rows = [json.loads(x) for x in (SPEECH / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x]
    return {r["file"]: r for r in rows}


@pytest.fixture(scope="module")
def clip_reports(runtime, asr_options):
    if not (SPEECH / "manifest.jsonl").is_file():
        pytest.fail(f"real voice clips not found at {SPEECH} (set CALLQA_SHARED_DATA)")
    rows = _rows()
    out = {}
    for name in CLIPS:
        row = rows[name]
        tr = transcribe_audio(load_audio(SPEECH / name), runtime, asr_options)
        assert tr.language == row["language"]
        out[name] = clip_report(row["reference_text"], " ".join(s.text for s in tr.segments), row["language"])
    return out


@pytest.mark.parametrize("name", CLIPS)
def test_no_phrase_repeated(clip_reports, name):
    """No 3-word (en) / 4-character (zh) n-gram more often in the hypothesis than in the reference."""
    report = clip_reports[name]
    assert report["repeats"] == [], report


@pytest.mark.parametrize("name", CLIPS)
def test_no_invented_tail(clip_reports, name):
    """At most one token after the last one aligned with the reference (a split last word), never a phrase."""
    report = clip_reports[name]
    assert len(tokens(report["tail"], report["language"])) <= 1, report


@pytest.mark.parametrize("name", CLIPS)
def test_error_rate_bounded(clip_reports, name):
    report = clip_reports[name]
    assert report["error_rate"] <= MAX_ERROR[report["language"]], report


def test_dual_mono_is_one_voice_but_call_channels_are_two():
    """JFK's two channels are one signal (folded to mono); a dev call's agent/customer channels are not."""
    assert channel_correlation(load_audio(SPEECH / "whisper_jfk.flac")) >= 0.99
    call = channel_correlation(load_audio(DEV / "audio" / "D016.flac"))
    assert call is not None and abs(call) < DUAL_MONO_CORRELATION / 3


def test_invented_segment_shape():
    """A segment seen on the zh clip's window leftover (words at one instant, near-zero probability, in the
    inserted silence) is dropped; the real sentence before it, with normal timings, is kept."""
    timeline = _Timeline([SpeechSpan(0.76, 5.55)], gap=0.5)  # speech 0-4.79 s in decoding time, then silence
    def words(rows: list[tuple[float, float, str, float]]) -> tuple[Word, ...]:
        return tuple(Word(*r) for r in rows)

    real = RawSegment(0.0, 4.3, "语音识别模型。", 0.78, words([
        (2.84, 3.16, "语", 0.54), (3.16, 3.36, "音", 0.97), (3.36, 3.62, "识", 0.6), (3.62, 3.82, "别", 0.97),
        (3.82, 4.02, "模", 0.98), (4.02, 4.3, "型。", 0.99)]))
    invented = RawSegment(4.3, 5.26, "我认识了你", 0.33, words([
        (4.3, 5.26, "我", 0.02), (5.26, 5.26, "认", 0.33), (5.26, 5.26, "识", 0.64), (5.26, 5.26, "了", 0.3),
        (5.26, 5.26, "你", 0.15)]))
    assert not _looks_invented(real, timeline)
    assert _looks_invented(invented, timeline)
    assert np.isclose(timeline.to_original(4.3), 5.06)
