"""Apply a checklist to a transcript: per item a verdict, a confidence and evidence; then a call score.

The engine is plain code over typed records: it knows nothing of audio or storage. Semantic
operators need a sentence encoder (`callqa.records.TextEmbedder`), injected by the caller.
Operators live in `operators.py`; calibrated thresholds and confidences come from the
checklist's `calibration` section (written by `callqa calibrate`, see calibration.py).
"""

from __future__ import annotations

import math
import re

import numpy as np
from callqa.models.cross_encoder import load_cross
from callqa.qa_rules.checklist import Checklist, Item
from callqa.qa_rules.cross_ops import prefetch
from callqa.qa_rules.learned import load_heads
from callqa.qa_rules.operators import Context, Match, evaluate, walk_operators
from callqa.qa_rules.utterances import turn_texts, utterances

from callqa.records import CallScore, Evidence, ItemVerdict, TextEmbedder, Transcript

__all__ = ["ChecklistEngine", "call_score", "item_score"]


def item_score(match: Match) -> float:
    """One number per item and call, 0..1: ≥ 0.5 when detected (the best hit's strength), below 0.5
    when not (how close the best semantic candidate came). Calibration maps it to a probability."""
    if match.hits:
        return max(match.hits.values())
    return float(np.clip(0.5 * match.near_miss, 0.0, 0.49))


class ChecklistEngine:
    """Scores transcripts against one checklist. Reuse one engine for many calls (exemplars are cached).

    `threshold_shifts` (item id → shift added to every semantic threshold of that item) overrides
    the checklist's calibration; calibration uses it to try thresholds without rewriting YAML.
    """

    def __init__(self, checklist: Checklist, embedder: TextEmbedder | None = None,
                 threshold_shifts: dict[str, float] | None = None):
        self.checklist = checklist
        self.embedder = embedder
        self._exemplars: dict[tuple[str, ...], np.ndarray] = {}
        cal = checklist.calibration
        self.threshold_shifts = dict(threshold_shifts) if threshold_shifts is not None else {
            k: c.threshold_shift for k, c in cal.items()}
        # items other items read match by match (`item:`, e.g. objection as the trigger of a sequence)
        # need every match; the rest only need to know whether they matched (see `evaluate`)
        ops = list(walk_operators([i.detect for i in checklist.items]))
        self._read_by_others = {v for k, v in ops if k == "item" and isinstance(v, str)}
        self._exemplar_sets = list(dict.fromkeys(tuple(arg[side]) for k, arg in ops if k == "semantic"
                                                 for side in ("positive", "negative") if arg.get(side)))
        self._semantic = bool(self._exemplar_sets) or any(k in ("model", "model_answer") for k, _ in ops)
        self.heads = load_heads(checklist.heads_path, checklist.heads_sha256) if checklist.heads_path else None
        self.cross = (load_cross(checklist.cross_path, checklist.cross_sha256)
                      if checklist.cross_path else None)
        # the (task, speaker) of every `cross` operator: their turns are scored for many calls at once
        self._cross_reads = list(dict.fromkeys(
            (arg["task"], arg.get("speaker", item.speaker)) for item in checklist.items
            for k, arg in walk_operators(item.detect) if k == "cross"))

    def warm_up(self) -> None:
        """Embed every exemplar of the checklist in one pass (once per engine; later calls are no-ops).

        The rules would otherwise embed an item's exemplars the first time a call reaches it, in small batches,
        and that one-off cost would land on whichever calls come first."""
        if self.embedder is None or not self._semantic or all(s in self._exemplars for s in self._exemplar_sets):
            return
        texts = list(dict.fromkeys(t for s in self._exemplar_sets for t in s))
        vecs = dict(zip(texts, np.asarray(self.embedder.embed(texts), dtype=np.float32), strict=True))
        for s in self._exemplar_sets:
            self._exemplars.setdefault(s, np.stack([vecs[t] for t in s]))

    def matches(self, transcript: Transcript) -> tuple[Context, dict[str, Match]]:
        """Run every item's detection; returns the context and each item's raw match. What the rules embed is
        embedded in one or two passes, as for many calls (see `matches_many`), not item by item."""
        (ctx,) = self.matches_many([transcript])
        return ctx, ctx.item_matches

    def matches_many(self, transcripts: list[Transcript], rounds: int = 3) -> list[Context]:
        """`matches` of many calls (each context holds `item_matches`), with what the rules embed batched.

        One forward pass per sentence is cheap only in full batches sorted by length, so the texts the rules
        will ask for are found first and embedded together: the rules run over every call with a stand-in
        vector (similar to nothing) for each text not yet embedded, those texts are embedded in one pass, and
        each call's items are evaluated again from the first item that met a stand-in, until none does (at
        most `rounds` times; then the last re-run embeds what it still needs itself). Only sentences some rule
        reads are embedded (cheap parts such as a question filter or a literal match that settles an item come
        first), and whole-turn texts (`unit: turn`), known only once earlier items matched, join a later round.
        Verdicts equal `matches` call by call."""
        self.warm_up()
        ctxs = [Context(utterances(t), self.embedder, self._exemplars) for t in transcripts]
        for ctx in ctxs:
            ctx.heads = self.heads
            ctx.cross = self.cross
        if self.cross is not None and len(ctxs) > 1:
            for task, speaker in self._cross_reads:
                prefetch(ctxs, task, speaker)
        pending: list[tuple[Context, int]] = [(ctx, 0) for ctx in ctxs]
        if self.embedder is not None and self._semantic:
            dim = next(iter(self._exemplars.values())).shape[1] if self._exemplars else self._dim()
            # texts the encoder holds already (a memo cache) need no stand-in: scoring cached calls stays one pass
            cached = getattr(self.embedder, "cached", None)
            texts = [x for ctx in ctxs for x in (*(u.text for u in ctx.utts), *turn_texts(ctx.utts).values())]
            known = set(cached(texts)) if cached else set[str]()
            for _ in range(rounds):
                probe = _StandIn(self.embedder, known, dim)
                dry = []
                for ctx, start in pending:
                    ctx.embedder = probe
                    ctx.forget_vectors()  # stand-ins from the round before
                    if (stale := self._run(ctx, start, probe)) is not None:
                        dry.append((ctx, stale))
                    ctx.embedder = self.embedder
                pending = dry
                if not probe.asked:
                    break
                self.embedder.embed(list(probe.asked))
                known.update(probe.asked)
        for ctx, start in pending:
            ctx.forget_vectors()
            self._run(ctx, start)
        return ctxs

    def _dim(self) -> int:
        dim = getattr(self.embedder, "dim", None)
        return int(dim) if dim else int(np.asarray(self.embedder.embed(["dim"])).shape[1])

    def _run(self, ctx: Context, start: int = 0, probe: _StandIn | None = None) -> int | None:
        """Evaluate the checklist's items from number `start` on into `ctx.item_matches`. With a `probe` (the
        context's embedder in a dry run), returns the first item that was given a stand-in vector."""
        stale = None
        for k, item in enumerate(self.checklist.items[start:], start):
            used = probe.used if probe else 0
            if item.applies_if and not ctx.item_matches[item.applies_if].hits:
                ctx.item_matches[item.id] = Match()  # not applicable: skip the work (and the embeddings)
                continue
            ctx.threshold_shift = self.threshold_shifts.get(item.id, 0.0)
            ctx.item_matches[item.id] = evaluate(item.detect, ctx, item.speaker,
                                                 exhaustive=item.id in self._read_by_others)
            if probe and stale is None and probe.used > used:
                stale = k
        return stale

    def verdicts(self, transcript: Transcript) -> list[ItemVerdict]:
        return self.judge(self.matches(transcript)[0])

    def verdicts_many(self, transcripts: list[Transcript]) -> list[list[ItemVerdict]]:
        """Verdicts of many calls, their embeddings batched (see `matches_many`)."""
        return [self.judge(ctx) for ctx in self.matches_many(transcripts)]

    def judge(self, ctx: Context) -> list[ItemVerdict]:
        """Verdicts from the matches `matches()` computed."""
        return [self._verdict(item, ctx.item_matches[item.id], ctx) for item in self.checklist.items]

    def score(self, transcript: Transcript) -> CallScore:
        return call_score(self.checklist, self.verdicts(transcript))

    # --- one item --------------------------------------------------------------------------------

    def _confidence(self, item: Item, match: Match, detected: bool) -> float:
        """Probability that the verdict is right: calibrated when the checklist has a fit."""
        s = item_score(match)
        cal = self.checklist.calibration.get(item.id)
        # calibrated: P(behaviour happened | score); uncalibrated: the score itself (≥ 0.5 iff detected)
        p = 1.0 / (1.0 + math.exp(-(cal.slope * s + cal.intercept))) if cal and cal.slope is not None else s
        return round(p if detected else 1.0 - p, 3)

    def _verdict(self, item: Item, match: Match, ctx: Context) -> ItemVerdict:
        if item.applies_if and not ctx.item_matches[item.applies_if].hits:
            gate = self.checklist.item(item.applies_if)
            conf = self._confidence(gate, ctx.item_matches[item.applies_if], False)
            return ItemVerdict(item.id, "na", conf, reason=f"not applicable: no {item.applies_if} in this call")
        for other in item.fail_if:
            if ctx.item_matches[other].hits:
                ev = _evidence(ctx.item_matches[other], ctx, item.evidence_limit)
                conf = self._confidence(self.checklist.item(other), ctx.item_matches[other], True)
                quotes = "; ".join(f'{e.start:.1f}s "{e.quote}"' for e in ev)
                return ItemVerdict(item.id, "fail", conf, ev, f"failed because {other} was found: {quotes}")
        detected = bool(match.hits)
        conf = self._confidence(item, match, detected)
        evidence = _evidence(match, ctx, item.evidence_limit)
        if item.polarity == "present":
            if detected:
                return ItemVerdict(item.id, "pass", conf, evidence, "found")
            unmet = "; ".join(f'{ctx.utts[t].start:.1f}s "{ctx.utts[t].quote}"' for t in match.unmet)
            if unmet:
                return ItemVerdict(item.id, "fail", conf, _evidence(Match(dict.fromkeys(match.unmet, 1.0)), ctx,
                                                                  item.evidence_limit), f"no answer to: {unmet}")
            return ItemVerdict(item.id, "fail", conf, (), f"no {item.speaker} utterance matched")
        if detected:
            return ItemVerdict(item.id, "fail", conf, evidence, "found a forbidden utterance")
        return ItemVerdict(item.id, "pass", conf, (), f"none found in {len(ctx.universe(item.speaker))} "
                                                      f"{item.speaker} sentences")


class _StandIn:
    """The encoder during `matches_many`'s dry run: real vectors for the texts already embedded, a zero vector
    (similar to nothing) for any other, whose text it collects in `asked`; `used` counts the stand-ins given."""

    def __init__(self, embedder: TextEmbedder, known: set[str], dim: int):
        self.name = getattr(embedder, "name", "stand-in")
        self._embedder, self._known, self._dim = embedder, known, dim
        self.asked: dict[str, None] = {}
        self.used = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        known = [t for t in texts if t in self._known]
        vecs = dict(zip(known, np.asarray(self._embedder.embed(known), dtype=np.float32), strict=True)) if known else {}
        new = [t for t in texts if t not in vecs]
        self.asked.update(dict.fromkeys(new))
        self.used += len(new)
        return np.stack([vecs[t] if t in vecs else np.zeros(self._dim, np.float32) for t in texts])


def _evidence(match: Match, ctx: Context, limit: int) -> tuple[Evidence, ...]:
    """The spans that matched: consecutive matched sentences of one turn are one piece of evidence (its quote and
    times cover them all, so a greeting's "Hello. This is Dave from HomeCo." is not cut to "Hello."); the
    `limit` strongest spans, in call order."""
    spans: list[list[int]] = []
    for i in sorted(match.hits):
        if spans and spans[-1][-1] == i - 1 and ctx.utts[i - 1].turn == ctx.utts[i].turn:
            spans[-1].append(i)
        else:
            spans.append([i])
    best = sorted(spans, key=lambda sp: (-max(match.hits[i] for i in sp), sp[0]))[:limit]
    out = []
    for sp in sorted(best, key=lambda sp: sp[0]):
        first, last = ctx.utts[sp[0]], ctx.utts[sp[-1]]
        quote = ""
        for i in sp:
            q = ctx.utts[i].quote
            quote += q if not quote or _CJK_END.search(quote) or _CJK_START.match(q) else " " + q
        out.append(Evidence(segment=first.segment, speaker=first.speaker, quote=quote, start=first.start,
                            end=last.end, score=round(max(match.hits[i] for i in sp), 3)))
    return tuple(out)


_CJK_END = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]$")
_CJK_START = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


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
