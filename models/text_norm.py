"""Text normalisation shared by transcription and scoring: simplified Chinese, comparable text."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese (OpenCC); other scripts pass through unchanged."""
    return _t2s().convert(text)


def normalize_for_wer(text: str, language: str | None) -> str:
    """Lower-case, NFKC (full/half width), simplified, punctuation removed; for CER/WER scoring."""
    text = unicodedata.normalize("NFKC", text)
    if language == "zh":
        text = to_simplified(text)
    text = text.lower()
    text = re.sub(r"[^\w\s']", " ", text)
    return re.sub(r"\s+", " ", text).strip()
