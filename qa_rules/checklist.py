"""Checklists as data: the YAML schema, safe loading and validation with errors that name the
file, line and field.

A checklist file::

    id: sales_core
    version: 1
    title: {zh: 销售通话核心检查, en: Sales call core checks}
    items:
      - id: greeting
        title: {zh: 问候并自报姓名, en: Greets and gives own name}
        description: {zh: ..., en: ...}
        speaker: agent            # whose turns the rule reads: agent | customer | any
        weight: 1                 # points toward the call score (0 = tracked, not scored)
        critical: false           # a failed critical item fails the whole call
        polarity: present         # present: pass when detected; absent: pass when NOT detected
        applies_if: objection     # optional: verdict is `na` unless that item was detected
        fail_if: [forbidden_phrase]  # optional: fail when any of these items was detected
        detect: {all: [{position: {first_turns: 1}}, {regex: ["您好|你好"]}]}

Detection operators (one key each, combinable): ``all``, ``any``, ``same_turn``, ``not``, ``keyword``,
``regex``, ``semantic``, ``position``, ``question``, ``item``, ``sequence``, and the trained ``model`` and
``model_answer`` (heads named by a top-level ``model: {heads: FILE, sha256: HEX}``). An optional top-level
``calibration`` section (written by ``callqa calibrate``) holds fitted threshold shifts and
confidence curves per item. See docs/checklists.md for every field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from callqa.qa_rules import cross_ops  # noqa: F401  (registers `cross`/`cross_answer` into OPERATORS)
from callqa.qa_rules.operators import OPERATORS, SPEAKERS, walk_operators

CHECKLIST_DIR = Path(__file__).parent / "checklists"
DEFAULT_CHECKLIST = "sales_core"  # the bundled checklist every command uses unless told otherwise
POLARITIES = ("present", "absent")
# where coaching looks when an item failed with nothing to quote (`coaching: {miss: ...}`)
MISS_CONTEXTS = ("opening", "after_trigger", "first_reply", "longest_turn")
REVIEW_AGREEMENT = ("kappa", "ac1")  # the statistic whose bootstrap lower bound opens the auto-accept gate

class ChecklistError(ValueError):
    """A checklist file that does not follow the schema; the message names file, line and field."""


@dataclass(frozen=True)
class Item:
    id: str
    title: dict[str, str]
    description: dict[str, str]
    speaker: str
    weight: float
    critical: bool
    polarity: str
    applies_if: str | None
    detect: dict[str, Any]
    fail_if: tuple[str, ...] = ()
    evidence_limit: int = 3
    # snippets that must pass / must fail, in the team's words: `callqa train --checklist` fits the item's
    # head from them (`model` with `unit: pieces`) and `callqa rules test` checks them
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coaching: dict[str, str] = field(default_factory=dict)  # e.g. {miss: first_reply}: see `miss_context`
    # the review workstation's auto-accept gate (`review: {auto_accept_min_lower: 0.8}`), defaults filled in:
    # {auto_accept_min_lower, agreement: kappa|ac1, min_reviewed}; empty: no gate (docs/app.md)
    review: dict[str, Any] = field(default_factory=dict)

    @property
    def miss_context(self) -> str:
        """Where a trainer should look when the item failed with nothing to quote (its behaviour never happened):
        `coaching.miss` when the checklist says; else the trigger and the reply for an item that applies only
        after another (`applies_if`), the agent's opening for an item read in the first turns (`position`), and
        the agent's longest turn otherwise."""
        if self.coaching.get("miss"):
            return self.coaching["miss"]
        if self.applies_if:
            return "after_trigger"
        if any(op == "position" and isinstance(arg, dict) and arg.get("first_turns")
               for op, arg in walk_operators(self.detect)):
            return "opening"
        return "longest_turn"


@dataclass(frozen=True)
class ItemCalibration:
    """What `callqa calibrate` fitted for one item (the checklist's `calibration` section)."""

    threshold_shift: float = 0.0  # added to every semantic threshold of the item
    slope: float | None = None  # confidence = sigmoid(slope * item_score + intercept)
    intercept: float = 0.0
    fit: dict[str, Any] = field(default_factory=dict)  # provenance and metrics, kept as written


@dataclass(frozen=True)
class Checklist:
    id: str
    version: int
    title: dict[str, str]
    items: tuple[Item, ...]
    source: str = ""  # the YAML text, stored with verdicts so reports read the version they were made with
    description: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, ItemCalibration] = field(default_factory=dict)
    heads_path: str | None = None  # the trained heads file (`model.heads`, resolved against the checklist's folder)
    heads_sha256: str | None = None  # ... and the SHA-256 its bytes must have
    cross_path: str | None = None  # the fine-tuned cross-encoder file (`model.cross`), resolved the same way
    cross_sha256: str | None = None
    # product terms shown to the speech decoder for every call scored with this checklist (docs/asr.md "Decoder hints")
    vocabulary: tuple[str, ...] = ()

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    @property
    def item_ids(self) -> list[str]:
        return [it.id for it in self.items]


# --- loading ------------------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_lines(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [_strip_lines(v) for v in obj]
    return obj


class _Validator:
    def __init__(self, source: str):
        self.source = source

    def fail(self, node: Any, where: str, msg: str) -> None:
        line = node.get("__line__") if isinstance(node, dict) else None
        at = f"{self.source}:{line}" if line else self.source
        raise ChecklistError(f"{at}: {where}: {msg}")

    def keys(self, node: dict, where: str, required: set[str], optional: set[str]) -> None:
        present = set(node) - {"__line__"}
        for k in sorted(required - present):
            self.fail(node, where, f"missing required field '{k}'")
        for k in sorted(present - required - optional):
            self.fail(node, where, f"unknown field '{k}' (allowed: {', '.join(sorted(required | optional))})")

    def text(self, node: dict, key: str, where: str, required: bool = True) -> dict[str, str]:
        val = node.get(key)
        if val is None and not required:
            return {}
        if isinstance(val, str):
            return {"en": val}
        if not isinstance(val, dict) or not any(k != "__line__" for k in val):
            self.fail(node, f"{where}.{key}", "must be a text or a mapping of language → text, e.g. {zh: ..., en: ...}")
        return {k: str(v) for k, v in val.items() if k != "__line__"}

    def operator(self, node: Any, where: str) -> None:
        """Check one detection operator (and what it nests) against its entry in the operator registry."""
        if not isinstance(node, dict) or len(set(node) - {"__line__"}) != 1:
            self.fail(node if isinstance(node, dict) else {}, where,
                      f"an operator is a mapping with exactly one of: {', '.join(OPERATORS)}")
        (op,) = set(node) - {"__line__"}
        if op not in OPERATORS:
            self.fail(node, where, f"unknown operator '{op}' (known: {', '.join(OPERATORS)})")
        OPERATORS[op].validate(self, node, node[op], f"{where}.{op}")



def _is_number(val: Any) -> bool:
    return isinstance(val, int | float) and not isinstance(val, bool)


_CAL_FIELDS = {"threshold_shift", "slope", "intercept", "fit"}


def _calibration(v: _Validator, raw: Any, ids: set[str]) -> dict[str, ItemCalibration]:
    """The optional top-level `calibration:` section: item id → fitted shift and confidence curve."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        v.fail({}, "calibration", "must be a mapping of item id → {threshold_shift, slope, intercept, fit}")
    out = {}
    for iid, node in raw.items():
        if iid == "__line__":
            continue
        where = f"calibration.{iid}"
        if iid not in ids:
            v.fail(raw, where, f"unknown item '{iid}'")
        if not isinstance(node, dict):
            v.fail(raw, where, "must be a mapping")
        v.keys(node, where, set(), _CAL_FIELDS)
        for key in ("threshold_shift", "slope", "intercept"):
            if key in node and node[key] is not None and not _is_number(node[key]):
                v.fail(node, f"{where}.{key}", "must be a number")
        if abs(node.get("threshold_shift", 0.0)) >= 0.5:
            v.fail(node, f"{where}.threshold_shift", "must be between -0.5 and 0.5")
        fit = node.get("fit", {})
        if not isinstance(fit, dict):
            v.fail(node, f"{where}.fit", "must be a mapping")
        out[iid] = ItemCalibration(float(node.get("threshold_shift", 0.0)),
                                   None if node.get("slope") is None else float(node["slope"]),
                                   float(node.get("intercept", 0.0)), _strip_lines(fit))
    return out


def _review_gate(v: _Validator, raw: Any, where: str) -> dict[str, Any]:
    """An item's `review` section: auto-accept its verdicts once the lower end of the 95% bootstrap interval of
    its measured agreement (`agreement`: kappa or ac1) reaches `auto_accept_min_lower`, over at least
    `min_reviewed` reviewed verdicts."""
    if raw is None:
        return {}
    where = f"{where}.review"
    if not isinstance(raw, dict):
        v.fail(raw, where, "must be a mapping like {auto_accept_min_lower: 0.8}")
    v.keys(raw, where, {"auto_accept_min_lower"}, {"agreement", "min_reviewed"})
    bar = raw["auto_accept_min_lower"]
    if not _is_number(bar) or not 0 < bar <= 1:
        v.fail(raw, f"{where}.auto_accept_min_lower", "must be a number above 0 and at most 1")
    stat = raw.get("agreement", "kappa")
    if stat not in REVIEW_AGREEMENT:
        v.fail(raw, f"{where}.agreement", f"must be one of {', '.join(REVIEW_AGREEMENT)}")
    n = raw.get("min_reviewed", 30)
    if not isinstance(n, int) or isinstance(n, bool) or n < 5:
        v.fail(raw, f"{where}.min_reviewed", "must be an integer of at least 5 (a bootstrap interval needs 5)")
    return {"auto_accept_min_lower": float(bar), "agreement": stat, "min_reviewed": n}


def _referenced_items(op: Any) -> list[str]:
    return [v for k, v in walk_operators(op) if k == "item" and isinstance(v, str)]


def load_versioned_yaml(text: str, source: str, what: str, body: str, optional: set[str]) -> tuple[dict, _Validator]:
    """Safe-load a versioned YAML file (`id`, `version`, `body` list) with line numbers, and check its top level.

    Shared by checklists and tag files; errors name the file, line and field."""
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ChecklistError(f"{source}: not valid YAML: {e}") from e
    v = _Validator(source)
    if not isinstance(raw, dict):
        raise ChecklistError(f"{source}: the top level must be a mapping with id, version and {body}")
    v.keys(raw, what, {"id", "version", body}, optional)
    if not isinstance(raw["version"], int) or isinstance(raw["version"], bool) or raw["version"] < 1:
        v.fail(raw, "version", "must be a positive integer")
    return raw, v


def parse_checklist(text: str, source: str = "<string>") -> Checklist:
    """Parse and validate checklist YAML. Raises `ChecklistError` naming the file, line and field."""
    raw, v = load_versioned_yaml(text, source, "checklist", "items",
                                 {"title", "description", "calibration", "model", "vocabulary"})
    if not isinstance(raw["items"], list) or not raw["items"]:
        v.fail(raw, "items", "must be a non-empty list")
    items: list[Item] = []
    seen: set[str] = set()
    for i, node in enumerate(raw["items"]):
        where = f"items[{i}]"
        if not isinstance(node, dict):
            v.fail(raw, where, "each item must be a mapping")
        v.keys(node, where, {"id", "title", "detect"},
               {"description", "speaker", "weight", "critical", "polarity", "applies_if", "fail_if", "evidence_limit",
                "examples", "coaching", "review"})
        iid = str(node["id"])
        where = f"item '{iid}'"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", iid):
            v.fail(node, f"{where}.id", "use lower_snake_case")
        if iid in seen:
            v.fail(node, f"{where}.id", "duplicate item id")
        seen.add(iid)
        speaker = node.get("speaker", "agent")
        if speaker not in SPEAKERS:
            v.fail(node, f"{where}.speaker", f"must be one of {', '.join(SPEAKERS)}")
        polarity = node.get("polarity", "present")
        if polarity not in POLARITIES:
            v.fail(node, f"{where}.polarity", f"must be one of {', '.join(POLARITIES)}")
        weight = node.get("weight", 1)
        if not isinstance(weight, int | float) or weight < 0:
            v.fail(node, f"{where}.weight", "must be a number ≥ 0")
        if not isinstance(node.get("critical", False), bool):
            v.fail(node, f"{where}.critical", "must be true or false")
        for key in ("applies_if", "fail_if"):
            val = node.get(key)
            if val is not None and not (isinstance(val, str) if key == "applies_if"
                                        else isinstance(val, list) and all(isinstance(x, str) for x in val)):
                v.fail(node, f"{where}.{key}", "must be an item id" if key == "applies_if" else "must list item ids")
        limit = node.get("evidence_limit", 3)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            v.fail(node, f"{where}.evidence_limit", "must be a positive integer")
        v.operator(node["detect"], f"{where}.detect")
        examples = node.get("examples") or {}
        if not isinstance(examples, dict):
            v.fail(node, f"{where}.examples", "must be a mapping with 'pass' and/or 'fail' lists of snippets")
        v.keys(examples, f"{where}.examples", set(), {"pass", "fail"})
        for key in ("pass", "fail"):
            val = examples.get(key, [])
            if not isinstance(val, list) or not all(isinstance(x, str) and x.strip() for x in val):
                v.fail(examples, f"{where}.examples.{key}", "must be a list of non-empty snippets")
        coaching = node.get("coaching") or {}
        if not isinstance(coaching, dict):
            v.fail(node, f"{where}.coaching", f"must be a mapping like {{miss: {MISS_CONTEXTS[0]}}}")
        v.keys(coaching, f"{where}.coaching", set(), {"miss"})
        if coaching.get("miss") is not None and coaching["miss"] not in MISS_CONTEXTS:
            v.fail(coaching, f"{where}.coaching.miss", f"must be one of {', '.join(MISS_CONTEXTS)}")
        review = _review_gate(v, node.get("review"), where)
        items.append(Item(
            id=iid, title=v.text(node, "title", where), description=v.text(node, "description", where, False),
            speaker=speaker, weight=float(weight), critical=bool(node.get("critical", False)),
            polarity=polarity, applies_if=node.get("applies_if"), detect=_strip_lines(node["detect"]),
            evidence_limit=int(node.get("evidence_limit", 3)),
            fail_if=tuple(node.get("fail_if") or ()),
            examples={k: tuple(examples[k]) for k in ("pass", "fail") if examples.get(k)},
            coaching={k: str(val) for k, val in coaching.items() if k != "__line__"}, review=review,
        ))
    ids = {it.id for it in items}
    order = {it.id: n for n, it in enumerate(items)}
    for it, node in zip(items, raw["items"], strict=True):
        for ref in ([it.applies_if] if it.applies_if else []) + list(it.fail_if) + _referenced_items(it.detect):
            if ref not in ids:
                v.fail(node, f"item '{it.id}'", f"refers to unknown item '{ref}'")
            if order[ref] >= order[it.id]:
                v.fail(node, f"item '{it.id}'", f"refers to item '{ref}', which must be listed before it")
    heads_path = heads_sha = cross_path = cross_sha = None
    used = {k for it in items for k, _ in walk_operators(it.detect)}
    if "model" in raw:
        m = raw["model"]
        if not isinstance(m, dict) or not (isinstance(m.get("heads"), str) or isinstance(m.get("cross"), str)):
            v.fail(raw, "model", "must be a mapping with 'heads' and/or 'cross' (files) and optional hashes")
        v.keys(m, "model", set(), {"heads", "sha256", "cross", "cross_sha256", "notes"})
        for key in ("sha256", "cross_sha256"):
            sha = m.get(key)
            if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
                v.fail(m, f"model.{key}", "must be 64 lower-case hex digits")
        if isinstance(m.get("heads"), str):
            heads_path, heads_sha = _heads_file(m["heads"], source), m.get("sha256")
        if isinstance(m.get("cross"), str):
            cross_path, cross_sha = _heads_file(m["cross"], source), m.get("cross_sha256")
    vocab = raw.get("vocabulary", [])
    if not isinstance(vocab, list) or not all(isinstance(t, str) and t.strip() for t in vocab):
        v.fail(raw, "vocabulary", "must be a list of product terms (non-empty texts) for the speech decoder")
    if used & {"model", "model_answer"} and heads_path is None:
        v.fail(raw, "model", "items use `model`/`model_answer`: name the trained heads file (model: {heads: FILE})")
    if used & {"cross", "cross_answer"} and cross_path is None:
        v.fail(raw, "model", "items use `cross`/`cross_answer`: name the cross-encoder file (model: {cross: FILE})")
    return Checklist(
        id=str(raw["id"]), version=int(raw["version"]), title=v.text(raw, "title", "checklist", False),
        description=v.text(raw, "description", "checklist", False), items=tuple(items), source=text,
        calibration=_calibration(v, raw.get("calibration"), ids), heads_path=heads_path, heads_sha256=heads_sha,
        cross_path=cross_path, cross_sha256=cross_sha, vocabulary=tuple(t.strip() for t in vocab),
    )


def _heads_file(name: str, source: str) -> str:
    """A checklist's heads file: an absolute path as is; a relative one next to the checklist file, else among the
    bundled checklists (a copied or stored checklist still finds the heads it names; the SHA-256 pins them)."""
    p = Path(name)
    if p.is_absolute():
        return str(p)
    if source and not source.startswith("<") and (Path(source).parent / p).is_file():
        return str((Path(source).parent / p).resolve())
    return str(CHECKLIST_DIR / p)


def load_checklist(name_or_path: str | Path = DEFAULT_CHECKLIST) -> Checklist:
    """Load a checklist by bundled name (``sales_core``) or from a YAML file path."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = CHECKLIST_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        available = ", ".join(sorted(f.stem for f in CHECKLIST_DIR.glob("*.yaml")))
        raise ChecklistError(f"{name_or_path}: no such checklist file (bundled: {available})")
    return parse_checklist(p.read_text(encoding="utf-8"), source=str(p))
