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


# --- CAM++ (zh/en) speaker encoder, the default since issue 15 -------------------------------------------------

SPEECH = DEV.parent / "speech"


def test_fbank_matches_an_independent_kaldi_implementation(shared_data):
    """Our 80-bin Kaldi fbank against transformers' Kaldi-compatible spectrogram, on a real call."""
    import numpy as np
    from callqa.models.speaker_encoder import kaldi_fbank
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    wav = load_audio(DEV / "audio" / "D001.8k.flac").channels[0][16000 * 3 : 16000 * 6] * 32768
    mel = mel_filter_bank(num_frequency_bins=257, num_mel_filters=80, min_frequency=20, max_frequency=8000,
                          sampling_rate=16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
    ref = spectrogram(wav, window_function(400, "povey", periodic=False), frame_length=400, hop_length=160,
                      fft_length=512, power=2.0, center=False, preemphasis=0.97, mel_filters=mel, log_mel="log",
                      mel_floor=1.192092955078125e-07, remove_dc_offset=True).T
    ours = kaldi_fbank(wav)
    assert ours.shape == ref.shape == (298, 80)
    assert float(np.abs(ours - ref).max()) < 0.3  # log-mel values are about 13 here; measured max gap 0.07
    assert float(np.abs(ours - ref).mean()) < 0.02


def test_campplus_tells_real_mandarin_voices_apart(shared_data):
    """Two human Mandarin clips taking turns in one 8 kHz channel (Resemblyzer: 0.79 on this pair, measured)."""
    from callqa.models.diarize_bench import bench_pairs

    manifest = SPEECH / "manifest.jsonl"
    assert manifest.is_file()
    out = bench_pairs(manifest, ["campplus"], only=("funasr_asr_example.wav", "paddlespeech_zh.wav"))
    (pair,) = out["pairs"].values()
    assert pair["turns"] >= 3
    assert pair["campplus"] >= 0.95


def test_campplus_embeddings_same_voice_closer_than_other_voice(shared_data):
    import numpy as np
    from callqa.models.speaker_encoder import get_speaker_encoder

    a = load_audio(SPEECH / "osr_us_000_0034_8k.wav").channels.mean(axis=0)
    b = load_audio(SPEECH / "whisper_jfk.flac").channels.mean(axis=0)
    pieces = [a[16000 * 1 : 16000 * 4], a[16000 * 10 : 16000 * 13], b[16000 * 1 : 16000 * 4]]
    emb = get_speaker_encoder("campplus").embed(pieces)
    assert emb.shape == (3, 192)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    same, other = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert same > other + 0.2, (same, other)


def test_resemblyzer_still_selectable(mono_d007):
    _, audio = mono_d007
    turns = diarize(audio.channels[0][: 16000 * 30], encoder="resemblyzer")
    assert {t.label for t in turns} == {0, 1}
    with pytest.raises(ValueError, match="unknown speaker encoder"):
        diarize(audio.channels[0][: 16000 * 5], encoder="nope")


# --- which voice is the agent: the text model -----------------------------------------------------------------


def test_agent_found_in_the_real_text_chats(shared_data):
    """Evaluation only (the model never saw them): 25/40 with the hand-written cues, 40/40 measured with the model."""
    from callqa.models.diarize_bench import bench_roles

    (res,) = bench_roles([shared_data / "real" / "dialogues.jsonl"]).values()
    assert res["dialogues"] == 40
    assert res["right"] >= 36


def test_role_model_reads_word_segmented_chinese_and_folds_digits():
    from callqa.models.roles import role_model, tokens

    assert tokens("我 想 问 一下 订单 521521942026") == tokens("我想问一下订单 77") == \
        ["我", "想", "问", "一", "下", "订", "单", "0"]
    m = role_model()
    assert m.turn_logit("亲，在的呢，很高兴为您服务") > 0 > m.turn_logit("我的订单怎么还没发货")
    assert m.turn_logit("Thanks for reaching out, how can I help you today?") > 0 > \
        m.turn_logit("my order never arrived and i want a refund")


def test_role_model_was_trained_on_the_corpus_only():
    import json

    from callqa.models.roles import MODEL_PATH

    meta = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    assert meta["trained_on"] and all(name.startswith("W") for name in meta["trained_on"])
    assert len(meta["weights"]) > 1000
