"""Transcription of a call into speaker-attributed, time-ordered segments.

Pipeline for one recording: VAD per channel → only speech is decoded → language detected once
per call (on the agent side) → each channel transcribed as its speaker (stereo: agent channel
configurable, default left) → segments split at pauses using word timings → merged in time order.
Mandarin output is converted to simplified characters.

Runtimes plug in behind `WhisperRuntime` (see `callqa.models.runtimes`).
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from callqa.models.audio import SAMPLE_RATE, AudioError, DecodedAudio
from callqa.models.text_norm import to_simplified
from callqa.models.vad import SpeechSpan, VadConfig, speech_seconds, speech_spans

from callqa.records import Segment, Speaker, Transcript, Word

log = logging.getLogger(__name__)

ZH_PROMPT = "以下是普通话的销售电话录音。"
# Whisper's stock inventions on near-silence; dropped when a whole segment is just one of these.
_HALLUCINATIONS = {
    "谢谢观看", "谢谢大家", "字幕由amara.org社区提供", "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "thank you.", "thanks for watching!", "thank you for watching.", "you",
}
_GAP_JOIN_S = 0.5  # silence inserted between concatenated speech spans


@dataclass(frozen=True)
class RawSegment:
    start: float
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = ()


class WhisperRuntime(Protocol):
    name: str
    model_name: str

    def detect_language(self, audio: np.ndarray, candidates: tuple[str, ...]) -> tuple[str, float]: ...

    def transcribe(self, audio: np.ndarray, language: str, prompt: str | None) -> list[RawSegment]: ...


@dataclass(frozen=True)
class AsrOptions:
    runtime: str = "faster-whisper"
    model: str | None = None  # None/"base" = bundled weights; or a Whisper model name or local path
    compute_type: str = "int8"
    device: str = "cpu"
    cpu_threads: int = 0  # 0 = let the runtime decide
    beam_size: int = 5
    language: str | None = None  # None = detect per call among `languages`
    languages: tuple[str, ...] = ("zh", "en")
    vocabulary: tuple[str, ...] = ()  # product / store names shown to the decoder
    split_gap_s: float = 0.6  # a pause this long inside one channel starts a new segment
    min_speech_s: float = 0.3  # less speech than this in the whole call = no_speech
    vad: VadConfig = field(default_factory=VadConfig)


class _Timeline:
    """Maps times in the concatenated speech-only audio back to the original recording."""

    def __init__(self, spans: list[SpeechSpan], gap: float):
        self.cat_starts: list[float] = []
        self.spans = spans
        self.gap = gap
        t = 0.0
        for s in spans:
            self.cat_starts.append(t)
            t += s.duration + gap

    def span_index(self, t: float) -> int:
        """The speech span a concatenated time belongs to (the nearer one when it falls in a gap)."""
        i = max(0, bisect.bisect_right(self.cat_starts, t) - 1)
        past_end = t - (self.cat_starts[i] + self.spans[i].duration)
        if past_end > self.gap / 2 and i + 1 < len(self.spans):
            return i + 1
        return i

    def to_original(self, t: float, index: int | None = None) -> float:
        i = self.span_index(t) if index is None else index
        span = self.spans[i]
        return span.start + min(max(t - self.cat_starts[i], 0.0), span.duration)


def _concat_speech(audio: np.ndarray, spans: list[SpeechSpan], gap: float) -> np.ndarray:
    pad = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for s in spans:
        parts.append(audio[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)])
        parts.append(pad)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _clean_text(text: str, language: str | None) -> str:
    text = text.strip()
    if language == "zh":
        text = to_simplified(text)
        text = re.sub(r"(?<=[\u4e00-\u9fff，。？！、])\s+(?=[\u4e00-\u9fff，。？！、])", "", text)
    return text


def _is_hallucination(text: str) -> bool:
    return re.sub(r"[\s。，,.!！?？]+$", "", text.strip().lower()) in {
        re.sub(r"[\s。，,.!！?？]+$", "", h) for h in _HALLUCINATIONS
    }


def _split_at_pauses(seg: RawSegment, timeline: _Timeline, gap_s: float) -> list[RawSegment]:
    """Map a segment to original time, splitting it where its words fall on both sides of a pause.

    Each word belongs to the speech span holding its midpoint; a new segment starts when the span
    changes and the pause between the two spans in the recording is at least `gap_s`.
    """
    if not seg.words:
        i = timeline.span_index((seg.start + seg.end) / 2)
        return [RawSegment(timeline.to_original(seg.start, i), timeline.to_original(seg.end, i), seg.text,
                           seg.confidence)]
    groups: list[list[Word]] = []
    last_span = -1
    for w in seg.words:
        i = timeline.span_index((w.start + w.end) / 2)
        mapped = Word(timeline.to_original(w.start, i), timeline.to_original(w.end, i), w.text, w.probability)
        new_turn = last_span >= 0 and i != last_span and (
            timeline.spans[i].start - timeline.spans[last_span].end >= gap_s
        )
        if not groups or new_turn:
            groups.append([mapped])
        else:
            groups[-1].append(mapped)
        last_span = i
    out = []
    for g in groups:
        text = "".join(w.text for w in g)
        conf = float(np.mean([w.probability for w in g]))
        out.append(RawSegment(g[0].start, g[-1].end, text, conf, tuple(g)))
    return out


def channel_roles(n_channels: int, agent_channel: int) -> list[Speaker]:
    if n_channels == 1:
        return ["unknown"]
    if agent_channel not in (0, 1):
        raise ValueError(f"agent_channel must be 0 (left) or 1 (right), got {agent_channel}")
    return ["agent", "customer"] if agent_channel == 0 else ["customer", "agent"]


def transcribe_audio(
    audio: DecodedAudio, runtime: WhisperRuntime, options: AsrOptions | None = None, agent_channel: int = 0
) -> Transcript:
    """Transcribe a decoded recording. Raises `AudioError('no_speech')` when VAD finds no speech."""
    opts = options or AsrOptions()
    t0 = time.perf_counter()
    roles = channel_roles(audio.n_channels, agent_channel)
    spans = [speech_spans(audio.channels[i], opts.vad) for i in range(audio.n_channels)]
    t_vad = time.perf_counter() - t0
    if sum(speech_seconds(s) for s in spans) < opts.min_speech_s:
        raise AudioError("no_speech", "no speech found in the recording (silence or noise only)")

    speech = [_concat_speech(audio.channels[i], spans[i], _GAP_JOIN_S) for i in range(audio.n_channels)]
    t1 = time.perf_counter()
    language, lang_prob = _pick_language(runtime, speech, roles, opts)
    prompt = _prompt(language, opts.vocabulary)

    segments: list[Segment] = []
    for i, role in enumerate(roles):
        if not spans[i]:
            continue
        timeline = _Timeline(spans[i], _GAP_JOIN_S)
        for raw in runtime.transcribe(speech[i], language, prompt):
            for part in _split_at_pauses(raw, timeline, opts.split_gap_s):
                text = _clean_text(part.text, language)
                if not text or _is_hallucination(text):
                    continue
                segments.append(Segment(role, round(part.start, 3), round(part.end, 3), text,
                                        round(part.confidence, 4), part.words))
    segments.sort(key=lambda s: (s.start, s.end))
    t_asr = time.perf_counter() - t1
    log.debug("language %s (p=%.2f), %d segments", language, lang_prob, len(segments))
    return Transcript(
        segments=tuple(segments),
        language=language,
        duration=audio.duration,
        runtime=runtime.name,
        model=runtime.model_name,
        timings={"vad": t_vad, "asr": t_asr, "speech_s": sum(speech_seconds(s) for s in spans)},
    )


def _pick_language(
    runtime: WhisperRuntime, speech: list[np.ndarray], roles: list[Speaker], opts: AsrOptions
) -> tuple[str, float]:
    if opts.language:
        return opts.language, 1.0
    # the agent side is the longest and most reliable; fall back to whichever channel has most speech
    order = sorted(range(len(speech)), key=lambda i: (roles[i] != "agent", -speech[i].size))
    sample = speech[order[0]][: 30 * SAMPLE_RATE]
    return runtime.detect_language(sample, opts.languages)


def _prompt(language: str, vocabulary: tuple[str, ...]) -> str | None:
    vocab = "、".join(vocabulary) if language == "zh" else ", ".join(vocabulary)
    if language == "zh":
        return ZH_PROMPT + (f"涉及：{vocab}。" if vocab else "")
    return f"Sales call about: {vocab}." if vocab else None
