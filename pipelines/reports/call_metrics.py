"""Conversation metrics from a call's segments: talk ratio, longest customer monologue, silence
share, interruptions and the agent's speech rate.

- talk ratio: the agent's speaking time over both speakers' speaking time.
- longest customer monologue: the longest stretch of customer speech with no agent speech in it
  (customer segments separated by a pause shorter than `join_gap` join into one stretch).
- silence share: share of the call's duration in which nobody speaks.
- interruptions: a segment that starts while the other speaker's segment is still running by
  more than `min_overlap` seconds (counted for the speaker who cuts in).
- speech rate: the agent's words per minute of speaking time; a Chinese character counts as a
  word (so Mandarin reads as characters per minute), and rates are kept per language.

The timing tests themselves (words, overlaps, interruptions) live in `callqa.qa_rules.timing`, shared with the
checklist's timing operators.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from callqa.pipelines.store.reader import Reader
from callqa.pipelines.store.reads import call_segments
from callqa.qa_rules.timing import count_words, interruptions
from callqa.qa_rules.timing import union_length as _union_length

from callqa.records import Segment

__all__ = ["AgentMetrics", "CallMetrics", "agent_metrics", "call_metrics", "count_words", "load_segments"]


@dataclass(frozen=True)
class CallMetrics:
    duration_s: float
    agent_talk_s: float
    customer_talk_s: float
    talk_ratio: float | None  # agent share of talk time, 0-1
    longest_customer_monologue_s: float
    silence_share: float | None  # 0-1
    interruptions_by_agent: int
    interruptions_by_customer: int
    agent_words: int
    agent_words_per_min: float | None


def call_metrics(segments: list[Segment], duration_s: float | None = None, join_gap: float = 1.0,
                 min_overlap: float = 0.3) -> CallMetrics:
    segs = sorted((s for s in segments if s.end > s.start), key=lambda s: (s.start, s.end))
    duration = max(duration_s or 0.0, max((s.end for s in segs), default=0.0))
    agent = [(s.start, s.end) for s in segs if s.speaker == "agent"]
    customer = [(s.start, s.end) for s in segs if s.speaker == "customer"]
    agent_talk, customer_talk = _union_length(agent), _union_length(customer)
    talk = agent_talk + customer_talk
    speech = _union_length((s.start, s.end) for s in segs)
    longest, run_start, run_end = 0.0, None, None
    for s in segs:
        if s.speaker == "customer":
            if run_end is not None and s.start - run_end <= join_gap:
                run_end = max(run_end, s.end)
            else:
                run_start, run_end = s.start, s.end
            longest = max(longest, run_end - run_start)
        elif s.speaker == "agent":
            run_start = run_end = None
    interrupts = {"agent": 0, "customer": 0}
    for i in interruptions(segs, min_overlap):  # the same test as the checklist operator `interrupts`
        interrupts[segs[i].speaker] += 1
    words = sum(count_words(s.text) for s in segs if s.speaker == "agent")
    return CallMetrics(
        round(duration, 2), round(agent_talk, 2), round(customer_talk, 2),
        round(agent_talk / talk, 3) if talk else None, round(longest, 2),
        round(max(0.0, 1.0 - speech / duration), 3) if duration else None,
        interrupts["agent"], interrupts["customer"], words,
        round(60.0 * words / agent_talk, 1) if agent_talk else None,
    )


def load_segments(db: Reader, recording_id: str) -> list[Segment]:
    """A call's stored segments (`db`: a Store or a pooled connection)."""
    return call_segments(db, recording_id)


@dataclass(frozen=True)
class AgentMetrics:
    agent_id: str
    calls: int
    talk_ratio: float | None  # mean over calls
    longest_customer_monologue_s: float  # the longest in any call
    silence_share: float | None  # mean over calls
    interruptions_by_agent: int  # total
    interruptions_by_customer: int
    words_per_min: dict[str, float]  # language → mean agent rate


def agent_metrics(per_call: list[tuple[str, str | None, CallMetrics]]) -> list[AgentMetrics]:
    """Aggregate (agent, language, metrics) rows per agent, sorted by agent."""
    by_agent: dict[str, list[tuple[str | None, CallMetrics]]] = {}
    for agent, lang, m in per_call:
        by_agent.setdefault(agent, []).append((lang, m))
    out = []
    for agent, rows in sorted(by_agent.items()):
        ms = [m for _, m in rows]
        ratios = [m.talk_ratio for m in ms if m.talk_ratio is not None]
        silence = [m.silence_share for m in ms if m.silence_share is not None]
        rates: dict[str, list[float]] = {}
        for lang, m in rows:
            if m.agent_words_per_min is not None:
                rates.setdefault(lang or "?", []).append(m.agent_words_per_min)
        out.append(AgentMetrics(
            agent, len(ms), round(statistics.mean(ratios), 3) if ratios else None,
            max((m.longest_customer_monologue_s for m in ms), default=0.0),
            round(statistics.mean(silence), 3) if silence else None,
            sum(m.interruptions_by_agent for m in ms), sum(m.interruptions_by_customer for m in ms),
            {lang: round(statistics.mean(v), 1) for lang, v in sorted(rates.items())},
        ))
    return out
