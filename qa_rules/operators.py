"""Detection operators: each one turns a transcript's utterances into a `Match` (which utterances
matched, how strongly). The checklist schema (checklist.py) validates them; docs/checklists.md
describes every field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from callqa.qa_rules.utterances import Utterance, turn_texts

from callqa.records import TextEmbedder

_QUESTION = re.compile(
    r"[?？]|[吗呢么嘛][。，,!！]?$|(^|[，,]\s*)(what|how|who|whom|whose|where|when|which|why|do|does|did|are|is|was|"
    r"were|would|could|can|will|shall|should|have|has)\b[^.!]*$",
    re.IGNORECASE,
)
REGEX_STRENGTH = 0.9  # how sure a literal match is, before calibration
DEFAULT_THRESHOLD = 0.85


@dataclass
class Match:
    hits: dict[int, float] = field(default_factory=dict)  # utterance index → strength 0..1
    unmet: list[int] = field(default_factory=list)  # sequence triggers with no answer
    near_miss: float = 0.0  # best semantic similarity / threshold below threshold, for fail confidence


class Context:
    """The utterances of one call plus lazily computed embeddings (sentence and whole-turn)."""

    def __init__(self, utts: list[Utterance], embedder: TextEmbedder | None, exemplar_cache: dict):
        self.utts = utts
        self.embedder = embedder
        self._utt_vecs: np.ndarray | None = None
        self._turn_vecs: dict[str, tuple[list[int], np.ndarray]] = {}
        self._exemplars = exemplar_cache
        self.item_matches: dict[str, Match] = {}
        self.threshold_shift = 0.0  # set per item from the checklist's calibration

    def universe(self, speaker: str) -> list[int]:
        return [u.index for u in self.utts if speaker == "any" or u.speaker == speaker]

    def utt_vectors(self) -> np.ndarray:
        if self._utt_vecs is None:
            self._utt_vecs = self._embed([u.text for u in self.utts])
        return self._utt_vecs

    def turn_vectors(self, speaker: str) -> tuple[list[int], np.ndarray]:
        """(turn numbers, one embedding per whole turn) for `speaker`."""
        if speaker not in self._turn_vecs:
            texts = turn_texts(self.utts, speaker)
            self._turn_vecs[speaker] = (list(texts), self._embed(list(texts.values())))
        return self._turn_vecs[speaker]

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


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


def is_question(text: str) -> bool:
    return bool(_QUESTION.search(text))


def evaluate(op: dict[str, Any], ctx: Context, speaker: str) -> Match:
    """Evaluate one detection operator over the utterances of `speaker`."""
    ((name, arg),) = op.items()
    if name == "all":
        parts = [evaluate(sub, ctx, speaker) for sub in arg]
        common = set(parts[0].hits).intersection(*(p.hits for p in parts[1:]))
        return Match({i: min(p.hits[i] for p in parts) for i in common}, near_miss=max(p.near_miss for p in parts))
    if name == "any":
        out = Match()
        for sub in arg:
            m = evaluate(sub, ctx, speaker)
            for i, s in m.hits.items():
                out.hits[i] = max(s, out.hits.get(i, 0.0))
            out.near_miss = max(out.near_miss, m.near_miss)
        return out
    if name == "same_turn":
        return _same_turn([evaluate(sub, ctx, speaker) for sub in arg], ctx)
    if name == "not":
        inner = evaluate(arg, ctx, speaker)
        return Match({i: 1.0 for i in ctx.universe(speaker) if i not in inner.hits})
    if name == "keyword":
        words = [w.lower() for w in _as_list(arg, "words")]
        return Match({i: REGEX_STRENGTH for i in ctx.universe(_speaker(arg, speaker))
                      if any(w in ctx.utts[i].text.lower() for w in words)})
    if name == "regex":
        pats = [_compile(p) for p in _as_list(arg, "patterns")]
        return Match({i: REGEX_STRENGTH for i in ctx.universe(_speaker(arg, speaker))
                      if any(p.search(ctx.utts[i].text) for p in pats)})
    if name == "question":
        return Match({i: 1.0 for i in ctx.universe(speaker) if is_question(ctx.utts[i].text) == arg})
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


def _same_turn(parts: list[Match], ctx: Context) -> Match:
    """Every part matched somewhere in one turn (not necessarily in the same sentence)."""
    per_turn = [{ctx.utts[i].turn for i in p.hits} for p in parts]
    turns = set.intersection(*per_turn) if per_turn else set()
    out = Match(near_miss=max((p.near_miss for p in parts), default=0.0))
    for turn in turns:
        strength = min(max(s for i, s in p.hits.items() if ctx.utts[i].turn == turn) for p in parts)
        for p in parts:
            for i in p.hits:
                if ctx.utts[i].turn == turn:
                    out.hits[i] = strength
    return out


def _semantic(arg: dict[str, Any], ctx: Context, speaker: str) -> Match:
    """Similarity to positive exemplars, above `threshold` and ahead of the negatives by `margin`.

    `unit: turn` compares each whole turn (all its sentences) and marks every sentence of a matching
    turn, for judgements about a reply as a whole (did the agent answer the objection?).
    """
    if arg.get("unit", "sentence") == "turn":
        turns, vecs = ctx.turn_vectors(speaker)
        keys = turns
    else:
        keys = ctx.universe(speaker)
        vecs = ctx.utt_vectors()[keys] if keys else None
    if not keys:
        return Match()
    thr = min(0.995, float(arg.get("threshold", DEFAULT_THRESHOLD)) + ctx.threshold_shift)
    margin = float(arg.get("margin", 0.0))
    pos = (vecs @ ctx.exemplar_vectors(tuple(arg["positive"])).T).max(axis=1)
    neg = (vecs @ ctx.exemplar_vectors(tuple(arg["negative"])).T).max(axis=1) if arg.get("negative") else None
    strength: dict[int, float] = {}
    near = 0.0
    for k, key in enumerate(keys):
        ok = pos[k] >= thr and (neg is None or pos[k] - neg[k] >= margin)
        if ok:
            strength[key] = float(min(1.0, 0.5 + (pos[k] - thr) / (2 * (1 - thr))))
        elif neg is None or pos[k] >= neg[k]:
            near = max(near, float(pos[k] / thr))
    if arg.get("unit", "sentence") == "turn":
        strength = {u.index: strength[u.turn] for u in ctx.utts if u.turn in strength and u.speaker == speaker}
    return Match(strength, near_miss=near)


def _sequence(arg: dict[str, Any], ctx: Context, speaker: str) -> Match:
    """A trigger (by default on the other speaker's side) answered within `within_turns` turns."""
    other = "customer" if speaker == "agent" else "agent" if speaker == "customer" else "any"
    triggers = evaluate(arg["trigger"], ctx, arg.get("trigger_speaker", other))
    responses = evaluate(arg["response"], ctx, speaker)
    within = int(arg.get("within_turns", 2))
    out = Match(near_miss=responses.near_miss)
    trigger_turns = sorted({ctx.utts[t].turn: t for t in sorted(triggers.hits, reverse=True)}.items())
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
