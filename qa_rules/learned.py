"""Trained judgement for checklist items: small heads over frozen sentence embeddings of each turn.

A checklist may name a heads file (``model: {heads: FILE, sha256: ...}``); items then use the operators
``model`` (one head scores each turn of the item's speaker) and ``model_answer`` (a pair head scores a
concern against the agent turns that follow it: the sequence logic of "every concern answered").

A turn is seen with its context: the features of turn *t* are the embedding of the whole turn, the
embedding of the turn before it (usually the other speaker: the question an answer answers, the claim an
objection replies to), and three position facts (first turn of its speaker, agent or customer, relative
position in the call). A pair is (concern, reply, their elementwise product). Heads are two-layer MLPs
whose outputs are calibrated probabilities (Platt scaling fitted on out-of-fold predictions when trained,
see ``callqa train``). Inference is NumPy only; training lives in ``callqa.pipelines.learn.train``.

The file is a NumPy ``.npz``: ``meta`` (JSON: encoder name, feature layout, per-head calibration and
threshold, training provenance) and per head ``<head>/w1``, ``b1``, ``w2``, ``b2``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
N_POSITION = 3  # first turn of its speaker, is agent, relative position
# What a head reads. "context": each sentence with its turn, the turn before and position facts (heads trained
# on labelled calls). "pieces": each sentence and its clauses alone, the best piece counting (heads fitted from
# an item's own example snippets, which carry no call context).
UNITS = ("context", "pieces")


@dataclass(frozen=True)
class Head:
    """One trained head: a 2-layer MLP (ReLU) to one logit, then Platt calibration ``sigmoid(a*z + b)``."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    a: float = 1.0
    b: float = 0.0
    threshold: float = 0.5
    unit: str = "context"  # one of UNITS: what the head reads

    @classmethod
    def linear(cls, w: np.ndarray, bias: float, **kw: Any) -> Head:
        """A linear scorer `x @ w + bias` in the head's MLP form (relu(z) - relu(-z) = z), so one file format
        and one inference path hold both kinds."""
        w = np.asarray(w, np.float32).reshape(-1)
        return cls(np.stack([w, -w], 1), np.array([bias, -bias], np.float32), np.array([[1.0], [-1.0]], np.float32),
                   np.zeros(1, np.float32), **kw)

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        return (h @ self.w2 + self.b2).reshape(-1)

    def probability(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, np.float32)
        z = self.a * self.logits(x.astype(np.float32, copy=False)) + self.b
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)


@dataclass(frozen=True)
class Heads:
    """A trained heads file: its heads by name, the encoder its features come from, and its SHA-256."""

    heads: dict[str, Head]
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: str = ""

    @property
    def encoder(self) -> str:
        return str(self.meta.get("encoder", ""))

    def head(self, name: str) -> Head:
        try:
            return self.heads[name]
        except KeyError:
            raise KeyError(f"heads file {self.path or '?'} has no head '{name}' (has: {', '.join(self.heads)})") \
                from None

    def save(self, path: str | Path) -> str:
        """Write the file; returns its SHA-256 (the hash a checklist records)."""
        arrays: dict[str, np.ndarray] = {}
        meta = dict(self.meta, format=FORMAT, calibration={})
        for name, h in self.heads.items():
            for key in ("w1", "b1", "w2", "b2"):
                arrays[f"{name}/{key}"] = np.asarray(getattr(h, key), np.float32)
            meta["calibration"][name] = {"a": h.a, "b": h.b, "threshold": h.threshold}
            if h.unit != "context":
                meta["calibration"][name]["unit"] = h.unit
        arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False, sort_keys=True).encode(), np.uint8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_heads(path: str | Path, sha256: str | None = None) -> Heads:
    """Read a heads file; with `sha256`, refuse a file whose bytes differ (a checklist names the exact file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"heads file not found: {path} (rebuild it with `callqa train`)")
    return _load(str(path.resolve()), path.stat().st_mtime_ns, sha256)


@lru_cache(maxsize=8)
def _load(path: str, _mtime: int, sha256: str | None) -> Heads:
    digest = file_sha256(path)
    if sha256 and digest != sha256:
        raise ValueError(f"heads file {path} has SHA-256 {digest[:12]}…, the checklist expects {sha256[:12]}…: "
                         "retrain with `callqa train` or point the checklist at the right file")
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"heads file {path}: format {meta.get('format')}, this callqa reads {FORMAT}")
        heads = {}
        for name, cal in meta["calibration"].items():
            heads[name] = Head(*(z[f"{name}/{k}"] for k in ("w1", "b1", "w2", "b2")),
                               a=float(cal["a"]), b=float(cal["b"]), threshold=float(cal["threshold"]),
                               unit=str(cal.get("unit", "context")))
    return Heads(heads, meta, digest, path)


# --- features ------------------------------------------------------------------------------------

_ZH = re.compile(r"[\u4e00-\u9fff]")
_CLAUSE_ZH = re.compile(r"[，,。.!！?？;；~、]+|\s+")
_CLAUSE_EN = re.compile(r"[,.!?;]+")


def pieces(text: str, span: int = 3) -> list[str]:
    """A sentence and its runs of 1..`span` clauses (commas, and spaces in unpunctuated Chinese ASR text), each
    once: a commitment buried in a long run-on sentence ("…夜里十九分贝 那我明天上午十点再给您打") is scored on
    its own clause instead of being averaged away."""
    text = text.strip()
    parts = [p.strip() for p in (_CLAUSE_ZH if _ZH.search(text) else _CLAUSE_EN).split(text) if p.strip()]
    out = [text] + [" ".join(parts[i:i + n])
                    for n in range(1, span + 1) for i in range(len(parts) - n + 1)]
    return [p for p in dict.fromkeys(out) if len(p) >= 4]



def turn_features(vecs: np.ndarray, speakers: list[str]) -> np.ndarray:
    """Features of every turn of a call: [turn, previous turn, first-of-speaker, is-agent, position].

    `vecs` (n_turns, dim): one embedding per turn in call order; `speakers`: each turn's speaker."""
    n = len(speakers)
    if n == 0:
        return np.zeros((0, 2 * (vecs.shape[1] if vecs.ndim == 2 else 1) + N_POSITION), np.float32)
    prev = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs[:-1]])
    seen: set[str] = set()
    pos = np.zeros((n, N_POSITION), np.float32)
    for t, spk in enumerate(speakers):
        pos[t, 0] = spk not in seen
        seen.add(spk)
        pos[t, 1] = spk == "agent"
        pos[t, 2] = t / max(1, n - 1)
    return np.hstack([vecs, prev, pos]).astype(np.float32)


def sentence_features(sent_vecs: np.ndarray, sent_turns: list[int], turn_vecs: np.ndarray,
                      speakers: list[str]) -> np.ndarray:
    """Features of every sentence: [sentence, its whole turn, the turn before, position facts of the turn].

    `sent_turns[k]` is the row in `turn_vecs` / `speakers` of sentence k's turn."""
    per_turn = turn_features(turn_vecs, speakers)
    if len(sent_turns) == 0:
        return np.zeros((0, sent_vecs.shape[1] + per_turn.shape[1]), np.float32)
    return np.hstack([sent_vecs, per_turn[sent_turns]]).astype(np.float32)


def pair_features(concern: np.ndarray, reply: np.ndarray) -> np.ndarray:
    """Features of (concern, reply) pairs: both embeddings and their elementwise product."""
    concern, reply = np.atleast_2d(concern), np.atleast_2d(reply)
    return np.hstack([concern, reply, concern * reply]).astype(np.float32)
