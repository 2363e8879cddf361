"""Transcript accuracy: CER (Mandarin), WER (English) and speaker attribution against a reference.

Both sides are normalised the same way before comparing, so only real recognition errors count:
NFKC (full/half width), traditional → simplified, lower case, punctuation removed, Chinese numerals
→ digits ("十三套" = "13套", "百分之九十九点九" = "99.9%"), and for English Whisper's own English
normaliser (spelled numbers and currency → digits, British/American spellings, contractions).

Speaker attribution aligns the hypothesis tokens (characters for Mandarin, words for English) with
the reference tokens by minimum edit distance over the whole call, then counts the reference
tokens whose aligned hypothesis token carries the same speaker. Deleted reference tokens have no
speaker and are left out of that share (they already count in CER/WER).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from callqa.models.text_norm import to_simplified

from callqa.records import Transcript

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10_000, "亿": 100_000_000}
_NUM_CHARS = "".join(_ZH_DIGITS) + "".join(_ZH_UNITS) + "".join(_ZH_BIG)
_NUM_RUN = re.compile(f"[{_NUM_CHARS}]+(?:点[{''.join(_ZH_DIGITS)}]+)?")


def _zh_integer(run: str) -> int | None:
    """Value of a Chinese integer numeral ("一百二十" → 120, "三万五千" → 35000); None if not one."""
    if all(ch in _ZH_DIGITS for ch in run):
        return None  # a bare digit string: read digit by digit (see caller)
    total = section = num = 0
    for ch in run:
        if ch in _ZH_DIGITS:
            num = _ZH_DIGITS[ch]
        elif ch in _ZH_UNITS:
            section += (num or 1) * _ZH_UNITS[ch]
            num = 0
        elif ch in _ZH_BIG:
            total += (section + num) * _ZH_BIG[ch]
            section = num = 0
    return total + section + num


def _convert_run(run: str) -> str:
    integer, _, frac = run.partition("点")
    value = _zh_integer(integer)
    digits = str(value) if value is not None else "".join(str(_ZH_DIGITS[c]) for c in integer)
    if frac:
        digits += "." + "".join(str(_ZH_DIGITS[c]) for c in frac)
    return digits


def zh_numerals_to_digits(text: str) -> str:
    """Chinese numerals → Arabic digits: "十三套" → "13套", "百分之九十九点九" → "99.9%", "一三八" → "138"."""
    text = re.sub(f"百分之([{_NUM_CHARS}]+(?:点[{''.join(_ZH_DIGITS)}]+)?)", lambda m: _convert_run(m.group(1)) + "%",
                  text)
    return _NUM_RUN.sub(lambda m: _convert_run(m.group(0)), text)


@lru_cache(maxsize=1)
def _english_normalizer():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str, language: str) -> str:
    """Comparable text: Mandarin as characters without spaces, English as space-separated words."""
    text = unicodedata.normalize("NFKC", text)
    if language == "zh":
        text = zh_numerals_to_digits(to_simplified(text)).lower()
        # drop punctuation and spaces, but keep a decimal point between digits ("99.9" ≠ "999")
        return re.sub(r"(?<!\d)\.|\.(?!\d)|[^\w.]", "", text)
    text = _english_normalizer()(text)
    return re.sub(r"\s+", " ", text).strip()


def tokens(text: str, language: str) -> list[str]:
    """The units an error rate counts: characters for Mandarin (Latin words kept whole), words for English."""
    norm = normalize(text, language)
    if language == "zh":
        return re.findall(r"[a-z0-9.']+|\S", norm)
    return norm.split()


def align(ref: list[str], hyp: list[str]) -> list[tuple[int | None, int | None]]:
    """Minimum edit-distance alignment: pairs (ref index or None, hyp index or None), in order."""
    n, m = len(ref), len(hyp)
    if n == 0 or m == 0:
        return [(i, None) for i in range(n)] + [(None, j) for j in range(m)]
    vocab: dict[str, int] = {}
    r = np.array([vocab.setdefault(t, len(vocab)) for t in ref])
    h = np.array([vocab.setdefault(t, len(vocab)) for t in hyp])
    cost = np.empty((n + 1, m + 1), dtype=np.int32)
    cost[0] = np.arange(m + 1)
    js = np.arange(m + 1)
    for i in range(1, n + 1):
        prev = cost[i - 1]
        a = np.empty(m + 1, dtype=np.int32)
        a[0] = i
        a[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (h != r[i - 1]))
        # insertions along the row: cur[j] = min_k<=j a[k] + (j - k)
        cost[i] = np.minimum.accumulate(a - js) + js
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return pairs[::-1]


@dataclass(frozen=True)
class CallScore:
    """Edit counts and speaker hits for one call; add them up over a corpus (never average rates)."""

    language: str
    ref_tokens: int
    errors: int  # substitutions + deletions + insertions
    aligned: int  # reference tokens paired with a hypothesis token
    speaker_right: int  # ... whose hypothesis token has the reference speaker

    @property
    def error_rate(self) -> float:
        return self.errors / self.ref_tokens if self.ref_tokens else 0.0

    @property
    def speaker_accuracy(self) -> float:
        return self.speaker_right / self.aligned if self.aligned else 0.0


def _speaker_tokens(items: list[tuple[str, str]], language: str) -> tuple[list[str], list[str]]:
    toks: list[str] = []
    spk: list[str] = []
    for speaker, text in items:
        t = tokens(text, language)
        toks += t
        spk += [speaker] * len(t)
    return toks, spk


def score_call(reference_turns: list[dict], hypothesis: Transcript, language: str) -> CallScore:
    """Compare a transcript with a manifest's reference `turns` ({speaker, text, start, end})."""
    ref, ref_spk = _speaker_tokens([(t["speaker"], t["text"]) for t in reference_turns], language)
    segs = sorted(hypothesis.segments, key=lambda s: (s.start, s.end))
    hyp, hyp_spk = _speaker_tokens([(s.speaker, s.text) for s in segs], language)
    errors = aligned = right = 0
    for i, j in align(ref, hyp):
        if i is None or j is None:
            errors += 1
            continue
        errors += ref[i] != hyp[j]
        aligned += 1
        right += ref_spk[i] == hyp_spk[j]
    return CallScore(language, len(ref), errors, aligned, right)


def corpus_error_rate(scores: list[CallScore]) -> float | None:
    total = sum(s.ref_tokens for s in scores)
    return sum(s.errors for s in scores) / total if total else None


def corpus_speaker_accuracy(scores: list[CallScore]) -> float | None:
    total = sum(s.aligned for s in scores)
    return sum(s.speaker_right for s in scores) / total if total else None
