"""Mono recordings: two-speaker diarization and agent identification, on the dev set's 8 kHz copies."""

from __future__ import annotations

import pytest
from callqa.models.asr import transcribe_audio
from callqa.models.audio import load_audio
from callqa.models.diarize import agent_label, diarize, label_at
from callqa.models.metrics import score_call

from tests.conftest import DEV, dev_calls


def _row(call_id: str) -> dict:
    return next(r for r in dev_calls() if r["call_id"] == call_id)


@pytest.fixture(scope="session")
def mono_d007():
    """An inbound Mandarin call whose agent answers with the store name only (no self-introduction)."""
    row = _row("D007")
    return row, load_audio(DEV / row["audio"]["mono_8k_telephone"])


def test_two_voices_are_separated(shared_data, mono_d007):
    row, audio = mono_d007
    turns = diarize(audio.channels[0])
    assert {t.label for t in turns} == {0, 1}
    # each reference turn's middle falls in a piece of a voice; the mapping voice -> role is consistent
    votes = [(label_at(turns, (t["start"] + t["end"]) / 2), t["speaker"]) for t in row["turns"]]
    agent_voice = max((0, 1), key=lambda v: sum(1 for lab, spk in votes if lab == v and spk == "agent"))
    right = sum((lab == agent_voice) == (spk == "agent") for lab, spk in votes)
    assert right / len(votes) >= 0.9


def test_agent_is_found_from_what_each_voice_says(shared_data):
    """On every dev call's reference text, whichever voice label the agent gets."""
    for row in dev_calls():
        for agent_voice in (0, 1):
            texts = [(agent_voice if t["speaker"] == "agent" else 1 - agent_voice, t["text"]) for t in row["turns"]]
            assert agent_label(texts) == agent_voice, row["call_id"]


def test_agent_label_cues():
    # the customer speaks first but asks; the second voice introduces itself
    assert agent_label([(0, "Hi, I'm calling about my order."), (1, "Thanks for calling, this is Sam.")]) == 1
    assert agent_label([(1, "喂？"), (0, "您好，我是美家电器的王琳，现在方便吗？")]) == 0


def test_mono_call_gets_agent_and_customer_segments(shared_data, runtime, asr_options, mono_d007):
    row, audio = mono_d007
    tr = transcribe_audio(audio, runtime, asr_options)
    assert {s.speaker for s in tr.segments} == {"agent", "customer"}
    assert score_call(row["turns"], tr, row["language"]).speaker_accuracy >= 0.9


def test_mono_without_diarization_is_unknown(shared_data, runtime, asr_options, mono_d007):
    import dataclasses

    _, audio = mono_d007
    short = dataclasses.replace(audio, channels=audio.channels[:, : 16000 * 8])
    tr = transcribe_audio(short, runtime, dataclasses.replace(asr_options, diarize_mono=False))
    assert tr.segments and {s.speaker for s in tr.segments} == {"unknown"}
