"""Decoder hints: the terms known before a call is decoded, per call.

Sources, most specific first (docs/asr.md "Decoder hints"):

1. the call's own manifest row: a `vocabulary` or `hotwords` column (terms separated by , ， 、 ; or |), and, when
   `AsrOptions.product_hints` is on, its `product` ("洗碗机(嵌入式 13套)" -> 洗碗机, 嵌入式, 13套);
2. the checklist's `vocabulary` (product terms a team's checklist declares);
3. a team vocabulary file (`--vocab FILE`: one term per line, `#` starts a comment line) and `--vocabulary A,B`.

2 and 3 are the same for every call and are already in `AsrOptions.vocabulary` when a call starts;
`call_options` puts the call's own terms before them. How the terms reach Whisper (initial prompt or hotwords, or
not at all) is `AsrOptions.hints` (`callqa.models.asr.decoder_hints`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from callqa.models.asr import AsrOptions

log = logging.getLogger(__name__)

# Whisper reads at most half its 448-token text context as prompt (223 tokens); faster-whisper keeps the *end* of
# a long prompt and the *start* of long hotwords, and a Chinese character is 1-3 tokens. Terms beyond this many
# characters (joined) are left out, the call's own first, so the Mandarin prompt and the call's terms always fit.
MAX_HINT_CHARS = 120
MAX_TERM_CHARS = 40  # a longer "term" is a sentence, or a file that is not one term per line
CALL_COLUMNS = ("vocabulary", "hotwords")  # manifest columns that name a call's own terms, always used
_SEPARATORS = r"[,，、;；|\n]+"
_CJK = re.compile(r"[\u3400-\u9fff]")


class VocabularyError(ValueError):
    """A vocabulary file or value that cannot be used; the message names the file (and line)."""


def unique(terms: Iterable[str]) -> tuple[str, ...]:
    """Stripped, non-empty terms without repeats (case-insensitive), first occurrence kept."""
    seen: set[str] = set()
    out: list[str] = []
    for t in terms:
        t = t.strip()
        if t and t.casefold() not in seen:
            seen.add(t.casefold())
            out.append(t)
    return tuple(out)


def read_vocab_file(path: str | Path) -> tuple[str, ...]:
    """A team vocabulary file: UTF-8 text, one term per line; blank lines and lines starting with `#` are skipped."""
    p = Path(path)
    if not p.is_file():
        raise VocabularyError(f"{path}: no such vocabulary file (expected UTF-8 text, one term per line)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise VocabularyError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    terms: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        term = line.strip()
        if not term or term.startswith("#"):
            continue
        if len(term) > MAX_TERM_CHARS:
            raise VocabularyError(f"{path}:{n}: {len(term)} characters, more than {MAX_TERM_CHARS}: one term per line")
        terms.append(term)
    if not terms:
        raise VocabularyError(f"{path}: no terms (one term per line; lines starting with # are comments)")
    return unique(terms)


def split_terms(value: Any) -> tuple[str, ...]:
    """A manifest cell as terms: a list, or a text with terms separated by , ， 、 ; or |."""
    if value is None or value == "":
        return ()
    if isinstance(value, list | tuple):
        return unique(str(v) for v in value if v is not None)
    return unique(re.split(_SEPARATORS, str(value)))


def product_terms(product: str | None) -> tuple[str, ...]:
    """A product description as decoder terms: split at brackets and separators; Chinese pieces also at spaces.

    "洗碗机(嵌入式 13套)" -> (洗碗机, 嵌入式, 13套); "精华水(SK-II 神仙水 230ml)" -> (精华水, SK-II, 神仙水, 230ml);
    "toddler car seat (out of stock)" -> (toddler car seat, out of stock).
    """
    if not product:
        return ()
    out: list[str] = []
    for piece in re.split(r"[()（）\[\]【】<>《》]+|" + _SEPARATORS, str(product)):
        piece = piece.strip()
        if not piece:
            continue
        out += piece.split() if _CJK.search(piece) else [" ".join(piece.split())]
    return unique(out)


def merge_terms(*groups: Iterable[str], max_chars: int = MAX_HINT_CHARS) -> tuple[str, ...]:
    """The groups' terms in order, without repeats, as many as fit in `max_chars` characters (joined by one)."""
    out: list[str] = []
    used = 0
    terms = unique(t for g in groups for t in g)
    for n, t in enumerate(terms):
        if used + len(t) + (1 if out else 0) > max_chars:
            log.warning("decoder hints: %d of %d terms left out (more than %d characters): %s", len(terms) - n,
                        len(terms), max_chars, "、".join(terms[n:])[:200])
            break
        used += len(t) + (1 if out else 0)
        out.append(t)
    return tuple(out)


def call_terms(opts: AsrOptions, row: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The call's own terms from its manifest row (or a batch entry's metadata)."""
    if not row:
        return ()
    own: list[str] = []
    for col in CALL_COLUMNS:
        own += split_terms(row.get(col))
    if opts.product_hints:
        own += product_terms(row.get("product"))
    return unique(own)


def call_options(opts: AsrOptions, row: Mapping[str, Any] | None) -> AsrOptions:
    """`opts` for one call: its own terms first, then the run's (checklist, team file); unchanged when hints are
    off or the call has none."""
    if opts.hints == "off":
        return opts
    own = call_terms(opts, row)
    if not own:
        return opts
    return replace(opts, vocabulary=merge_terms(own, opts.vocabulary))


def run_vocabulary(terms: Iterable[str] = (), vocab_file: str | Path | None = None,
                   checklist_terms: Iterable[str] = ()) -> tuple[str, ...]:
    """The terms every call of a run shares: the checklist's, then the team file's, then `--vocabulary`'s."""
    team = read_vocab_file(vocab_file) if vocab_file else ()
    return merge_terms(checklist_terms, team, terms)
