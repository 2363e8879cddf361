"""The small typed records that cross layer boundaries.

`models/` produces `Transcript`s, `qa_rules/` turns a `Transcript` into `ItemVerdict`s and a
`CallScore`, `pipelines/` stores them. Nothing passes raw dicts between layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Speaker = Literal["agent", "customer", "unknown"]
Verdict = Literal["pass", "fail", "na"]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """One stretch of speech by one speaker, times in seconds from the start of the call."""

    speaker: Speaker
    start: float
    end: float
    text: str
    confidence: float = 1.0
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: str | None = None
    duration: float = 0.0
    runtime: str = ""
    model: str = ""
    # decode / ASR wall time in seconds, for benchmarks and the pipeline's stage split
    timings: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_speech(self) -> bool:
        return any(s.text.strip() for s in self.segments)

    @classmethod
    def from_turns(cls, turns: list[dict], language: str | None = None) -> Transcript:
        """A reference transcript (manifest `turns`) as a Transcript, for text-only evaluation."""
        segs = tuple(
            Segment(
                speaker=t.get("speaker", "unknown"),
                start=float(t.get("start", i)),
                end=float(t.get("end", i)),
                text=str(t["text"]),
            )
            for i, t in enumerate(turns)
        )
        return cls(segments=segs, language=language, duration=max((s.end for s in segs), default=0.0))


@dataclass(frozen=True)
class Evidence:
    segment: int  # index into Transcript.segments
    speaker: Speaker
    quote: str
    start: float
    end: float
    score: float = 1.0  # how strongly this segment matched


@dataclass(frozen=True)
class ItemVerdict:
    item_id: str
    verdict: Verdict
    confidence: float
    evidence: tuple[Evidence, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class CallScore:
    checklist_id: str
    checklist_version: int
    score: float  # 0..100
    points: float
    max_points: float
    critical_fail: bool
    verdicts: tuple[ItemVerdict, ...] = ()


class TextEmbedder(Protocol):
    """What the checklist engine needs from a sentence encoder (see callqa.models.text_encoder)."""

    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return an (n, d) float32 array of L2-normalised embeddings."""
        ...

    # Optional: `cached(texts) -> list[str]`, the texts whose embedding is at hand without running the model
    # (a memo cache). The engine then skips its dry run for calls it has seen (see ChecklistEngine.matches_many).


@dataclass(frozen=True)
class NeedTag:
    """One customer need found in a call, with the customer's words that show it."""

    tag_id: str
    title: dict[str, str]
    confidence: float  # strongest matching sentence, 0..1
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class RecordingState:
    """Where a stored recording stands: its status (new, transcribed, scored, failed, no_speech, skipped), how many
    runs tried it, and whether its failure can change on a retry ('permanent' or 'transient'; None if none)."""

    status: str
    attempts: int
    failure_kind: str | None = None
