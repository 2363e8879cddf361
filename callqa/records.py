"""The small typed records that cross layer boundaries.

`models/` produces `Transcript`s, `qa_rules/` turns a `Transcript` into `ItemVerdict`s and a
`CallScore`, `pipelines/` stores them. Nothing passes raw dicts between layers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
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
    # Whisper's own confidence of the decoding window(s) the words came from (the worst of them when an
    # utterance spans two): mean token log-probability, no-speech probability, gzip compression ratio of the
    # text. None when there was no audio (a reference transcript, a chat log): such text is never flagged.
    # The rule that reads them: callqa.models.confidence.
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None


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


# --- what the store gives back to reports (callqa.pipelines.store.reads, .history) --------------------------


@dataclass(frozen=True)
class StoredCall:
    """A scored call as the week's read model needs it: who, when (local wall clock, its ISO week), where the
    audio is, how long it is. `call_id` falls back to the file name, `agent_id` to '(unknown)'."""

    recording_id: str
    call_id: str
    agent_id: str
    started_local: datetime | None
    week: str
    language: str | None
    path: str
    duration_s: float | None


@dataclass(frozen=True)
class ReviewedVerdict:
    """A stored verdict with the latest human review applied: `verdict` is the human one where there is one,
    `auto_verdict` the machine's. Evidence stays JSON until it is read (a big week's scorecard never needs it)."""

    item_id: str
    verdict: str
    auto_verdict: str
    human_verdict: str | None
    reviewer: str | None
    comment: str | None
    confidence: float
    evidence_json: str
    reason: str
    audio_flag: str | None = None  # why the evidence rests on low-confidence audio (callqa.models.confidence)

    @cached_property
    def evidence(self) -> tuple[Evidence, ...]:
        return tuple(Evidence(**e) for e in json.loads(self.evidence_json or "[]"))


@dataclass(frozen=True)
class RouteCount:
    """How many of an agent's calls routing last sent to a checklist (`skip_reason` None) or set aside."""

    agent_id: str
    checklist_id: str | None
    skip_reason: str | None
    calls: int


@dataclass(frozen=True)
class RunRecord:
    """One `callqa run` as the `runs` table keeps it (counts are None until the run finished)."""

    run_id: str
    status: str | None
    started_at: datetime | None
    finished_at: datetime | None
    source_dir: str | None
    checklist_id: str | None
    checklist_version: int | None
    found: int | None
    scored: int | None
    skipped: int | None
    failed: int | None
    no_speech: int | None
    workers: int | None
    orchestrator: str | None
    host: str | None
    pid: int | None


@dataclass(frozen=True)
class RecordingFailure:
    """The latest state of a recording that failed or had no speech."""

    file: str
    status: str
    reason: str | None
    kind: str | None  # 'permanent' | 'transient'
    attempts: int | None
    message: str | None
    at: datetime | None


@dataclass(frozen=True)
class UnreadableFile:
    """A batch row that never became a recording (missing file, outside the batch folder)."""

    file: str
    reason: str
    message: str


@dataclass(frozen=True)
class AgentActivity:
    """How many scored calls an agent has in the database, and the first and last (local wall clock)."""

    agent_id: str | None
    calls: int
    first_call: datetime | None
    last_call: datetime | None
