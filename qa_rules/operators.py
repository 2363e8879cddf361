"""Detection operators, in one registry: each operator's fields, defaults, validation and evaluation are
declared together (`OPERATORS`), so the checklist parser (checklist.py) and the engine read the same schema.
An operator turns a transcript's utterances into a `Match` (which utterances matched, how strongly);
docs/checklists.md describes every field and `tests/test_docs_examples.py` parses its examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
from callqa.qa_rules.learned import Heads, pair_features, pieces, sentence_features
from callqa.qa_rules.timing import (
    INTERRUPT_MIN_OVERLAP,
    Span,
    interruptions,
    script_language,
    spans,
    speech_rate,
    wait_after,
)
from callqa.qa_rules.utterances import Utterance, turn_texts

from callqa.records import TextEmbedder

_QUESTION = re.compile(
    r"[?？]|[吗呢么嘛][。，,!！]?$|(^|[，,]\s*)(what|how|who|whom|whose|where|when|which|why|do|does|did|are|is|was|"
    r"were|would|could|can|will|shall|should|have|has)\b[^.!]*$",
    re.IGNORECASE,
)
REGEX_STRENGTH = 0.9  # how sure a literal match is, before calibration
DEFAULT_THRESHOLD = 0.85
SPEAKERS = ("agent", "customer", "any")


def walk_operators(op: Any) -> Iterator[tuple[str, Any]]:
    """(operator name, argument) of `op` and of everything nested inside it, depth first in file order."""
    if isinstance(op, dict):
        for k, v in op.items():
            yield k, v
            yield from walk_operators(v)
    elif isinstance(op, list):
        for v in op:
            yield from walk_operators(v)


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
        self._utt_vecs: dict[int, np.ndarray] = {}
        self._turn_vecs: dict[tuple[str, int], np.ndarray] = {}
        self._exemplars = exemplar_cache
        self.item_matches: dict[str, Match] = {}
        self.threshold_shift = 0.0  # set per item from the checklist's calibration
        self.heads: Heads | None = None  # the checklist's trained heads (operators `model`, `model_answer`)
        self.cross: Any = None  # the checklist's fine-tuned cross-encoder (operators `cross`, `cross_answer`)
        self.cross_probs: dict[str, dict[int, float]] = {}  # its turn probabilities, per task and speaker
        self._sentence_probs: dict[str, dict[int, float]] = {}
        self._spans: list[Span] | None = None

    def spans(self) -> list[Span]:
        """The call's segments in time order (rebuilt from the utterances; the timing operators read them)."""
        if self._spans is None:
            self._spans = spans(self.utts)
        return self._spans

    def universe(self, speaker: str, within: set[int] | None = None) -> list[int]:
        return [u.index for u in self.utts
                if (speaker == "any" or u.speaker == speaker) and (within is None or u.index in within)]

    def utt_vectors(self, idx: list[int]) -> np.ndarray:
        """Embeddings of the utterances `idx`, computed only when a semantic rule needs them."""
        missing = [i for i in idx if i not in self._utt_vecs]
        if missing:
            self._utt_vecs.update(zip(missing, self._embed([self.utts[i].text for i in missing]), strict=True))
        return np.stack([self._utt_vecs[i] for i in idx])

    def turn_vectors(self, speaker: str, within: set[int] | None = None) -> tuple[list[int], np.ndarray]:
        """(turn numbers, one embedding per whole turn) for `speaker`'s turns that hold a `within` utterance."""
        texts = turn_texts(self.utts, speaker)
        if within is not None:
            wanted = {self.utts[i].turn for i in within}
            texts = {t: x for t, x in texts.items() if t in wanted}
        missing = [t for t in texts if (speaker, t) not in self._turn_vecs]
        if missing:
            vecs = self._embed([texts[t] for t in missing])
            self._turn_vecs.update({(speaker, t): v for t, v in zip(missing, vecs, strict=True)})
        turns = list(texts)
        return turns, (np.stack([self._turn_vecs[(speaker, t)] for t in turns]) if turns else np.zeros((0, 1)))

    def forget_vectors(self) -> None:
        """Drop the sentence and turn embeddings held for this call (they are asked of the encoder again)."""
        self._utt_vecs.clear()
        self._turn_vecs.clear()
        self._sentence_probs.clear()

    def call_turns(self) -> tuple[list[int], list[str], np.ndarray]:
        """(turn numbers, speakers, one embedding per turn) of every turn of the call, in order."""
        turns, vecs = self.turn_vectors("any")
        speaker = {u.turn: u.speaker for u in self.utts}
        return turns, [speaker[t] for t in turns], vecs

    def require_heads(self) -> Heads:
        if self.heads is None:
            raise RuntimeError("this checklist uses trained heads (`model`, `model_answer`): load it with its heads")
        return self.heads

    def sentence_probabilities(self, head: str) -> dict[int, float]:
        """Utterance index → the calibrated probability `head` gives that sentence (read with its whole turn and
        the turn before), for every sentence of the call; computed once per head and call."""
        if head not in self._sentence_probs:
            heads = self.require_heads()
            turns, speakers, vecs = self.call_turns()
            probs: list[float] = []
            if turns and self.utts:
                row = {t: k for k, t in enumerate(turns)}
                idx = [u.index for u in self.utts]
                feats = sentence_features(self.utt_vectors(idx), [row[u.turn] for u in self.utts], vecs, speakers)
                probs = list(heads.head(head).probability(feats))
            self._sentence_probs[head] = {u.index: float(p) for u, p in zip(self.utts, probs, strict=False)}
        return self._sentence_probs[head]

    def piece_probabilities(self, head: str, speaker: str) -> dict[int, float]:
        """Utterance index → the best probability `head` gives the sentence or one of its clauses read alone,
        for `speaker`'s sentences (heads fitted from an item's examples, `unit: pieces`); once per head and call."""
        key = f"{head}@{speaker}"
        if key not in self._sentence_probs:
            model = self.require_heads().head(head)
            utts = [self.utts[i] for i in self.universe(speaker)]
            per_utt = [pieces(u.text) or [u.text] for u in utts]
            unique = list(dict.fromkeys(t for ps in per_utt for t in ps))
            prob = dict(zip(unique, model.probability(self._embed(unique)) if unique else [], strict=True))
            self._sentence_probs[key] = {u.index: float(max(prob[t] for t in ps))
                                         for u, ps in zip(utts, per_utt, strict=True)}
        return self._sentence_probs[key]

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


# Whisper often ends Mandarin questions with "。": an interrogative in the last clause makes a question
_ZH_QUESTION = re.compile(r"(几[个口位岁次天周年点种样]|多少|多大|多久|多长|什么|哪|谁|怎么|如何|是否|有没有|是不是|"
                          r"能不能|要不要|会不会|还是)[^，,；;]*[。.]?$")


# English ASR runs clauses together without punctuation ("great so how far's your commute and is it hilly"):
# an interrogative clause anywhere makes a question; a wh-word then an auxiliary and a subject, or an
# auxiliary before "you"/"somebody" (statements put the subject first: "you are", "somebody is")
_EN_RUN_ON_QUESTION = re.compile(
    r"\b(what|how|who|where|when|which|why)(\s+\w+){0,2}?('s|'re|\s+(do|does|did|are|is|was|were|would|will|"
    r"can|could|should|have|has))\s+(you|your|it|they|their|he|she|we|the|this|that|these|those|there|somebody|"
    r"someone|anyone|anybody)\b|\b(do|does|did|are|were|would|will|can|could|have|has|is)\s+(you|your|"
    r"somebody|someone|anyone|anybody)\b",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    clause = text.rstrip(" ，,")  # a question clause split off a longer sentence keeps its comma
    if _QUESTION.search(clause):
        return True
    if clause.endswith(("！", "!")):
        return False
    return bool(_ZH_QUESTION.search(clause)) or (clause.isascii() and not clause.endswith(".")
                                                 and bool(_EN_RUN_ON_QUESTION.search(clause)))


def _costly(op: Any) -> bool:
    """Whether an operator (or one inside it) embeds text: evaluated last, on fewer candidates.
    Memoised per operator object (checklists are immutable once loaded; the memo keeps `op` alive, so its
    id is not reused)."""
    hit = _COSTLY.get(id(op))
    if hit is not None and hit[0] is op:
        return hit[1]
    out = any(k in OPERATORS and OPERATORS[k].costly for k, _ in walk_operators(op))
    if len(_COSTLY) > 100_000:
        _COSTLY.clear()
    _COSTLY[id(op)] = (op, out)
    return out


_COSTLY: dict[int, tuple[Any, bool]] = {}


def evaluate(op: dict[str, Any], ctx: Context, speaker: str, within: set[int] | None = None,
             exhaustive: bool = True) -> Match:
    """Evaluate one detection operator over the utterances of `speaker` (only those in `within`, if given:
    `all` passes what its cheap parts matched to its costly ones, so fewer sentences are embedded).

    `exhaustive=False` says the caller needs only whether anything matched (and some evidence), not every
    match: an `any` whose cheap parts already matched then skips its costly (embedding) parts. The engine
    asks for every match only of items that other items read through `item:`.
    """
    ((name, arg),) = op.items()
    spec = OPERATORS.get(name)
    if spec is None:
        raise ValueError(f"unknown operator {name!r}")
    return spec.evaluate(arg, ctx, speaker, within, exhaustive)


# --- the registry ---------------------------------------------------------------------------------


class Validator(Protocol):
    """What an operator's validation may ask of the checklist parser (checklist._Validator)."""

    def fail(self, node: Any, where: str, msg: str) -> None: ...

    def keys(self, node: dict, where: str, required: set[str], optional: set[str]) -> None: ...

    def operator(self, node: Any, where: str) -> None: ...


Evaluate = Callable[[Any, Context, str, "set[int] | None", bool], Match]
Validate = Callable[[Validator, dict, Any, str], None]


@dataclass(frozen=True)
class OperatorSpec:
    """One operator: its fields (None: it takes a list or a scalar, not a mapping), which are required, their
    defaults, whether it embeds text (`costly`), how its argument is checked and how it is evaluated."""

    name: str
    evaluate: Evaluate
    validate: Validate
    fields: frozenset[str] | None = None
    required: frozenset[str] = frozenset()
    defaults: dict[str, Any] = field(default_factory=dict)
    costly: bool = False


OPERATORS: dict[str, OperatorSpec] = {}


def register(name: str, validate: Validate, fields: set[str] | None = None, required: set[str] = frozenset(),
             defaults: dict[str, Any] | None = None, costly: bool = False) -> Callable[[Evaluate], Evaluate]:
    def deco(fn: Evaluate) -> Evaluate:
        def checked(v: Validator, node: dict, arg: Any, here: str) -> None:
            if fields is not None:
                if not isinstance(arg, dict):
                    v.fail(node, here, f"takes a mapping with {', '.join(sorted(required or fields))}")
                v.keys(arg, here, set(required), set(fields) - set(required))
                if "speaker" in fields and arg.get("speaker", "agent") not in SPEAKERS:
                    v.fail(arg, f"{here}.speaker", f"must be one of {', '.join(SPEAKERS)}")
                if "trigger_speaker" in fields and arg.get("trigger_speaker", "customer") not in SPEAKERS:
                    v.fail(arg, f"{here}.trigger_speaker", f"must be one of {', '.join(SPEAKERS)}")
                for key in ("within_turns", "first_turns", "last_turns"):
                    val = arg.get(key, 1)
                    if key in fields and (not isinstance(val, int) or isinstance(val, bool) or val < 1):
                        v.fail(arg, f"{here}.{key}", "must be a positive integer")
                if "require" in fields and arg.get("require", "every") not in ("every", "any"):
                    v.fail(arg, f"{here}.require", "must be 'every' or 'any'")
            validate(v, node, arg, here)

        OPERATORS[name] = OperatorSpec(name, fn, checked, None if fields is None else frozenset(fields),
                                       frozenset(required), dict(defaults or {}), costly)
        return fn
    return deco


def _no_check(v: Validator, node: dict, arg: Any, here: str) -> None:
    return None


def _check_list_of_operators(v: Validator, node: dict, arg: Any, here: str) -> None:
    if not isinstance(arg, list) or not arg:
        v.fail(node, here, "takes a non-empty list of operators")
    for i, sub in enumerate(arg):
        v.operator(sub, f"{here}[{i}]")


def _check_nested(*keys: str) -> Validate:
    def check(v: Validator, node: dict, arg: Any, here: str) -> None:
        for key in keys:
            v.operator(arg[key], f"{here}.{key}")
    return check


def _check_texts(key: str, regex: bool) -> Validate:
    def check(v: Validator, node: dict, arg: Any, here: str) -> None:
        if isinstance(arg, dict):
            v.keys(arg, here, {key}, {"speaker"})
            if arg.get("speaker", "agent") not in SPEAKERS:
                v.fail(arg, f"{here}.speaker", f"must be one of {', '.join(SPEAKERS)}")
        values = arg.get(key) if isinstance(arg, dict) else arg
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not values:
            v.fail(node, here, f"needs a non-empty list of {key}")
        for pattern in values if regex else ():
            try:
                re.compile(str(pattern))
            except re.error as e:
                v.fail(node, here, f"bad regular expression {pattern!r}: {e}")
    return check


def _is_number(val: Any) -> bool:
    return isinstance(val, int | float) and not isinstance(val, bool)


def _check_semantic(v: Validator, node: dict, arg: Any, here: str) -> None:
    if not isinstance(arg["positive"], list) or not arg["positive"]:
        v.fail(arg, f"{here}.positive", "needs a non-empty list of exemplar sentences")
    if not isinstance(arg.get("negative", []), list):
        v.fail(arg, f"{here}.negative", "must be a list of exemplar sentences")
    for key, lo in (("threshold", 0.0), ("margin", -1.0)):
        val = arg.get(key, DEFAULT_THRESHOLD if key == "threshold" else 0.0)
        if not _is_number(val) or not lo < val < 1:
            v.fail(arg, f"{here}.{key}", f"must be a number between {lo:g} and 1")
    if arg.get("unit", "sentence") not in ("sentence", "turn"):
        v.fail(arg, f"{here}.unit", "must be 'sentence' or 'turn'")


def _check_model(v: Validator, node: dict, arg: Any, here: str) -> None:
    if not isinstance(arg["head"], str) or not arg["head"]:
        v.fail(arg, f"{here}.head", "must name a head of the checklist's heads file")
    thr = arg.get("threshold", 0.5)
    if not _is_number(thr) or not 0 < thr < 1:
        v.fail(arg, f"{here}.threshold", "must be a number between 0 and 1")
    if "trigger" in arg:
        v.operator(arg["trigger"], f"{here}.trigger")


def _check_type(kind: type, what: str) -> Validate:
    def check(v: Validator, node: dict, arg: Any, here: str) -> None:
        if not isinstance(arg, kind):
            v.fail(node, here, f"takes {what}")
    return check


@register("all", _check_list_of_operators)
def _all(arg: list, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    """Every part matched the same sentence."""
    parts: list[Match] = []
    cand = within
    subs = sorted(arg, key=_costly)
    for k, sub in enumerate(subs):
        # only the last part may stop early: an earlier part's matches are narrowed by the later ones
        parts.append(evaluate(sub, ctx, speaker, cand, exhaustive or k < len(subs) - 1))
        cand = set(parts[-1].hits) if cand is None else cand & set(parts[-1].hits)
        if not cand:
            break
    if not cand:
        return Match(near_miss=max(p.near_miss for p in parts))
    return Match({i: min(p.hits[i] for p in parts) for i in cand}, near_miss=max(p.near_miss for p in parts))


@register("any", _check_list_of_operators)
def _any(arg: list, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    """Any part matched."""
    out = Match()
    for sub in sorted(arg, key=_costly):
        if out.hits and not exhaustive and _costly(sub):
            break  # matched already: the costly parts could add matches but not change the answer
        rest = set(ctx.universe("any", within)) - set(out.hits)  # already matched: no need to embed
        m = evaluate(sub, ctx, speaker, rest if _costly(sub) and out.hits else within, exhaustive)
        for i, s in m.hits.items():
            out.hits[i] = max(s, out.hits.get(i, 0.0))
        out.near_miss = max(out.near_miss, m.near_miss)
    return out


@register("same_turn", _check_list_of_operators)
def _same_turn_op(arg: list, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return _same_turn([evaluate(sub, ctx, speaker, within) for sub in arg], ctx)


@register("not", lambda v, node, arg, here: v.operator(arg, here))
def _not(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    inner = evaluate(arg, ctx, speaker, within)
    return Match({i: 1.0 for i in ctx.universe(speaker, within) if i not in inner.hits})


@register("keyword", _check_texts("words", regex=False))
def _keyword(arg: Any, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    words = [w.lower() for w in _as_list(arg, "words")]
    return Match({i: REGEX_STRENGTH for i in ctx.universe(_speaker(arg, speaker), within)
                  if any(w in ctx.utts[i].text.lower() for w in words)})


@register("regex", _check_texts("patterns", regex=True))
def _regex(arg: Any, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    pats = [_compile(p) for p in _as_list(arg, "patterns")]
    return Match({i: REGEX_STRENGTH for i in ctx.universe(_speaker(arg, speaker), within)
                  if any(p.search(ctx.utts[i].text) for p in pats)})


@register("question", _check_type(bool, "true or false"))
def _question(arg: bool, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return Match({i: 1.0 for i in ctx.universe(speaker, within) if is_question(ctx.utts[i].text) == arg})


@register("position", _no_check, fields={"first_turns", "last_turns", "speaker"})
def _position(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    first, last = arg.get("first_turns"), arg.get("last_turns")
    idx = ctx.universe(_speaker(arg, speaker))
    n_turns = max((ctx.utts[i].speaker_turn for i in idx), default=-1) + 1
    return Match({i: 1.0 for i in idx if within is None or i in within
                  if (first is None or ctx.utts[i].speaker_turn < first)
                  and (last is None or ctx.utts[i].speaker_turn >= n_turns - last)})


@register("item", _check_type(str, "an item id"))
def _item(arg: str, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return ctx.item_matches.get(arg, Match())


@register("semantic", _check_semantic, fields={"positive", "negative", "threshold", "margin", "speaker", "unit"},
          required={"positive"}, defaults={"threshold": DEFAULT_THRESHOLD, "margin": 0.0, "unit": "sentence"},
          costly=True)
def _semantic_op(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return _semantic(arg, ctx, _speaker(arg, speaker), within)


def _check_sequence(v: Validator, node: dict, arg: Any, here: str) -> None:
    _check_nested("trigger", "response")(v, node, arg, here)
    _check_seconds(v, arg, here, "within_seconds", required=False)


@register("sequence", _check_sequence,
          fields={"trigger", "response", "within_turns", "within_seconds", "require", "trigger_speaker"},
          required={"trigger", "response"}, defaults={"within_turns": 2, "require": "every"}, costly=True)
def _sequence_op(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return _sequence(arg, ctx, speaker, within)


@register("model", _check_model, fields={"head", "threshold", "speaker"}, required={"head"}, costly=True)
def _model_op(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return _model(arg, ctx, _speaker(arg, speaker), within)


@register("model_answer", _check_model,
          fields={"trigger", "head", "threshold", "within_turns", "require", "trigger_speaker"},
          required={"trigger", "head"}, defaults={"within_turns": 3, "require": "every"}, costly=True)
def _model_answer_op(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    return _model_answer(arg, ctx, speaker, within)


# --- timing: segment start/end times (qa_rules/timing.py) ----------------------------------------------


def _check_seconds(v: Validator, arg: dict, here: str, key: str, required: bool = True,
                   allow_zero: bool = False) -> None:
    if key not in arg:
        if required:
            v.fail(arg, f"{here}.{key}", "is required")
        return
    val = arg[key]
    if not _is_number(val) or val < 0 or (val == 0 and not allow_zero):
        v.fail(arg, f"{here}.{key}", f"must be a {'non-negative' if allow_zero else 'positive'} number of seconds")


def _other_side(speaker: str) -> str:
    return "customer" if speaker == "agent" else "agent" if speaker == "customer" else "any"


def _check_silence_after(v: Validator, node: dict, arg: Any, here: str) -> None:
    _check_seconds(v, arg, here, "seconds")
    if "trigger" in arg:
        v.operator(arg["trigger"], f"{here}.trigger")


@register("silence_after", _check_silence_after, fields={"seconds", "trigger", "trigger_speaker"},
          required={"seconds"})
def _silence_after(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    """The trigger speaker's sentences (those `trigger` matches; every one without it) whose turn is followed by
    more than `seconds` of silence before the other side speaks: a customer question left hanging. A turn the
    other side never answers (the call ends) is not judged."""
    trig_speaker = arg.get("trigger_speaker", _other_side(speaker))
    cand = (set(evaluate(arg["trigger"], ctx, trig_speaker, within).hits) if "trigger" in arg
            else set(ctx.universe(trig_speaker, within)))
    limit = float(arg["seconds"])
    out = Match()
    segs = ctx.spans()
    for k, seg in enumerate(segs):
        hit = [i for i in seg.utts if i in cand]
        if not hit:
            continue
        gap = wait_after(segs, k)
        if gap is not None and gap > limit:
            out.hits.update(dict.fromkeys(hit, 1.0))
    return out


def _check_interrupts(v: Validator, node: dict, arg: Any, here: str) -> None:
    _check_seconds(v, arg, here, "seconds", required=False, allow_zero=True)


@register("interrupts", _check_interrupts, fields={"seconds", "speaker"},
          defaults={"seconds": INTERRUPT_MIN_OVERLAP})
def _interrupts(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    """The speaker's sentences in segments that start while the other side's segment still runs more than
    `seconds` past that start (the test `callqa.pipelines.reports.call_metrics` counts interruptions with)."""
    who = _speaker(arg, speaker)
    segs = ctx.spans()
    out = Match()
    for k in interruptions(segs, float(arg.get("seconds", INTERRUPT_MIN_OVERLAP))):
        if who in ("any", segs[k].speaker):
            out.hits.update({i: 1.0 for i in segs[k].utts if within is None or i in within})
    return out


RATE_LANGUAGES = ("zh", "en")


def _check_speech_rate(v: Validator, node: dict, arg: Any, here: str) -> None:
    ranges = [(here, arg)] + [(f"{here}.{lang}", arg[lang]) for lang in RATE_LANGUAGES if lang in arg]
    for where, rng in ranges:
        if where != here:
            if not isinstance(rng, dict):
                v.fail(arg, where, "takes a mapping with min and/or max")
            v.keys(rng, where, set(), {"min", "max"})
        for key in ("min", "max"):
            if key in rng and (not _is_number(rng[key]) or rng[key] <= 0):
                v.fail(rng, f"{where}.{key}", "must be a positive number of words per minute")
        if "min" in rng and "max" in rng and _is_number(rng["min"]) and _is_number(rng["max"]) \
                and rng["min"] >= rng["max"]:
            v.fail(rng, where, "min must be below max")
    if not any(k in rng for _, rng in ranges for k in ("min", "max")):
        v.fail(arg, here, "needs min and/or max (words per minute)")
    _check_seconds(v, arg, here, "min_talk_seconds", required=False, allow_zero=True)


@register("speech_rate", _check_speech_rate, fields={"min", "max", "zh", "en", "speaker", "min_talk_seconds"},
          defaults={"min_talk_seconds": 20.0})
def _speech_rate(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    """Words per minute of the speaker's speaking time (a Chinese character counts as a word) outside
    [min, max]; `zh:`/`en:` ranges replace them for calls whose speech is mostly Chinese characters / Latin words.
    Hits: the speaker's segments beyond the range on the same side (all the speaker's sentences when no single
    segment is); nothing below `min_talk_seconds` of speech (too little to judge)."""
    who = _speaker(arg, speaker)
    segs = [s for s in ctx.spans() if who in ("any", s.speaker)]
    _, talk, rate = speech_rate(segs, who)
    if rate is None or talk < float(arg.get("min_talk_seconds", OPERATORS["speech_rate"].defaults["min_talk_seconds"])):
        return Match()
    rng = arg.get(script_language(" ".join(s.text for s in segs)), {})
    lo, hi = rng.get("min", arg.get("min")), rng.get("max", arg.get("max"))
    if lo is not None and rate < lo:
        def beyond(r: float) -> bool:
            return r < lo
    elif hi is not None and rate > hi:
        def beyond(r: float) -> bool:
            return r > hi
    else:
        return Match()
    per_seg = [s for s in segs if (r := speech_rate([s], who)[2]) is not None and beyond(r)]
    return Match({i: 1.0 for s in (per_seg or segs) for i in s.utts if within is None or i in within})


def _check_within_seconds(v: Validator, node: dict, arg: Any, here: str) -> None:
    _check_seconds(v, arg, here, "start", required=False, allow_zero=True)
    _check_seconds(v, arg, here, "end")
    if _is_number(arg.get("start", 0)) and _is_number(arg.get("end")) and arg.get("start", 0) >= arg["end"]:
        v.fail(arg, here, "start must be before end")


@register("within_seconds", _check_within_seconds, fields={"start", "end", "speaker"}, required={"end"},
          defaults={"start": 0.0})
def _within_seconds(arg: dict, ctx: Context, speaker: str, within: set[int] | None, exhaustive: bool) -> Match:
    """The speaker's sentences whose segment starts between `start` and `end` seconds from the call's start."""
    lo, hi = float(arg.get("start", 0.0)), float(arg["end"])
    return Match({i: 1.0 for i in ctx.universe(_speaker(arg, speaker), within) if lo <= ctx.utts[i].start <= hi})


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


def _semantic(arg: dict[str, Any], ctx: Context, speaker: str, within: set[int] | None = None) -> Match:
    """Similarity to positive exemplars, above `threshold` and ahead of the negatives by `margin`.

    `unit: turn` compares each whole turn (all its sentences) and marks every sentence of a matching
    turn, for judgements about a reply as a whole (did the agent answer the objection?).
    """
    if arg.get("unit", "sentence") == "turn":
        keys, vecs = ctx.turn_vectors(speaker, within)
    else:
        keys = ctx.universe(speaker, within)
        vecs = ctx.utt_vectors(keys) if keys else None
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
        strength = {u.index: strength[u.turn] for u in ctx.utts if u.turn in strength and u.speaker == speaker
                    and (within is None or u.index in within)}
    return Match(strength, near_miss=near)


def _sequence(arg: dict[str, Any], ctx: Context, speaker: str, within_: set[int] | None = None) -> Match:
    """A trigger (by default on the other speaker's side) answered within `within_turns` turns and/or within
    `within_seconds` of the end of the trigger's turn (given alone, `within_seconds` puts no limit on turns)."""
    other = "customer" if speaker == "agent" else "agent" if speaker == "customer" else "any"
    triggers = evaluate(arg["trigger"], ctx, arg.get("trigger_speaker", other), None)
    seconds = arg.get("within_seconds")
    turns = arg.get("within_turns", None if seconds is not None else OPERATORS["sequence"].defaults["within_turns"])
    turn_end: dict[int, float] = {}
    for u in ctx.utts:
        turn_end[u.turn] = max(u.end, turn_end.get(u.turn, u.end))

    def answers_in_time(turn: int, u: Utterance) -> bool:
        return (turn < u.turn and (turns is None or u.turn <= turn + int(turns))
                and (seconds is None or u.start - turn_end[turn] <= float(seconds)))

    trigger_turn_nums = {ctx.utts[t].turn for t in triggers.hits}
    window = {u.index for u in ctx.utts if any(answers_in_time(t, u) for t in trigger_turn_nums)}
    responses = evaluate(arg["response"], ctx, speaker, window if within_ is None else window & within_)
    out = Match(near_miss=responses.near_miss)
    trigger_turns = sorted({ctx.utts[t].turn: t for t in sorted(triggers.hits, reverse=True)}.items())
    for turn, t in trigger_turns:
        answers = [r for r in responses.hits if answers_in_time(turn, ctx.utts[r])]
        if answers:
            for r in answers:
                out.hits[r] = max(responses.hits[r], out.hits.get(r, 0.0))
        else:
            out.unmet.append(t)
    if arg.get("require", OPERATORS["sequence"].defaults["require"]) == "every" and out.unmet:
        out.hits = {}
    return out


def _model(arg: dict[str, Any], ctx: Context, speaker: str, within: set[int] | None = None) -> Match:
    """A trained head judges each sentence of `speaker` (seen with its whole turn and the turn before): hits are
    the sentences that reach the threshold, with their probability. `near_miss` is scaled so that the
    `item_score` of a miss is the best sentence's probability, which makes the verdict's confidence 1 - p."""
    head = ctx.require_heads().head(arg["head"])
    threshold = float(arg.get("threshold", head.threshold))
    probs = (ctx.piece_probabilities(arg["head"], speaker) if head.unit == "pieces"
             else ctx.sentence_probabilities(arg["head"]))
    out = Match()
    best = 0.0
    for i in ctx.universe(speaker, within):
        p = probs.get(i, 0.0)
        if p >= threshold:
            out.hits[i] = p
        else:
            best = max(best, p)
    out.near_miss = min(0.98, 2 * best)
    return out


def _model_answer(arg: dict[str, Any], ctx: Context, speaker: str, within_: set[int] | None = None) -> Match:
    """Every concern (the `trigger` matches, on the other side) answered by one of `speaker`'s next turns, as a
    trained pair head judges (concern turn, reply turn). Hits: the best reply to each concern; `unmet`: the
    concerns no reply answers. With `require: every` (default) one unmet concern clears the hits."""
    other = "customer" if speaker == "agent" else "agent"
    triggers = evaluate(arg["trigger"], ctx, arg.get("trigger_speaker", other), None)
    head = ctx.require_heads().head(arg["head"])
    turns, _, vecs = ctx.call_turns()
    row = {t: k for k, t in enumerate(turns)}

    def score(concern: int, replies: list[int]) -> list[float]:
        return list(head.probability(pair_features(np.repeat(vecs[[row[concern]]], len(replies), 0),
                                                   vecs[[row[r] for r in replies]])))
    return answer_concerns(ctx, triggers, speaker, arg, OPERATORS["model_answer"].defaults["within_turns"],
                           float(arg.get("threshold", head.threshold)), score, within_)


def answer_concerns(ctx: Context, triggers: Match, speaker: str, arg: dict[str, Any], default_within: int,
                    threshold: float, score: Callable[[int, list[int]], list[float]],
                    within_: set[int] | None = None) -> Match:
    """The sequence logic of "every concern answered", whatever judges a (concern turn, reply turn) pair: for each
    turn the `triggers` matched, `score(concern_turn, reply_turns)` rates `speaker`'s next `within_turns` turns;
    hits are the best reply of each answered concern, `unmet` the concerns no reply reaches `threshold` for, and
    with `require: every` (default) one unmet concern clears the hits. `model_answer` and `cross_answer` share it."""
    within = int(arg.get("within_turns", default_within))
    who = {u.turn: u.speaker for u in ctx.utts}
    order = sorted(who)
    first_utt: dict[int, int] = {}
    for t in sorted(triggers.hits):
        first_utt.setdefault(ctx.utts[t].turn, t)
    out = Match()
    worst = 1.0
    for turn, utt in sorted(first_utt.items()):
        replies = [r for r in order if turn < r <= turn + within and who[r] == speaker]
        if not replies:
            out.unmet.append(utt)
            worst = 0.0
            continue
        probs = score(turn, replies)
        k = max(range(len(replies)), key=lambda j: probs[j])
        p = float(probs[k])
        worst = min(worst, p)
        if p >= threshold:
            for u in ctx.utts:
                if u.turn == replies[k] and (within_ is None or u.index in within_):
                    out.hits[u.index] = max(p, out.hits.get(u.index, 0.0))
        else:
            out.unmet.append(utt)
    if arg.get("require", "every") == "every" and out.unmet:
        out.hits = {}
    out.near_miss = min(0.98, 2 * worst) if out.unmet else 0.0
    return out
