"""Apply a checklist to a transcript: per item a verdict, a confidence and evidence; then a call score.

The engine is plain code over typed records: it knows nothing of audio or storage. Semantic
operators need a sentence encoder (`callqa.records.TextEmbedder`), injected by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from callqa.qa_rules.checklist import Checklist, Item
from callqa.qa_rules.utterances import Utterance, utterances

from callqa.records import CallScore, Evidence, ItemVerdict, TextEmbedder, Transcript

_QUESTION = re.compile(
    r"[?？]|[吗呢么嘛][。，,]?$|^(what|how|who|where|when|which|do|does|did|are|is|would|could|can)\b", re.IGNORECASE
)
REGEX_STRENGTH = 0.9  # how sure a literal match is, before calibration


@dataclass
class Match:
    hits: dict[int, float] = field(default_factory=dict)  # utterance index → strength 0..1
    unmet: list[int] = field(default_factory=list)  # sequence triggers with no answer
    near_miss: float = 0.0  # best semantic similarity below threshold, for fail confidence


class _Context:
    def __init__(self, utts: list[Utterance], embedder: TextEmbedder | None, exemplar_cache: dict):
        self.utts = utts
        self.embedder = embedder
        self._utt_vecs: np.ndarray | None = None
        self._exemplars = exemplar_cache
        self.item_matches: dict[str, Match] = {}

    def universe(self, speaker: str) -> list[int]:
        return [u.index for u in self.utts if speaker == "any" or u.speaker == speaker]

    def utt_vectors(self) -> np.ndarray:
        if self._utt_vecs is None:
            self._utt_vecs = self._embed([u.text for u in self.utts])
        return self._utt_vecs

    def exemplar_vectors(self, texts: tuple[str, ...]) -> np.ndarray:
        if texts not in self._exemplars:
            self._exemplars[texts] = self._embed(list(texts))
        return self._exemplars[texts]

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.embedder is None:
            raise RuntimeError("this checklist uses semantic rules: pass a TextEmbedder to the engine")
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.asarray(self.embedder.embed(texts), dtype=np.float32)


def _as_list(arg: Any, key: str) -> list[str]:
    vals = arg.get(key) if isinstance(arg, dict) else arg
    return [str(v) for v in ([vals] if isinstance(vals, str) else vals)]


def _speaker(arg: Any, default: str) -> str:
    return arg.get("speaker", default) if isinstance(arg, dict) else default


def evaluate(op: dict[str, Any], ctx: _Context, speaker: str) -> Match:
    """Evaluate one detection operator over the utterances of `speaker`."""
    (name, arg), = ((k, v) for k, v in op.items())
    if name == "all":
        parts = [evaluate(sub, ctx, speaker) for sub in arg]
        common = set(parts[0].hits).intersection(*(p.hits for p in parts[1:]))
        return Match({i: min(p.hits[i] for p in parts) for i in common},
                     near_miss=max(p.near_miss for p in parts))
    if name == "any":
        out = Match()
        for sub in arg:
            m = evaluate(sub, ctx, speaker)
            for i, s in m.hits.items():
                out.hits[i] = max(s, out.hits.get(i, 0.0))
            out.near_miss = max(out.near_miss, m.near_miss)
        return out
    if name == "not":
        inner = evaluate(arg, ctx, speaker)
        return Match({i: 1.0 for i in ctx.universe(speaker) if i not in inner.hits})
    if name == "keyword":
        words = [w.lower() for w in _as_list(arg, "words")]
        return Match({i: REGEX_STRENGTH for i in ctx.universe(_speaker(arg, speaker))
                      if any(w in ctx.utts[i].text.lower() for w in words)})
    if name == "regex":
        pats = [re.compile(p, re.IGNORECASE) for p in _as_list(arg, "patterns")]
        return Match({i: REGEX_STRENGTH for i in ctx.universe(_speaker(arg, speaker))
                      if any(p.search(ctx.utts[i].text) for p in pats)})
    if name == "question":
        return Match({i: 1.0 for i in ctx.universe(speaker) if bool(_QUESTION.search(ctx.utts[i].text)) == arg})
    if name == "position":
        first, last = arg.get("first_turns"), arg.get("last_turns")
        idx = ctx.universe(_speaker(arg, speaker))
        n_turns = max((ctx.utts[i].speaker_turn for i in idx), default=-1) + 1
        return Match({i: 1.0 for i in idx
                      if (first is None or ctx.utts[i].speaker_turn < first)
                      and (last is None or ctx.utts[i].speaker_turn >= n_turns - last)})
    if name == "item":
        return ctx.item_matches.get(arg, Match())
    if name == "semantic":
        return _semantic(arg, ctx, _speaker(arg, speaker))
    if name == "sequence":
        return _sequence(arg, ctx, speaker)
    raise ValueError(f"unknown operator {name!r}")


def _semantic(arg: dict[str, Any], ctx: _Context, speaker: str) -> Match:
    idx = ctx.universe(speaker)
    if not idx:
        return Match()
    thr = float(arg.get("threshold", 0.85))
    margin = float(arg.get("margin", 0.0))
    vecs = ctx.utt_vectors()[idx]
    pos = (vecs @ ctx.exemplar_vectors(tuple(arg["positive"])).T).max(axis=1)
    neg = (vecs @ ctx.exemplar_vectors(tuple(arg["negative"])).T).max(axis=1) if arg.get("negative") else None
    out = Match()
    for k, i in enumerate(idx):
        ok = pos[k] >= thr and (neg is None or pos[k] - neg[k] >= margin)
        if ok:
            out.hits[i] = float(min(1.0, 0.5 + (pos[k] - thr) / (2 * (1 - thr))))
        elif neg is None or pos[k] >= neg[k]:
            out.near_miss = max(out.near_miss, float(pos[k] / thr))
    return out


def _sequence(arg: dict[str, Any], ctx: _Context, speaker: str) -> Match:
    triggers = evaluate(arg["trigger"], ctx, "customer" if speaker == "agent" else speaker)
    responses = evaluate(arg["response"], ctx, speaker)
    within = int(arg.get("within_turns", 2))
    out = Match(near_miss=responses.near_miss)
    trigger_turns = sorted({ctx.utts[t].turn: t for t in triggers.hits}.items())
    for turn, t in trigger_turns:
        answers = [r for r in responses.hits if turn < ctx.utts[r].turn <= turn + within]
        if answers:
            for r in answers:
                out.hits[r] = max(responses.hits[r], out.hits.get(r, 0.0))
        else:
            out.unmet.append(t)
    if arg.get("require", "every") == "every" and out.unmet:
        out.hits = {}
    return out


class ChecklistEngine:
    """Scores transcripts against one checklist. Reuse one engine for many calls (exemplars are cached)."""

    def __init__(self, checklist: Checklist, embedder: TextEmbedder | None = None):
        self.checklist = checklist
        self.embedder = embedder
        self._exemplars: dict[tuple[str, ...], np.ndarray] = {}

    def verdicts(self, transcript: Transcript) -> list[ItemVerdict]:
        utts = utterances(transcript)
        ctx = _Context(utts, self.embedder, self._exemplars)
        out = []
        for item in self.checklist.items:
            match = evaluate(item.detect, ctx, item.speaker)
            ctx.item_matches[item.id] = match
            out.append(self._verdict(item, match, ctx))
        return out

    def score(self, transcript: Transcript) -> CallScore:
        verdicts = self.verdicts(transcript)
        return call_score(self.checklist, verdicts)

    def _verdict(self, item: Item, match: Match, ctx: _Context) -> ItemVerdict:
        if item.applies_if and not ctx.item_matches[item.applies_if].hits:
            return ItemVerdict(item.id, "na", 1.0, reason=f"not applicable: no {item.applies_if} in this call")
        for other in item.fail_if:
            if ctx.item_matches[other].hits:
                ev = _evidence(ctx.item_matches[other], ctx, item.evidence_limit)
                return ItemVerdict(item.id, "fail", round(max(ctx.item_matches[other].hits.values()), 3), ev,
                                   f"failed because {other} was found")
        detected = bool(match.hits)
        strength = max(match.hits.values(), default=0.0)
        evidence = _evidence(match, ctx, item.evidence_limit)
        unmet = "; ".join(f"{ctx.utts[t].start:.1f}s \"{ctx.utts[t].text}\"" for t in match.unmet)
        if item.polarity == "present":
            if detected:
                return ItemVerdict(item.id, "pass", round(strength, 3), evidence, "found")
            reason = f"no answer to: {unmet}" if unmet else f"no {item.speaker} utterance matched"
            return ItemVerdict(item.id, "fail", round(_fail_confidence(match), 3), (), reason)
        if detected:
            return ItemVerdict(item.id, "fail", round(strength, 3), evidence, "found a forbidden utterance")
        return ItemVerdict(item.id, "pass", round(_fail_confidence(match), 3), (), "none found")


def _fail_confidence(match: Match) -> float:
    """Confidence that nothing matched: high when nothing came close to a semantic threshold."""
    return float(np.clip(1.0 - 0.5 * match.near_miss, 0.5, 1.0)) if match.near_miss else 0.9


def _evidence(match: Match, ctx: _Context, limit: int) -> tuple[Evidence, ...]:
    best = sorted(match.hits.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return tuple(
        Evidence(segment=u.segment, speaker=u.speaker, quote=u.text, start=u.start, end=u.end, score=round(s, 3))
        for u, s in sorted(((ctx.utts[i], s) for i, s in best), key=lambda x: x[0].index)
    )


def call_score(checklist: Checklist, verdicts: list[ItemVerdict]) -> CallScore:
    """Weighted share of applicable items passed, 0-100; a failed critical item makes the call 0."""
    by_id = {v.item_id: v for v in verdicts}
    points = max_points = 0.0
    critical_fail = False
    for item in checklist.items:
        v = by_id.get(item.id)
        if v is None or v.verdict == "na":
            continue
        max_points += item.weight
        if v.verdict == "pass":
            points += item.weight
        elif item.critical:
            critical_fail = True
    score = 0.0 if critical_fail or max_points == 0 else 100.0 * points / max_points
    return CallScore(checklist.id, checklist.version, round(score, 2), points, max_points, critical_fail,
                     tuple(verdicts))
