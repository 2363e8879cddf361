"""Timing of a conversation from its segments' start/end times: who speaks when, overlaps, pauses, speech rate.

One implementation for the checklist operators that judge timing (`silence_after`, `interrupts`, `speech_rate`,
`within_seconds`, `sequence.within_seconds` in operators.py) and for the report's call metrics
(`callqa.pipelines.reports.call_metrics`), so a rule and a metric never disagree about what an interruption is.
Works on anything with `speaker`, `start`, `end` and `text` (a `Segment`, or a `Span` rebuilt from utterances).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from callqa.qa_rules.utterances import Utterance

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
INTERRUPT_MIN_OVERLAP = 0.3  # seconds the other side's segment must still run after one cuts in


class Timed(Protocol):
    speaker: str
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Span:
    """One transcript segment as the rules see it: its speaker, times, text and the utterances it holds."""

    segment: int
    speaker: str
    start: float
    end: float
    text: str
    utts: tuple[int, ...]  # utterance indices, in order


def spans(utts: Sequence[Utterance]) -> list[Span]:
    """The segments behind `utts` (every utterance carries its segment's times), sorted by start time."""
    by_seg: dict[int, list[Utterance]] = {}
    for u in utts:
        by_seg.setdefault(u.segment, []).append(u)
    out = [Span(seg, us[0].speaker, us[0].start, us[0].end, " ".join(u.text for u in us), tuple(u.index for u in us))
           for seg, us in by_seg.items()]
    return sorted(out, key=lambda s: (s.start, s.end, s.segment))


def count_words(text: str) -> int:
    """Latin words plus CJK characters (Mandarin reads as characters per minute)."""
    return len(_CJK.findall(text)) + len(_WORD.findall(_CJK.sub(" ", text)))


def script_language(text: str) -> str:
    """'zh' when CJK characters outnumber Latin words, else 'en': a rate's language, read from the text itself."""
    return "zh" if len(_CJK.findall(text)) > len(_WORD.findall(_CJK.sub(" ", text))) else "en"


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def interruptions(segs: Sequence[Timed], min_overlap: float = INTERRUPT_MIN_OVERLAP) -> list[int]:
    """Positions (in `segs`, sorted by start) of the segments that cut in: a segment starting while a segment of
    the other side (agent vs customer; `unknown` never counts) that began earlier still runs more than
    `min_overlap` seconds past its start."""
    out = []
    for i, s in enumerate(segs):
        if s.speaker not in ("agent", "customer"):
            continue
        if any(o.speaker not in (s.speaker, "unknown") and o.start < s.start and o.end - s.start > min_overlap
               for o in segs[:i]):
            out.append(i)
    return out


def wait_after(segs: Sequence[Timed], k: int) -> float | None:
    """Seconds from the end of the turn that segment `k` belongs to (its speaker's run of segments from `k` on,
    `unknown` ones skipped) until the other side next starts speaking; negative when the other side started
    before the turn ended; None when the other side never speaks again (the call ended)."""
    me = segs[k].speaker
    turn_end = segs[k].end
    for s in segs[k + 1:]:
        if s.speaker == me:
            turn_end = max(turn_end, s.end)
        elif s.speaker != "unknown":
            return s.start - turn_end
    return None


def speech_rate(segs: Sequence[Timed], speaker: str) -> tuple[int, float, float | None]:
    """(words, speaking seconds, words per minute of speaking time) of `speaker`'s segments ('any': all)."""
    mine = [s for s in segs if speaker in ("any", s.speaker) and s.end > s.start]
    words = sum(count_words(s.text) for s in mine)
    talk = union_length((s.start, s.end) for s in mine)
    return words, talk, (60.0 * words / talk if talk else None)
