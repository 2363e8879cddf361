"""Whisper runtimes behind one interface: faster-whisper (CTranslate2, default) and openai-whisper.

Both load the same bundled Whisper base weights offline; each also takes a standard Whisper model
name or a local path. `get_runtime` keeps one loaded model per configuration per process.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from functools import lru_cache

import numpy as np
from callqa.models.asr import AsrOptions, RawSegment
from callqa.models.weights import BUNDLED_WHISPER, resolve_whisper_model

from callqa.records import Word

log = logging.getLogger(__name__)

RUNTIMES = ("faster-whisper", "openai-whisper")

# Whisper's own guards against repetition loops and invented text, the same in both runtimes (their
# defaults, spelled out so that a change in either library cannot switch them off): a window whose
# text compresses too well (gzip ratio above 2.4: a loop) or is too improbable (mean log-prob below
# -1) is decoded again at the next temperature; a window with no-speech probability above 0.6 and
# an improbable text is skipped.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
GUARDS = {"compression_ratio_threshold": 2.4, "no_speech_threshold": 0.6}
LOGPROB_THRESHOLD = -1.0


def _best_candidate(probs: list[tuple[str, float]], candidates: tuple[str, ...]) -> tuple[str, float]:
    allowed = [(lang, p) for lang, p in probs if not candidates or lang in candidates]
    lang, p = max(allowed or probs, key=lambda x: x[1])
    return lang, float(p)


class FasterWhisperRuntime:
    name = "faster-whisper"

    def __init__(self, opts: AsrOptions):
        from faster_whisper import WhisperModel

        self.model_name = str(opts.model or BUNDLED_WHISPER)
        threads = opts.cpu_threads or min(os.cpu_count() or 1, 8)
        self._beam = opts.beam_size
        self._condition = opts.condition_on_previous_text
        self._model = WhisperModel(
            resolve_whisper_model(opts.model), device=opts.device, compute_type=opts.compute_type,
            cpu_threads=threads,
        )
        self._lock = threading.Lock()

    def detect_language(self, audio: np.ndarray, candidates: tuple[str, ...]) -> tuple[str, float]:
        with self._lock:
            _, _, probs = self._model.detect_language(audio=audio)
        return _best_candidate(probs, candidates)

    def transcribe(self, audio: np.ndarray, language: str, prompt: str | None,
                   hotwords: str | None = None) -> list[RawSegment]:
        """`prompt` reaches the first 30 s window only (conditioning off); `hotwords` every window (faster-whisper
        puts them after <|startofprev|>, before that window's prompt, truncated at half the text context)."""
        with self._lock:
            segments, _info = self._model.transcribe(
                audio, language=language, beam_size=self._beam, vad_filter=False, word_timestamps=True,
                initial_prompt=prompt, hotwords=hotwords or None, condition_on_previous_text=self._condition,
                temperature=list(TEMPERATURES),
                log_prob_threshold=LOGPROB_THRESHOLD, prompt_reset_on_temperature=0.5, **GUARDS,
            )
            out = []
            for s in segments:
                words = tuple(Word(w.start, w.end, w.word, w.probability) for w in (s.words or []))
                out.append(RawSegment(s.start, s.end, s.text, math.exp(s.avg_logprob), words,
                                      s.avg_logprob, s.no_speech_prob, s.compression_ratio))
        return out


class OpenAIWhisperRuntime:
    name = "openai-whisper"

    def __init__(self, opts: AsrOptions):
        import torch
        from callqa.models.ct2_convert import load_openai_whisper

        if opts.cpu_threads:
            torch.set_num_threads(opts.cpu_threads)
        self.model_name = str(opts.model or BUNDLED_WHISPER)
        self._beam = opts.beam_size
        self._condition = opts.condition_on_previous_text
        self._device = opts.device
        self._model = load_openai_whisper(opts.model, device=opts.device)
        self._lock = threading.Lock()

    def detect_language(self, audio: np.ndarray, candidates: tuple[str, ...]) -> tuple[str, float]:
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self._model.dims.n_mels)
        with self._lock:
            _, probs = self._model.detect_language(mel.to(self._model.device))
        return _best_candidate(sorted(probs.items()), candidates)

    def transcribe(self, audio: np.ndarray, language: str, prompt: str | None,
                   hotwords: str | None = None) -> list[RawSegment]:
        """openai-whisper has no hotwords: given, they join the prompt and it is carried into every window
        (`carry_initial_prompt`), which is what faster-whisper's hotwords amount to."""
        if hotwords:
            prompt = f"{prompt} {hotwords}" if prompt else hotwords
        with self._lock:
            result = self._model.transcribe(
                audio, language=language, beam_size=self._beam, best_of=5, fp16=self._device != "cpu",
                word_timestamps=True, initial_prompt=prompt, carry_initial_prompt=bool(hotwords),
                condition_on_previous_text=self._condition,
                temperature=TEMPERATURES, logprob_threshold=LOGPROB_THRESHOLD, **GUARDS,
            )
        out = []
        for s in result["segments"]:
            words = tuple(Word(w["start"], w["end"], w["word"], w["probability"]) for w in s.get("words", []))
            out.append(RawSegment(s["start"], s["end"], s["text"], math.exp(s["avg_logprob"]), words,
                                  s["avg_logprob"], s["no_speech_prob"], s["compression_ratio"]))
        return out


@lru_cache(maxsize=4)
def _cached(runtime: str, model: str | None, compute_type: str, device: str, threads: int, beam: int,
            condition: bool = False):
    opts = AsrOptions(runtime=runtime, model=model, compute_type=compute_type, device=device,
                      cpu_threads=threads, beam_size=beam, condition_on_previous_text=condition)
    log.info("loading Whisper model %s with %s (%s, %s)", model or BUNDLED_WHISPER, runtime, device, compute_type)
    if runtime == "faster-whisper":
        return FasterWhisperRuntime(opts)
    if runtime == "openai-whisper":
        return OpenAIWhisperRuntime(opts)
    raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def get_runtime(opts: AsrOptions) -> FasterWhisperRuntime | OpenAIWhisperRuntime:
    """One loaded model per (runtime, model, compute type, device, threads, beam, conditioning) per process."""
    return _cached(opts.runtime, opts.model, opts.compute_type, opts.device, opts.cpu_threads, opts.beam_size,
                   opts.condition_on_previous_text)
