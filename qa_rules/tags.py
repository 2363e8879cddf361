"""Customer need tags (allergy, elderly user, baby, budget-sensitive, gift, ...) computed per call.

Tags are data: `qa_rules/tags/customer_needs.yaml` (or any file in the same format) lists tags with
a zh/en title and a detection rule built from the checklist operators (keyword, regex, semantic,
all/any/not, ...). A tag is set when its rule matches a sentence of its speaker (the customer by
default); the matching sentences are its evidence.

    from callqa.qa_rules.tags import tag_needs
    for tag in tag_needs(transcript):            # list[NeedTag], in the file's order
        print(tag.tag_id, tag.confidence, [e.quote for e in tag.evidence])

Without an embedder only the literal rules run (semantic parts are skipped); pass the engine's
encoder (`tag_needs(transcript, embedder=get_encoder())`) to use them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from callqa.qa_rules.checklist import SPEAKERS, ChecklistError, _strip_lines, load_versioned_yaml
from callqa.qa_rules.operators import Context, evaluate
from callqa.qa_rules.utterances import utterances

from callqa.records import Evidence, NeedTag, TextEmbedder, Transcript

TAGS_DIR = Path(__file__).parent / "tags"
DEFAULT_TAGS = TAGS_DIR / "customer_needs.yaml"


@dataclass(frozen=True)
class TagDef:
    id: str
    title: dict[str, str]
    description: dict[str, str]
    speaker: str
    detect: dict[str, Any]


@dataclass(frozen=True)
class TagSet:
    id: str
    version: int
    tags: tuple[TagDef, ...]
    source: str = ""


def parse_tags(text: str, source: str = "<string>") -> TagSet:
    """Parse and validate a tag file; errors name the file, line and field (as for checklists)."""
    raw, v = load_versioned_yaml(text, source, "tags file", "tags", {"title", "description"})
    if not isinstance(raw["tags"], list) or not raw["tags"]:
        v.fail(raw, "tags", "must be a non-empty list")
    out, seen = [], set()
    for i, node in enumerate(raw["tags"]):
        if not isinstance(node, dict):
            v.fail(raw, f"tags[{i}]", "each tag must be a mapping")
        v.keys(node, f"tags[{i}]", {"id", "title", "detect"}, {"description", "speaker"})
        tid = str(node["id"])
        where = f"tag '{tid}'"
        if tid in seen:
            v.fail(node, f"{where}.id", "duplicate tag id")
        seen.add(tid)
        if node.get("speaker", "customer") not in SPEAKERS:
            v.fail(node, f"{where}.speaker", f"must be one of {', '.join(SPEAKERS)}")
        v.operator(node["detect"], f"{where}.detect")
        if _uses_item(node["detect"]):
            v.fail(node, f"{where}.detect", "tags cannot refer to checklist items")
        out.append(TagDef(tid, v.text(node, "title", where), v.text(node, "description", where, False),
                          node.get("speaker", "customer"), _strip_lines(node["detect"])))
    return TagSet(str(raw["id"]), int(raw["version"]), tuple(out), text)


def _uses_item(op: Any) -> bool:
    if isinstance(op, dict):
        return "item" in op or any(_uses_item(x) for k, x in op.items() if k != "__line__")
    if isinstance(op, list):
        return any(_uses_item(x) for x in op)
    return False


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> TagSet:
    return parse_tags(Path(path).read_text(encoding="utf-8"), source=path)


def load_tags(path: str | Path = DEFAULT_TAGS) -> TagSet:
    p = Path(path)
    if not p.suffix and not p.exists():
        p = TAGS_DIR / f"{path}.yaml"
    if not p.is_file():
        raise ChecklistError(f"{path}: no such tag file")
    return _load_cached(str(p), p.stat().st_mtime)


def _literal_only(op: Any) -> Any:
    """The rule without its semantic parts (an empty `any` never matches)."""
    if isinstance(op, dict):
        return {"any": []} if "semantic" in op else {k: _literal_only(x) for k, x in op.items()}
    if isinstance(op, list):
        return [_literal_only(x) for x in op]
    return op


_EXEMPLARS: dict = {}


def tag_needs(transcript: Transcript, embedder: TextEmbedder | None = None,
              tags: TagSet | str | Path | None = None, evidence_limit: int = 3) -> list[NeedTag]:
    """Customer need tags of one call, each with evidence (segment, quote, times), in the file's order."""
    tagset = tags if isinstance(tags, TagSet) else load_tags(tags or DEFAULT_TAGS)
    ctx = Context(utterances(transcript), embedder, _EXEMPLARS)
    found = []
    for tag in tagset.tags:
        rule = tag.detect if embedder is not None else _literal_only(tag.detect)
        match = evaluate(rule, ctx, tag.speaker)
        if not match.hits:
            continue
        best = sorted(match.hits.items(), key=lambda kv: (-kv[1], kv[0]))[:evidence_limit]
        ev = tuple(Evidence(segment=u.segment, speaker=u.speaker, quote=u.quote, start=u.start, end=u.end,
                            score=round(s, 3))
                   for u, s in sorted(((ctx.utts[i], s) for i, s in best), key=lambda x: x[0].index))
        found.append(NeedTag(tag.id, dict(tag.title), round(max(match.hits.values()), 3), ev))
    return found
