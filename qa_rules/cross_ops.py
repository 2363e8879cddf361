"""Operators read by the fine-tuned cross-encoder (models/cross_encoder.py): a whole turn judged with its context.

- `cross: {task: concern}` scores every turn of the item's speaker (or `speaker:`) with the task's pairing: the
  other side's turn before it (`previous_other`: is this customer turn a concern, given what the agent said?), or
  nothing (`none`: is this agent turn dismissive?). Hits: every sentence of a turn whose probability reaches the
  task's threshold (or `threshold:`).
- `cross_answer: {trigger: {item: objection}, task: answer, within_turns: 3}` pairs each concern turn (the
  trigger's turns, on the other side) with each of the speaker's turns after it, within `within_turns`; a concern
  is answered when one reply reaches the threshold. Hits: the best reply of each concern; `unmet`: the concerns
  nobody answered; with `require: every` (default) one unmet concern clears the hits, as `model_answer` does.

Both read whole turns (a concern and its answer are often spread over several sentences), and the checklist names
the file (`model: {cross: FILE, cross_sha256: ...}`), so verdicts record which fine-tuned weights made them.
"""

from __future__ import annotations

import re
from typing import Any

from callqa.qa_rules.operators import (
    OPERATORS,
    Context,
    Match,
    Validator,
    _is_number,
    _speaker,
    answer_concerns,
    evaluate,
    register,
)

_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff，。！？、；：])\s+(?=[\u3400-\u9fff\uf900-\ufaff])")


def _turns(ctx: Context) -> tuple[list[int], dict[int, str], dict[int, str]]:
    """(turn numbers in order, turn -> speaker, turn -> its text as transcribed)."""
    parts: dict[int, list[str]] = {}
    speaker: dict[int, str] = {}
    for u in ctx.utts:
        parts.setdefault(u.turn, []).append(u.quote)
        speaker[u.turn] = u.speaker
    text = {t: _CJK_GAP.sub("", " ".join(p)) for t, p in parts.items()}
    return sorted(parts), speaker, text


def _require_cross(ctx: Context) -> Any:
    cross = getattr(ctx, "cross", None)
    if cross is None:
        raise RuntimeError("this checklist uses the cross-encoder (`cross`, `cross_answer`): name its file "
                           "(model: {cross: FILE}) and load the checklist with it")
    return cross


def _turn_pairs(ctx: Context, pairing: str, speaker: str) -> tuple[list[int], list[tuple[str, str]]]:
    """(turn numbers, (turn text, context) pairs) of every turn of `speaker`, paired as `pairing` says."""
    order, who, text = _turns(ctx)
    mine = [t for t in order if speaker == "any" or who[t] == speaker]
    pairs = []
    for t in mine:
        context = ""
        if pairing == "previous_other":
            context = next((text[p] for p in reversed(order) if p < t and who[p] != who[t]), "")
        pairs.append((text[t], context))
    return mine, pairs


def prefetch(ctxs: list[Context], task: str, speaker: str) -> None:
    """Score the turns `cross: {task}` will read in many calls in one batched pass (length-sorted batches pad
    less than one small batch per call); each call's `turn_probabilities` then reads them from the model's memo."""
    if not ctxs or getattr(ctxs[0], "cross", None) is None:
        return
    cross = ctxs[0].cross
    pairing = cross.task(task).pairing
    cross.probabilities(task, [p for ctx in ctxs for p in _turn_pairs(ctx, pairing, speaker)[1]])


def turn_probabilities(ctx: Context, task: str, speaker: str) -> dict[int, float]:
    """Turn number -> P(task) for every turn of `speaker`, paired as the task was trained; once per call."""
    key = f"cross:{task}@{speaker}"
    if key not in ctx.cross_probs:
        cross = _require_cross(ctx)
        mine, pairs = _turn_pairs(ctx, cross.task(task).pairing, speaker)
        probs = cross.probabilities(task, pairs) if pairs else []
        ctx.cross_probs[key] = {t: float(p) for t, p in zip(mine, probs, strict=True)}
    return ctx.cross_probs[key]


def _check_cross(v: Validator, node: dict, arg: Any, here: str) -> None:
    if not isinstance(arg.get("task"), str) or not arg["task"]:
        v.fail(arg, f"{here}.task", "must name a task of the checklist's cross-encoder file")
    thr = arg.get("threshold", 0.5)
    if not _is_number(thr) or not 0 < thr < 1:
        v.fail(arg, f"{here}.threshold", "must be a number between 0 and 1")
    if "trigger" in arg:
        v.operator(arg["trigger"], f"{here}.trigger")


@register("cross", _check_cross, fields={"task", "threshold", "speaker"}, required={"task"}, costly=True)
def _cross_op(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    speaker = _speaker(arg, speaker)
    task = arg["task"]
    threshold = float(arg.get("threshold", _require_cross(ctx).task(task).threshold))
    probs = turn_probabilities(ctx, task, speaker)
    out = Match()
    best = 0.0
    for t, p in probs.items():
        if p >= threshold:
            for u in ctx.utts:
                if u.turn == t and (within is None or u.index in within):
                    out.hits[u.index] = p
        else:
            best = max(best, p)
    out.near_miss = min(0.98, 2 * best)  # as `model`: a miss's confidence is 1 - the best probability
    return out


@register("cross_answer", _check_cross,
          fields={"trigger", "task", "threshold", "within_turns", "require", "trigger_speaker"},
          required={"trigger", "task"}, defaults={"within_turns": 3, "require": "every"}, costly=True)
def _cross_answer_op(arg: dict, ctx: Context, speaker: str, within_: set[int] | None, exhaustive: bool) -> Match:
    other = "customer" if speaker == "agent" else "agent"
    triggers = evaluate(arg["trigger"], ctx, arg.get("trigger_speaker", other), None)
    cross = _require_cross(ctx)
    task = arg["task"]
    _, _, text = _turns(ctx)

    def score(concern: int, replies: list[int]) -> list[float]:
        return list(cross.probabilities(task, [(text[concern], text[r]) for r in replies]))
    return answer_concerns(ctx, triggers, speaker, arg, OPERATORS["cross_answer"].defaults["within_turns"],
                           float(arg.get("threshold", cross.task(task).threshold)), score, within_)
