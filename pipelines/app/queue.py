"""The review queue: the verdicts of a week worth a human look, not yet reviewed.

A verdict enters the queue when any of these holds (the entry names which):
- `low confidence`: the machine's confidence is under `low_confidence` (default 0.7);
- `critical fail`: a critical item (a forbidden phrase) failed: the call scores 0 on it alone;
- `sample`: a seeded random sample of the week's other verdicts (`sample_share`, default 10%, at least
  `min_sample`), so reviewers also see verdicts the machine is sure of and agreement is not only measured on
  doubtful ones. The seed is the week plus `seed`: the same week gives the same sample on every page load.
- `below agreement bar`: the item has an auto-accept rule (`review:` in the checklist) whose gate is closed:
  too few reviews, or the lower bound of its measured agreement under the bar (see gate.py);
- `low-confidence audio`: the verdict's evidence rests on speech Whisper itself doubts (`Verdict.audio_flag`,
  the rule in callqa.models.confidence), so the quote may be a mishearing; the entry's `detail` says where and why.
A verdict with a human review leaves the queue. The verdicts of an item whose gate is open (auto-accepted) do not
enter for low confidence or a critical fail, only through the sample, which keeps their agreement measured; they
do enter for low-confidence audio: the gate's agreement was measured on what was heard right.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from callqa.pipelines.reports.report_data import Call, Dataset, Verdict

from .gate import AUTO, QUEUE, ItemGate

LOW_CONFIDENCE = 0.7
LOW_AUDIO = "low-confidence audio"
SAMPLE_SHARE = 0.10
MIN_SAMPLE = 5


@dataclass(frozen=True)
class QueueEntry:
    call: Call
    item_id: str
    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def detail(self) -> str:
        """What a reason needs said beyond its name: where the evidence's audio is doubtful, and why."""
        return self.verdict.audio_flag or "" if LOW_AUDIO in self.reasons else ""

    @property
    def key(self) -> str:
        return f"{self.call.call_id}/{self.item_id}"


def _sample_rank(week: str, seed: int, call: Call, item_id: str) -> str:
    """A stable pseudo-random order of a week's verdicts (sha256 of seed, week, recording and item)."""
    return hashlib.sha256(f"{seed}|{week}|{call.recording_id}|{item_id}".encode()).hexdigest()


def review_queue(ds: Dataset, week: str, agent: str | None = None, item: str | None = None,
                 low_confidence: float = LOW_CONFIDENCE, sample_share: float = SAMPLE_SHARE,
                 min_sample: int = MIN_SAMPLE, seed: int = 0,
                 gates: dict[str, ItemGate] | None = None) -> list[QueueEntry]:
    """The week's unreviewed verdicts that need a look: low confidence, critical fails and items below their
    agreement bar first, then the sample. The sample is drawn over the whole week before the agent/item filters
    apply, so filtering never changes it."""
    status = {i: g.status for i, g in (gates or {}).items()}
    critical = {it["id"] for it in ds.items if it.get("critical")}
    flagged: list[QueueEntry] = []
    rest: list[tuple[str, Call, str, Verdict]] = []
    for call in ds.week_calls(week):
        for item_id, v in call.verdicts.items():
            if v.human_verdict is not None:
                continue
            reasons = []
            gate = status.get(item_id)
            if gate != AUTO:
                if v.confidence < low_confidence:
                    reasons.append("low confidence")
                if item_id in critical and v.verdict == "fail":
                    reasons.append("critical fail")
            if gate == QUEUE:
                reasons.append("below agreement bar")
            if v.audio_flag is not None:
                reasons.append(LOW_AUDIO)
            if reasons:
                flagged.append(QueueEntry(call, item_id, v, tuple(reasons)))
            else:
                rest.append((_sample_rank(week, seed, call, item_id), call, item_id, v))
    n_verdicts = sum(len(c.verdicts) for c in ds.week_calls(week))
    n_sample = min(len(rest), max(min_sample, round(sample_share * n_verdicts)))
    sample = [QueueEntry(c, i, v, ("sample",)) for _, c, i, v in sorted(rest, key=lambda r: r[0])[:n_sample]]
    flagged.sort(key=lambda e: ("critical fail" not in e.reasons, e.verdict.confidence, e.call.call_id))
    sample.sort(key=lambda e: (e.call.call_id, e.item_id))
    out = flagged + sample
    return [e for e in out if (agent is None or e.call.agent_id == agent) and (item is None or e.item_id == item)]
