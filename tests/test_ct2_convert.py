"""CTranslate2 → openai-whisper conversion, on the real bundled Whisper base weights."""

from __future__ import annotations

import base64
import difflib
import gzip
import json
import os
import shutil
import statistics
import struct
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from callqa.models.ct2_convert import (
    CT2FormatError,
    ct2_to_openai_checkpoint,
    load_openai_whisper,
    openai_whisper_checkpoint,
    read_ct2_model,
)
from callqa.models.weights import whisper_ct2_dir

# The shared data folder sits next to the checkout.
SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
JFK = SPEECH / "whisper_jfk.flac"
AISHELL = SPEECH / "wenet_aishell-BAC009S0724W0121.wav"
BASE_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 512, "n_audio_head": 8, "n_audio_layer": 6,
    "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 512, "n_text_head": 8, "n_text_layer": 6,
}  # fmt: skip


def norm(text: str) -> str:
    """Lower case, no punctuation or symbols, single spaces."""
    kept = "".join(c for c in text.lower() if not unicodedata.category(c).startswith(("P", "S")))
    return " ".join(kept.split())


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


def reference_text(file: str) -> str:
    for line in (SPEECH / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["file"] == file:
            return row["reference_text"]
    raise KeyError(file)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def ct2_dir() -> Path:
    return whisper_ct2_dir()


@pytest.fixture(scope="session")
def ct2_model(ct2_dir: Path):
    return read_ct2_model(ct2_dir / "model.bin")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("callqa-cache")


@pytest.fixture(scope="session")
def checkpoint_path(ct2_dir: Path, cache_dir: Path) -> Path:
    return openai_whisper_checkpoint(ct2_dir, cache=cache_dir)


@pytest.fixture(scope="session")
def checkpoint(checkpoint_path: Path) -> dict[str, Any]:
    import torch

    return torch.load(checkpoint_path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def openai_model(checkpoint_path: Path):
    return load_openai_whisper(str(checkpoint_path), device="cpu")


@pytest.fixture(scope="session")
def faster_model(ct2_dir: Path):
    from faster_whisper import WhisperModel

    return WhisperModel(str(ct2_dir), device="cpu", compute_type="float32")


def _transcribe_both(openai_model, faster_model, audio_path: Path, language: str) -> dict[str, Any]:
    from callqa.models.audio import load_audio

    # the same 16 kHz samples for both runtimes, decoded with PyAV (no ffmpeg binary needed,
    # unlike whisper.load_audio)
    audio = load_audio(audio_path).channels.mean(axis=0).astype("float32")
    o = openai_model.transcribe(audio, language=language, fp16=False, beam_size=5, word_timestamps=True)
    segments, _ = faster_model.transcribe(audio, language=language, beam_size=5, word_timestamps=True)
    segments = list(segments)
    return {
        "openai": o["text"],
        "faster": "".join(s.text for s in segments),
        "openai_words": [(w["word"], w["start"]) for s in o["segments"] for w in s["words"]],
        "faster_words": [(w.word, w.start) for s in segments for w in s.words],
    }


@pytest.fixture(scope="session")
def jfk(openai_model, faster_model) -> dict[str, Any]:
    return _transcribe_both(openai_model, faster_model, JFK, "en")


@pytest.fixture(scope="session")
def aishell(openai_model, faster_model) -> dict[str, Any]:
    return _transcribe_both(openai_model, faster_model, AISHELL, "zh")


# ---------------------------------------------------------------------------- parsing


def test_parsed_variables_are_sane(ct2_model) -> None:
    spec, variables, aliases = ct2_model
    assert spec == "WhisperSpec"
    assert len(variables) == 214
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert variables["encoder/conv1/weight"].shape == (512, 80, 3)
    assert variables["decoder/embeddings/weight"].shape == (51865, 512)
    assert variables["encoder/layer_5/self_attention/linear_0/weight"].shape == (1536, 512)
    assert variables["decoder/layer_5/attention/linear_1/weight"].shape == (1024, 512)
    assert int(variables["encoder/num_heads"]) == 8
    tensors = [a for a in variables.values() if a.ndim > 0]
    assert all(a.dtype == np.float16 for a in tensors)
    assert all(np.isfinite(a).all() for a in tensors)


def test_rejects_other_binary_version(ct2_dir: Path, tmp_path: Path) -> None:
    head = bytearray((ct2_dir / "model.bin").read_bytes()[:4096])
    head[:4] = struct.pack("<I", 5)
    (tmp_path / "model.bin").write_bytes(bytes(head))
    with pytest.raises(CT2FormatError, match="version 5 is not supported"):
        read_ct2_model(tmp_path)


def test_rejects_truncated_file(ct2_dir: Path, tmp_path: Path) -> None:
    with open(ct2_dir / "model.bin", "rb") as f:
        (tmp_path / "model.bin").write_bytes(f.read(3 << 20))
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(tmp_path / "model.bin")


def test_rejects_trailing_bytes(ct2_dir: Path, tmp_path: Path) -> None:
    shutil.copyfile(ct2_dir / "model.bin", tmp_path / "model.bin")
    with open(tmp_path / "model.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(CT2FormatError, match="after the alias table"):
        read_ct2_model(tmp_path / "model.bin")


# ---------------------------------------------------------------------------- conversion


def test_checkpoint_dims_and_names(checkpoint, openai_model) -> None:
    assert checkpoint["dims"] == BASE_DIMS
    sd = checkpoint["model_state_dict"]
    assert set(sd) == set(openai_model.state_dict())
    assert all(sd[k].shape == v.shape for k, v in openai_model.state_dict().items())
    assert next(openai_model.parameters()).dtype.is_floating_point


def test_conversion_is_lossless(ct2_model, checkpoint) -> None:
    v, sd = ct2_model.variables, checkpoint["model_state_dict"]
    fused = v["decoder/layer_2/self_attention/linear_0/weight"]
    assert np.array_equal(sd["decoder.blocks.2.attn.query.weight"].numpy(), fused[:512])
    assert np.array_equal(sd["decoder.blocks.2.attn.key.weight"].numpy(), fused[512:1024])
    assert np.array_equal(sd["decoder.blocks.2.attn.value.weight"].numpy(), fused[1024:])
    kv = v["decoder/layer_2/attention/linear_1/weight"]
    assert np.array_equal(sd["decoder.blocks.2.cross_attn.value.weight"].numpy(), kv[512:])
    assert np.array_equal(sd["decoder.token_embedding.weight"].numpy(), v["decoder/embeddings/weight"])
    # Every stored number lands somewhere, except the (all-zero) key biases openai-whisper lacks.
    key_biases = [
        b[512:1024] if n.endswith("self_attention/linear_0/bias") else b[:512]
        for n, b in v.items()
        if n.endswith(("self_attention/linear_0/bias", "/attention/linear_1/bias"))
    ]
    assert not any(np.any(b) for b in key_biases)
    ct2_total = sum(a.size for a in v.values() if a.ndim > 0) - sum(b.size for b in key_biases)
    assert ct2_total == sum(t.numel() for t in sd.values())


def test_alignment_heads_match_openai_base(checkpoint, openai_model) -> None:
    import whisper

    dump = whisper._ALIGNMENT_HEADS["base"]
    expected = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool).reshape(6, 8)
    assert np.array_equal(openai_model.alignment_heads.to_dense().numpy(), expected)
    assert checkpoint["alignment_heads"] is not None


def test_checkpoint_is_cached(ct2_dir: Path, cache_dir: Path, checkpoint_path: Path) -> None:
    mtime = checkpoint_path.stat().st_mtime_ns
    assert openai_whisper_checkpoint(ct2_dir, cache=cache_dir) == checkpoint_path
    assert checkpoint_path.stat().st_mtime_ns == mtime
    assert [p.name for p in checkpoint_path.parent.iterdir()] == [checkpoint_path.name]  # no temp files


def test_cache_key_follows_source_mtime(ct2_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "ct2"
    shutil.copytree(ct2_dir, src)
    first = openai_whisper_checkpoint(src, cache=tmp_path / "cache")
    st = (src / "model.bin").stat()
    os.utime(src / "model.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = openai_whisper_checkpoint(src, cache=tmp_path / "cache")
    assert first != second and first.is_file() and second.is_file()


def test_refuses_non_whisper_spec(ct2_dir: Path, tmp_path: Path) -> None:
    data = bytearray((ct2_dir / "model.bin").read_bytes())
    name = b"WhisperSpec\0"
    assert data[6 : 6 + len(name)] == name
    data[6 : 6 + len(name)] = b"OtherXXSpec\0"
    (tmp_path / "model.bin").write_bytes(bytes(data))
    with pytest.raises(CT2FormatError, match="not a Whisper model"):
        ct2_to_openai_checkpoint(tmp_path)


def test_bundled_loader_uses_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALLQA_CACHE", str(tmp_path))
    model = load_openai_whisper(None)
    assert model.dims.n_vocab == 51865
    assert list((tmp_path / "openai-whisper").glob("*.pt"))
    assert int(model.alignment_heads.to_dense().sum()) == 8


# ---------------------------------------------------------------------------- transcription


def test_jfk_transcript(jfk) -> None:
    assert "ask not what your country can do for you" in norm(jfk["openai"])


def test_jfk_matches_faster_whisper(jfk) -> None:
    assert similarity(jfk["openai"], jfk["faster"]) >= 0.9, (jfk["openai"], jfk["faster"])


def test_jfk_word_timestamps_match_faster_whisper(jfk) -> None:
    o, f = jfk["openai_words"], jfk["faster_words"]
    assert [norm(w) for w, _ in o] == [norm(w) for w, _ in f]
    starts = [s for _, s in o]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] < 11.0
    assert statistics.median(abs(a - b) for (_, a), (_, b) in zip(o, f, strict=True)) <= 0.1


def test_mandarin_matches_faster_whisper(aishell) -> None:
    assert similarity(aishell["openai"], aishell["faster"]) >= 0.8, (aishell["openai"], aishell["faster"])


def test_mandarin_is_close_to_reference(aishell) -> None:
    opencc = pytest.importorskip("opencc")
    simplified = opencc.OpenCC("t2s").convert(aishell["openai"])
    assert similarity(simplified, reference_text(AISHELL.name)) >= 0.6, simplified
