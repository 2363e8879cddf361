"""Transcription of a call into speaker-attributed, time-ordered segments.

Pipeline for one recording: VAD per channel → only speech is decoded (the speech spans of a
channel are joined with short gaps, in blocks of at most `block_s` seconds so an hour-long call
needs no more memory than a short one) → language detected once per call (on the agent side) →
each channel transcribed as its speaker (stereo: agent channel configurable, default left; mono:
two-speaker diarization, see `callqa.models.diarize`) → the channel's words, mapped back to call
time, are cut into segments at pauses (and, on mono, at speaker changes) → merged in time order.
Mandarin output is converted to simplified characters.

Guards for real recordings (issue 15, docs/asr.md "Real voices"): a "stereo" file whose two channels
carry the same signal (dual mono: one microphone written to both channels) is transcribed once, as
mono, not once per channel as agent and customer; and a decoded segment whose words have no audio
under them (improbable, piled up at one instant, in inserted silence) is dropped as invented: Whisper
writes such segments on the leftover of a decoding window after the last word.

Runtimes plug in behind `WhisperRuntime` (see `callqa.models.runtimes`).
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from callqa.models.audio import SAMPLE_RATE, AudioError, DecodedAudio
from callqa.models.diarize import SpeakerTurn, agent_label, diarize, label_at
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
# Two channels this correlated (Pearson, whole recording) are one signal written twice: dual mono.
# Separate agent/customer channels correlate near 0, even with some cross-talk.
DUAL_MONO_CORRELATION = 0.9
# A decoded segment is taken as invented when most of its words are improbable (or lie in inserted
# silence) and most have no duration: word timing found no audio for them (see `_looks_invented`).
_IMPROBABLE_WORD = 0.2
_NO_DURATION_S = 0.05
# How the vocabulary (terms known before decoding: the call's product, the checklist's and the team's terms,
# `callqa.models.hints`) reaches the decoder: "prompt" = in the initial prompt, which Whisper reads in the first
# 30 s window of each decoded block only (conditioning is off); "hotwords" = faster-whisper's `hotwords`, put before
# every window's prompt (openai-whisper: the prompt carried into every window); "off" = not shown.
HINT_MODES = ("prompt", "hotwords", "off")


@dataclass(frozen=True)
class RawSegment:
    start: float
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = ()
    # Whisper's confidence of the decoding window this segment came from (None when a runtime gives none)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None


class WhisperRuntime(Protocol):
    name: str
    model_name: str

    def detect_language(self, audio: np.ndarray, candidates: tuple[str, ...]) -> tuple[str, float]: ...

    def transcribe(self, audio: np.ndarray, language: str, prompt: str | None,
                   hotwords: str | None = None) -> list[RawSegment]: ...


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
    vocabulary: tuple[str, ...] = ()  # product / store names shown to the decoder (`hints` says how)
    hints: str = "prompt"  # how `vocabulary` reaches the decoder: one of HINT_MODES (docs/asr.md "Decoder hints")
    # the manifest row's `product` adds that call's own terms (`callqa.models.hints.call_options`); off by default:
    # measured without a gain worth a default (docs/asr.md "Decoder hints")
    product_hints: bool = False
    split_gap_s: float = 0.6  # a pause this long inside one channel starts a new segment
    min_speech_s: float = 0.3  # less speech than this in the whole call = no_speech
    vad: VadConfig = field(default_factory=VadConfig)
    diarize_mono: bool = True  # mono: split two speakers and find the agent (else speaker "unknown")
    # mono: the speaker embedding, "campplus" (CAM++ zh/en) or "resemblyzer" (docs/asr.md, "Mono recordings")
    speaker_encoder: str = "campplus"
    block_s: float = 600.0  # speech decoded per block; bounds memory on long recordings
    # True: each 30 s window is prompted with the text before it. It fixes a word repeated at a window
    # cut on real clips ("a severe storm storms tore") but raised zh CER on the dev calls (docs/asr.md,
    # "Real voices"), so it is off. Whisper's own guards are on either way (`callqa.models.runtimes`).
    condition_on_previous_text: bool = False
    fold_dual_mono: bool = True  # a stereo file whose channels are one signal is transcribed once, as mono
    drop_invented: bool = True  # drop decoded segments that look made up (`_looks_invented`)

    def __post_init__(self) -> None:
        if self.hints not in HINT_MODES:
            raise ValueError(f"hints must be one of {', '.join(HINT_MODES)}, got {self.hints!r}")
        if isinstance(self.vocabulary, str):  # a bare string would be read as one term per character
            raise TypeError("vocabulary must be a tuple of terms, not a string")


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

    def in_gap(self, t: float) -> bool:
        """Whether a concatenated time falls in inserted silence (between spans or after the last)."""
        i = max(0, bisect.bisect_right(self.cat_starts, t) - 1)
        return t >= self.cat_starts[i] + self.spans[i].duration

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


def channel_correlation(audio: DecodedAudio) -> float | None:
    """Pearson correlation of the two channels (None for mono or a silent channel).

    Summed over one-minute pieces, so an hour-long call needs no float64 copy of itself.
    """
    if audio.n_channels != 2:
        return None
    sx = sy = sxx = syy = sxy = 0.0
    step = 60 * SAMPLE_RATE
    for k in range(0, audio.channels.shape[1], step):
        x = audio.channels[0, k : k + step].astype(np.float64)
        y = audio.channels[1, k : k + step].astype(np.float64)
        sx, sy = sx + x.sum(), sy + y.sum()
        sxx, syy, sxy = sxx + np.dot(x, x), syy + np.dot(y, y), sxy + np.dot(x, y)
    n = audio.channels.shape[1]
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    if n == 0 or vx <= 0 or vy <= 0:
        return None
    return float((sxy - sx * sy / n) / np.sqrt(vx * vy))


def fold_dual_mono(audio: DecodedAudio) -> DecodedAudio:
    """A stereo recording whose channels carry the same signal, as one mono channel (their mean).

    Transcribing both channels of such a file as agent and customer writes every phrase twice,
    interleaved ("And so my fellow Americans, And so my fellow Americans, ask not what ask not what").
    """
    corr = channel_correlation(audio)
    if corr is None or corr < DUAL_MONO_CORRELATION:
        return audio
    log.info("channels correlate %.3f: one signal written twice (dual mono), transcribed as mono", corr)
    mono = audio.channels.mean(axis=0, keepdims=True).astype(np.float32)
    return replace(audio, channels=np.ascontiguousarray(mono))


def _looks_invented(seg: RawSegment, timeline: _Timeline) -> bool:
    """A decoded segment Whisper made up: more than half of its words are improbable (p < 0.2) or start
    in the silence inserted between speech spans (or after the last one), and more than half have no
    duration (word timing piled them up at one instant: there is no audio for them).

    That is the shape of Whisper's inventions on the leftover of a decoding window after the last
    word (from the last word's end to the end of the speech, mostly padding and inserted silence):
    a copy of the sentence just decoded ("广州市…分析。中央市…分析。") or a stock phrase ("我认识了你"),
    its first word stretched over the pause and the rest piled up at its end, near probability 0.
    """
    if not seg.words:
        return False
    half = len(seg.words) / 2
    odd = sum(w.probability < _IMPROBABLE_WORD or timeline.in_gap(w.start) for w in seg.words)
    instant = sum(w.end - w.start < _NO_DURATION_S for w in seg.words)
    return odd > half and instant > half


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


def _to_call_time(seg: RawSegment, timeline: _Timeline) -> list[tuple[Word, int]]:
    """A decoded segment's words in call time, each with the speech span holding its midpoint.

    A segment without word timings becomes one pseudo-word spanning it.
    """
    words = seg.words or (Word(seg.start, seg.end, seg.text, seg.confidence),)
    out = []
    for w in words:
        i = timeline.span_index((w.start + w.end) / 2)
        out.append((Word(timeline.to_original(w.start, i), timeline.to_original(w.end, i), w.text, w.probability), i))
    return out


def _cut_segments(
    words: list[tuple[Word, int, int]], spans: list[SpeechSpan], gap_s: float
) -> list[tuple[int, list[Word]]]:
    """Group a channel's words [(word, span index, voice label)] into utterances.

    A new utterance starts where the voice changes, or where consecutive words fall in different
    speech spans at least `gap_s` apart (or are themselves `gap_s` apart). Whisper's own segment
    boundaries are ignored: they often fall mid-sentence.
    """
    groups: list[tuple[int, list[Word]]] = []
    prev: tuple[Word, int, int] | None = None
    for w, span, label in words:
        new = prev is None or label != prev[2] or w.start - prev[0].end >= gap_s or (
            span != prev[1] and spans[span].start - spans[prev[1]].end >= gap_s
        )
        if new:
            groups.append((label, [w]))
        else:
            groups[-1][1].append(w)
        prev = (w, span, label)
    return groups


def channel_roles(n_channels: int, agent_channel: int) -> list[Speaker]:
    if n_channels == 1:
        return ["unknown"]
    if agent_channel not in (0, 1):
        raise ValueError(f"agent_channel must be 0 (left) or 1 (right), got {agent_channel}")
    return ["agent", "customer"] if agent_channel == 0 else ["customer", "agent"]


def _blocks(spans: list[SpeechSpan], block_s: float) -> list[list[SpeechSpan]]:
    """Consecutive speech spans grouped so that each group holds at most `block_s` of speech."""
    out: list[list[SpeechSpan]] = []
    total = 0.0
    for sp in spans:
        if not out or total + sp.duration > block_s:
            out.append([])
            total = 0.0
        out[-1].append(sp)
        total += sp.duration
    return out


def _channel_words(
    channel: np.ndarray, spans: list[SpeechSpan], runtime: WhisperRuntime, language: str, prompt: str | None,
    block_s: float, drop_invented: bool = True, source: dict[int, RawSegment] | None = None,
    hotwords: str | None = None,
) -> list[tuple[Word, int]]:
    """Every decoded word of one channel in call time, with the index of its speech span in `spans`.
    `source`, when given, receives id(word) -> the decoded segment it came from (for its confidence)."""
    out: list[tuple[Word, int]] = []
    first = 0
    for block in _blocks(spans, block_s):
        timeline = _Timeline(block, _GAP_JOIN_S)
        audio = _concat_speech(channel, block, _GAP_JOIN_S)
        decoded = (runtime.transcribe(audio, language, prompt, hotwords) if hotwords
                   else runtime.transcribe(audio, language, prompt))
        for raw in decoded:
            if drop_invented and _looks_invented(raw, timeline):
                log.debug("dropped as invented: %r (p=%.2f)", raw.text, raw.confidence)
                continue
            mapped = _to_call_time(raw, timeline)
            if source is not None:
                source.update((id(w), raw) for w, _ in mapped)
            out += [(w, first + i) for w, i in mapped]
        first += len(block)
    return out


def _voice_labels(words: list[tuple[Word, int]], turns: list[SpeakerTurn]) -> list[int]:
    """The diarized voice (0/1) at each word's midpoint."""
    if not turns:
        return [0] * len(words)
    return [label_at(turns, (w.start + w.end) / 2) or 0 for w, _ in words]


def transcribe_audio(
    audio: DecodedAudio, runtime: WhisperRuntime, options: AsrOptions | None = None, agent_channel: int = 0
) -> Transcript:
    """Transcribe a decoded recording. Raises `AudioError('no_speech')` when VAD finds no speech.

    Stereo: each channel is one speaker (`agent_channel` 0 = left, 1 = right). Mono: two voices are
    separated by diarization and the agent is found from what each says (`options.diarize_mono`).
    """
    opts = options or AsrOptions()
    t0 = time.perf_counter()
    if opts.fold_dual_mono:
        audio = fold_dual_mono(audio)
    roles = channel_roles(audio.n_channels, agent_channel)
    spans = [speech_spans(audio.channels[i], opts.vad) for i in range(audio.n_channels)]
    t_vad = time.perf_counter() - t0
    if sum(speech_seconds(s) for s in spans) < opts.min_speech_s:
        raise AudioError("no_speech", "no speech found in the recording (silence or noise only)")

    turns: list[SpeakerTurn] = []
    if audio.n_channels == 1 and opts.diarize_mono:
        turns = diarize(audio.channels[0], spans[0], opts.speaker_encoder)
    t_diar = time.perf_counter() - t0 - t_vad

    t1 = time.perf_counter()
    language, lang_prob = _pick_language(runtime, audio, spans, roles, opts)
    prompt, hotwords = decoder_hints(language, opts)

    # (role or voice label, words) per utterance, all channels
    utterances: list[tuple[Speaker | int, list[Word]]] = []
    source: dict[int, RawSegment] = {}  # id(word) -> its decoded segment, for Whisper's confidence
    for i, role in enumerate(roles):
        if not spans[i]:
            continue
        words = _channel_words(audio.channels[i], spans[i], runtime, language, prompt, opts.block_s,
                               opts.drop_invented, source, hotwords)
        labels = _voice_labels(words, turns) if turns else [0] * len(words)
        for label, group in _cut_segments([(w, s, lab) for (w, s), lab in zip(words, labels, strict=True)], spans[i],
                                          opts.split_gap_s):
            utterances.append((label if turns else role, group))
    utterances.sort(key=lambda u: u[1][0].start)

    segments: list[Segment] = []
    texts = [(who, _clean_text("".join(w.text for w in g), language)) for who, g in utterances]
    voice_role: dict[int, Speaker] = {}
    if turns:
        voiced = [(int(who), t) for who, t in texts if t and not _is_hallucination(t)]
        if len({who for who, _ in voiced}) == 2:
            agent = agent_label(voiced)
            voice_role = {agent: "agent", 1 - agent: "customer"}
    for (who, group), (_, text) in zip(utterances, texts, strict=True):
        if not text or _is_hallucination(text):
            continue
        speaker: Speaker = voice_role.get(who, "unknown") if isinstance(who, int) else who
        conf = float(np.mean([w.probability for w in group]))
        segments.append(Segment(speaker, round(group[0].start, 3), round(group[-1].end, 3), text, round(conf, 4),
                                tuple(group), *_window_confidence([source.get(id(w)) for w in group])))
    segments.sort(key=lambda s: (s.start, s.end))
    t_asr = time.perf_counter() - t1
    log.debug("language %s (p=%.2f), %d segments", language, lang_prob, len(segments))
    return Transcript(
        segments=tuple(segments),
        language=language,
        duration=audio.duration,
        runtime=runtime.name,
        model=runtime.model_name,
        timings={"vad": t_vad, "diarize": t_diar, "asr": t_asr, "speech_s": sum(speech_seconds(s) for s in spans)},
    )


def _window_confidence(raws: list[RawSegment | None]) -> tuple[float | None, float | None, float | None]:
    """(avg_logprob, no_speech_prob, compression_ratio) of an utterance: the worst over the decoded segments its
    words came from (lowest log-prob, highest no-speech probability, highest compression ratio). Whisper gives
    them per 30 s decoding window, so an utterance mostly has one window's values."""
    def worst(values: list[float | None], pick: Callable[[list[float]], float]) -> float | None:
        known = [v for v in values if v is not None]
        return round(float(pick(known)), 4) if known else None

    seen = list({id(r): r for r in raws if r is not None}.values())
    return (worst([r.avg_logprob for r in seen], min), worst([r.no_speech_prob for r in seen], max),
            worst([r.compression_ratio for r in seen], max))


def _pick_language(
    runtime: WhisperRuntime, audio: DecodedAudio, spans: list[list[SpeechSpan]], roles: list[Speaker],
    opts: AsrOptions,
) -> tuple[str, float]:
    if opts.language:
        return opts.language, 1.0
    # the agent side is the longest and most reliable; fall back to whichever channel has most speech
    order = sorted(range(len(spans)), key=lambda i: (roles[i] != "agent", -speech_seconds(spans[i])))
    i = order[0]
    first: list[SpeechSpan] = []
    for sp in spans[i]:  # about the first 30 s of speech
        first.append(sp)
        if speech_seconds(first) >= 30:
            break
    sample = _concat_speech(audio.channels[i], first, _GAP_JOIN_S)[: 30 * SAMPLE_RATE]
    return runtime.detect_language(sample, opts.languages)


def _prompt(language: str, vocabulary: tuple[str, ...]) -> str | None:
    vocab = "、".join(vocabulary) if language == "zh" else ", ".join(vocabulary)
    if language == "zh":
        return ZH_PROMPT + (f"涉及：{vocab}。" if vocab else "")
    return f"Sales call about: {vocab}." if vocab else None


def decoder_hints(language: str, opts: AsrOptions) -> tuple[str | None, str | None]:
    """(initial prompt, hotwords) for the decoder: the vocabulary goes into one of them, as `opts.hints` says.
    The Mandarin prompt (`ZH_PROMPT`: simplified characters, punctuation) is there in every mode."""
    if opts.hints == "prompt" or not opts.vocabulary:
        return _prompt(language, opts.vocabulary if opts.hints == "prompt" else ()), None
    if opts.hints == "hotwords":
        return _prompt(language, ()), ("、" if language == "zh" else ", ").join(opts.vocabulary)
    return _prompt(language, ()), None
