"""Split a transcript into the units rules look at: turns (a speaker's consecutive segments) and
utterances (sentences inside a segment), each pointing back to its segment for evidence.

Rules match against a normalised copy of each sentence (`Utterance.text`: full-width digits and
letters made half-width, word-segmented Chinese joined up); evidence quotes the words as
transcribed (`Utterance.quote`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from callqa.records import Speaker, Transcript

# sentence ends in zh and en; a comma is kept inside the sentence
_SENT_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.](?=\s))")
_MIN_CHARS = 2
_CJK = r"[\u3400-\u9fff\uf900-\ufaff]"
_CJK_SPACE = re.compile(rf"(?<={_CJK})\s+(?={_CJK})")
_CJK_RUN = re.compile(rf"{_CJK}+")


@dataclass(frozen=True)
class Utterance:
    index: int
    turn: int  # index of the turn across both speakers
    speaker_turn: int  # 0-based index of this turn among the same speaker's turns
    segment: int  # index into Transcript.segments
    speaker: Speaker
    text: str  # normalised, for matching
    start: float
    end: float
    quote: str = ""  # the sentence as transcribed, for evidence

    def __post_init__(self) -> None:
        if not self.quote:
            object.__setattr__(self, "quote", self.text)


def normalize(text: str) -> str:
    """Text as rules see it: NFKC (full-width → half-width), spaces inside Chinese handled.

    Chinese has no spaces, so a space between two Chinese characters is either a word boundary
    (word-segmented chat logs: "我 想 买 一个") — dropped — or a pause that ASR wrote instead of
    a comma ("你好 我是小王") — made a comma, so sentence-final particles still end a clause.
    """
    text = unicodedata.normalize("NFKC", text).strip()
    if not _CJK_SPACE.search(text):
        return text
    runs = _CJK_RUN.findall(text)
    word_segmented = len(runs) >= 4 and sum(map(len, runs)) / len(runs) <= 3.0
    return _CJK_SPACE.sub("" if word_segmented else "，", text)


# a final Chinese clause that asks something ("…，您预算大概多少。"): ASR often joins it to a statement
_TAIL_QUESTION = re.compile(r"(?<=[，,])\s*[^，,]*(几[个口位岁次天周年点种样]|多少|多大|多久|什么|哪|谁|怎么|"
                            r"有没有|是不是|能不能|要不要|吗|呢)[^，,]*[。？?]?$")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENT_END.split(text)]
    out = []
    for p in parts:
        tail = _TAIL_QUESTION.search(p) if _CJK_RUN.search(p) and not p.endswith(("？", "?")) else None
        if tail and tail.start() >= _MIN_CHARS:
            out += [p[: tail.start()].strip(), tail.group(0).strip()]
        else:
            out.append(p)
    return [p for p in out if len(p) >= _MIN_CHARS]


def utterances(transcript: Transcript) -> list[Utterance]:
    """Sentences of every segment, with turn numbering (a turn ends when the speaker changes)."""
    out: list[Utterance] = []
    turn, last_speaker = -1, None
    per_speaker: dict[str, int] = {}
    for seg_idx, seg in enumerate(transcript.segments):
        if not seg.text.strip():
            continue
        if seg.speaker != last_speaker:
            turn += 1
            per_speaker[seg.speaker] = per_speaker.get(seg.speaker, -1) + 1
            last_speaker = seg.speaker
        for sent in split_sentences(seg.text) or [seg.text.strip()]:
            out.append(Utterance(len(out), turn, per_speaker[seg.speaker], seg_idx, seg.speaker, normalize(sent),
                                 seg.start, seg.end, quote=sent))
    return out


def turn_texts(utts: list[Utterance], speaker: str = "any") -> dict[int, str]:
    """The whole text of every turn (of `speaker`), for rules that judge a reply as a whole."""
    out: dict[int, list[str]] = {}
    for u in utts:
        if speaker == "any" or u.speaker == speaker:
            out.setdefault(u.turn, []).append(u.text)
    return {t: " ".join(parts) for t, parts in out.items()}
