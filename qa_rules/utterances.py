"""Split a transcript into the units rules look at: turns (a speaker's consecutive segments) and
utterances (sentences inside a segment), each pointing back to its segment for evidence."""

from __future__ import annotations

import re
from dataclasses import dataclass

from callqa.records import Speaker, Transcript

# sentence ends in zh and en; a comma is kept inside the sentence
_SENT_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.](?=\s))")
_MIN_CHARS = 2


@dataclass(frozen=True)
class Utterance:
    index: int
    turn: int  # index of the turn across both speakers
    speaker_turn: int  # 0-based index of this turn among the same speaker's turns
    segment: int  # index into Transcript.segments
    speaker: Speaker
    text: str
    start: float
    end: float


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENT_END.split(text)]
    return [p for p in parts if len(p) >= _MIN_CHARS]


def utterances(transcript: Transcript) -> list[Utterance]:
    """Sentences of every segment, with turn numbering (a turn ends when the speaker changes)."""
    out: list[Utterance] = []
    turn, last_speaker = -1, None
    per_speaker: dict[str, int] = {}
    for seg_idx, seg in enumerate(transcript.segments):
        if seg.speaker != last_speaker:
            turn += 1
            per_speaker[seg.speaker] = per_speaker.get(seg.speaker, -1) + 1
            last_speaker = seg.speaker
        for sent in split_sentences(seg.text) or ([seg.text.strip()] if seg.text.strip() else []):
            out.append(Utterance(len(out), turn, per_speaker[seg.speaker], seg_idx, seg.speaker, sent,
                                 seg.start, seg.end))
    return out
