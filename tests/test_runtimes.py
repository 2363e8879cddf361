"""Both Whisper runtimes behind one contract, on the real bundled weights and short real clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from callqa.models.asr import AsrOptions, transcribe_audio
from callqa.models.audio import SAMPLE_RATE, AudioError, load_audio
from callqa.models.metrics import score_call
from callqa.models.runtimes import RUNTIMES, get_runtime
from callqa.models.text_norm import to_simplified

from tests.conftest import BAD, DEV, dev_calls

CLIP_S = 12.0


def _clip(call_id: str, seconds: float = CLIP_S):
    """The first `seconds` of a dev call, with the reference turns that end inside it."""
    row = next(r for r in dev_calls() if r["call_id"] == call_id)
    audio = load_audio(DEV / row["file"])
    audio = dataclasses.replace(audio, channels=np.ascontiguousarray(audio.channels[:, : int(seconds * SAMPLE_RATE)]))
    return audio, [t for t in row["turns"] if t["end"] <= seconds], row["language"]


@pytest.fixture(scope="session", params=RUNTIMES)
def any_runtime(request):
    opts = AsrOptions(runtime=request.param)
    return get_runtime(opts), opts


@pytest.fixture(scope="session")
def clip_transcripts(shared_data, any_runtime):
    runtime, opts = any_runtime
    out = {}
    for cid in ("D001", "D016"):  # one zh, one en
        audio, turns, lang = _clip(cid)
        out[cid] = (transcribe_audio(audio, runtime, opts), turns, lang)
    return out


def test_same_contract_for_both_runtimes(any_runtime, clip_transcripts):
    runtime, _ = any_runtime
    for tr, _turns, lang in clip_transcripts.values():
        assert tr.runtime == runtime.name and tr.language == lang
        assert tr.segments and [s.start for s in tr.segments] == sorted(s.start for s in tr.segments)
        for s in tr.segments:
            assert s.speaker in ("agent", "customer")
            assert 0 <= s.start < s.end <= CLIP_S + 0.5 and s.text.strip()
            assert 0 < s.confidence <= 1
            assert s.words and s.words[0].start >= s.start - 0.05 and s.words[-1].end <= s.end + 0.05


def test_accuracy_and_speakers_on_short_clips(clip_transcripts):
    for cid, (tr, turns, lang) in clip_transcripts.items():
        # only the turns that end inside the clip, and what was said during them
        inside = dataclasses.replace(tr, segments=tuple(s for s in tr.segments if s.start < turns[-1]["end"]))
        sc = score_call(turns, inside, lang)
        # a loose bound: the bench measures the real rate
        assert sc.error_rate < 0.3, (cid, [s.text for s in tr.segments])
        assert sc.speaker_accuracy >= 0.95, cid


def test_mandarin_is_simplified_with_both_runtimes(clip_transcripts):
    tr = clip_transcripts["D001"][0]
    text = "".join(s.text for s in tr.segments)
    assert text == to_simplified(text) and any("\u4e00" <= c <= "\u9fff" for c in text)


def test_silence_never_reaches_either_runtime(shared_data, any_runtime):
    runtime, opts = any_runtime
    with pytest.raises(AudioError) as err:
        transcribe_audio(load_audio(BAD / "silence_30s.wav"), runtime, opts)
    assert err.value.reason == "no_speech"


def test_one_model_per_configuration():
    assert get_runtime(AsrOptions()) is get_runtime(AsrOptions())
