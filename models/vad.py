"""Voice activity detection (Silero VAD v6, the ONNX copy that ships inside faster-whisper).

Used before any decoding: a channel with no speech is never shown to Whisper, which would
otherwise invent text on silence ("谢谢观看", "Thank you.").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from callqa.models.audio import SAMPLE_RATE
from faster_whisper.vad import VadOptions, get_speech_timestamps


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    speech_pad_ms: int = 200

    def options(self) -> VadOptions:
        return VadOptions(
            threshold=self.threshold,
            min_speech_duration_ms=self.min_speech_ms,
            min_silence_duration_ms=self.min_silence_ms,
            speech_pad_ms=self.speech_pad_ms,
        )


@dataclass(frozen=True)
class SpeechSpan:
    start: float  # seconds
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def speech_spans(audio: np.ndarray, config: VadConfig | None = None) -> list[SpeechSpan]:
    """Speech regions of one 16 kHz channel, in seconds."""
    if audio.size == 0 or not np.any(audio):
        return []  # digital silence: skip the model entirely
    stamps = get_speech_timestamps(audio, (config or VadConfig()).options(), sampling_rate=SAMPLE_RATE)
    return [SpeechSpan(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def speech_seconds(spans: list[SpeechSpan]) -> float:
    return sum(s.duration for s in spans)
