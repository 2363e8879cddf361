"""Convert the bundled CTranslate2 Whisper model into an openai-whisper checkpoint, offline.

No package ships openai-whisper's own ``.pt`` files, but the CTranslate2 ``model.bin`` that
faster-whisper loads holds the same tensors (see DESIGN.md section 2, "Whisper weights").
`read_ct2_model` parses that binary (format version 6), `ct2_to_openai_checkpoint` renames and
splits the tensors into the ``{"dims", "model_state_dict"}`` dict that ``whisper.load_model``
reads, `openai_whisper_checkpoint` caches the result as a ``.pt`` file, and
`load_openai_whisper` returns a ready ``whisper.Whisper`` model.

Mapping caveats:

- CTranslate2 fuses self-attention Q,K,V (and cross-attention K,V) into one linear layer; they
  are split back. CTranslate2 stores a key bias (zeros, padded in by its converter) that
  openai-whisper has no slot for; a key bias cannot change attention weights (it adds the same
  ``q.b`` to every score of a query, which softmax ignores), so dropping it is exact.
- openai-whisper ties the output projection to the token embedding; an untied projection
  that differs from the embedding is refused.
- Quantized models (int8/int16 weights with ``*_scale`` variables) are refused: convert from
  a float16/float32 CTranslate2 model.
- Weights keep their stored dtype (float16 here); ``load_state_dict`` copies them into the
  model's float32 parameters, so ``transcribe(..., fp16=False)`` runs in float32.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .weights import BUNDLED_WHISPER, cache_root, whisper_ct2_dir

if TYPE_CHECKING:
    import whisper

log = logging.getLogger(__name__)

CT2_BINARY_VERSION = 6
# Bump when the conversion output changes, so cached checkpoints are rebuilt.
_CONVERTER_REVISION = 1
# CTranslate2 dtype ids → numpy dtypes (bfloat16 is read as raw uint16, then widened).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5
_MAX_RANK = 8
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model binary this module can read or convert."""


class CT2Model(NamedTuple):
    """A parsed ``model.bin``: spec name, variables by name, and alias → target names."""

    spec_name: str
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


# --------------------------------------------------------------------------------------------
# Reading the binary
# --------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, f: IO[bytes], path: Path) -> None:
        self.f, self.path = f, path

    def exact(self, n: int, what: str) -> bytearray:
        buf = bytearray(n)
        got = self.f.readinto(buf)
        if got != n:
            raise CT2FormatError(
                f"{self.path}: truncated while reading {what} (wanted {n} bytes, got {got or 0})"
            )
        return buf

    def u8(self, what: str) -> int:
        return self.exact(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.exact(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.exact(4, what))[0]

    def string(self, what: str) -> str:
        n = self.u16(f"{what} length")
        raw = self.exact(n, what)
        if n == 0 or raw[-1] != 0:
            raise CT2FormatError(f"{self.path}: {what} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise CT2FormatError(f"{self.path}: {what} is not UTF-8: {e}") from None


def read_ct2_model(path: str | os.PathLike) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) into numpy arrays.

    Accepts the file or its model folder. Raises `CT2FormatError` on any other version, a
    truncated file, unknown dtypes, size mismatches, dangling aliases or trailing bytes.
    bfloat16 variables come back as float32 (numpy has no bfloat16).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    with open(path, "rb") as f:
        r = _Reader(f, path)
        version = r.u32("binary version")
        if version != CT2_BINARY_VERSION:
            raise CT2FormatError(
                f"{path}: CTranslate2 binary version {version} is not supported "
                f"(only version {CT2_BINARY_VERSION})"
            )
        spec_name = r.string("spec name")
        revision = r.u32("spec revision")
        count = r.u32("variable count")
        variables: dict[str, np.ndarray] = {}
        for i in range(count):
            name = r.string(f"name of variable {i}")
            rank = r.u8(f"rank of {name}")
            if rank > _MAX_RANK:
                raise CT2FormatError(f"{path}: {name} has rank {rank}, file is corrupt")
            dims = tuple(r.u32(f"shape of {name}") for _ in range(rank))
            dtype_id = r.u8(f"dtype of {name}")
            if dtype_id not in _DTYPES:
                raise CT2FormatError(f"{path}: {name} has unknown dtype id {dtype_id}")
            dtype = _DTYPES[dtype_id]
            nbytes = r.u32(f"byte count of {name}")
            expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if nbytes != expected:
                raise CT2FormatError(
                    f"{path}: {name} declares {nbytes} bytes, shape {dims} x {dtype} needs {expected}"
                )
            if name in variables:
                raise CT2FormatError(f"{path}: variable {name} appears twice")
            arr = np.frombuffer(r.exact(nbytes, f"data of {name}"), dtype=dtype).reshape(dims)
            if dtype_id == _BFLOAT16:
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            variables[name] = arr
        aliases: dict[str, str] = {}
        for i in range(r.u32("alias count")):
            alias = r.string(f"alias {i}")
            target = r.string(f"target of alias {alias}")
            if target not in variables:
                raise CT2FormatError(f"{path}: alias {alias} points to missing variable {target}")
            aliases[alias] = target
        if f.read(1):
            raise CT2FormatError(f"{path}: unexpected bytes after the alias table")
    log.debug("read %s: %s rev %d, %d variables, %d aliases", path, spec_name, revision, count, len(aliases))
    return CT2Model(spec_name, variables, aliases)


# --------------------------------------------------------------------------------------------
# Mapping to openai-whisper
# --------------------------------------------------------------------------------------------


class _Vars:
    """Variable lookup that follows aliases and records what was consumed."""

    def __init__(self, model: CT2Model) -> None:
        self.model, self.used = model, set()

    def __contains__(self, name: str) -> bool:
        return name in self.model.variables or name in self.model.aliases

    def __getitem__(self, name: str) -> np.ndarray:
        target = self.model.aliases.get(name, name)
        if target not in self.model.variables:
            raise CT2FormatError(f"CTranslate2 model has no variable {name}")
        self.used.add(target)
        return self.model.variables[target]

    def scalar(self, name: str) -> int:
        return int(self[name].reshape(()))


def _split(arr: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if arr.shape[0] % parts:
        raise CT2FormatError(f"{name}: first dimension {arr.shape[0]} does not split in {parts}")
    return np.split(arr, parts, axis=0)  # views; copied when the checkpoint is built


def _layer_count(names: list[str], side: str) -> int:
    idx = {int(m.group(2)) for n in names if (m := _LAYER.match(n)) and m.group(1) == side}
    if idx != set(range(len(idx))):
        raise CT2FormatError(f"{side} layers are not numbered 0..n-1: {sorted(idx)}")
    return len(idx)


def _last_linear(v: _Vars, scope: str) -> int:
    i = 0
    while f"{scope}/linear_{i + 1}/weight" in v:
        i += 1
    return i


def _map_attention(v: _Vars, sd: dict[str, np.ndarray], src: str, dst: str, cross: bool) -> None:
    """One CTranslate2 attention scope → openai-whisper query/key/value/out (+ its layer norm)."""
    w0, b0 = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
    if cross:  # linear_0 = Q, linear_1 = fused K,V
        q_w, q_b = w0, b0
        k_w, v_w = _split(v[f"{src}/linear_1/weight"], 2, f"{src}/linear_1/weight")
        k_b, v_b = _split(v[f"{src}/linear_1/bias"], 2, f"{src}/linear_1/bias")
    else:  # linear_0 = fused Q,K,V
        q_w, k_w, v_w = _split(w0, 3, f"{src}/linear_0/weight")
        q_b, k_b, v_b = _split(b0, 3, f"{src}/linear_0/bias")
    if np.any(k_b):
        log.debug("%s: dropping a non-zero key bias (softmax-invariant)", src)
    out, want = _last_linear(v, src), 2 if cross else 1
    if out != want:
        raise CT2FormatError(f"{src}: expected {want + 1} linear layers, found {out + 1}")
    sd.update({
        f"{dst}.query.weight": q_w, f"{dst}.query.bias": q_b,
        f"{dst}.key.weight": k_w,
        f"{dst}.value.weight": v_w, f"{dst}.value.bias": v_b,
        f"{dst}.out.weight": v[f"{src}/linear_{out}/weight"],
        f"{dst}.out.bias": v[f"{src}/linear_{out}/bias"],
    })  # fmt: skip
    _map_norm(v, sd, f"{src}/layer_norm", f"{dst}_ln")


def _map_norm(v: _Vars, sd: dict[str, np.ndarray], src: str, dst: str) -> None:
    sd[f"{dst}.weight"] = v[f"{src}/gamma"]
    sd[f"{dst}.bias"] = v[f"{src}/beta"]


def _map_block(v: _Vars, sd: dict[str, np.ndarray], src: str, dst: str, cross: bool) -> None:
    _map_attention(v, sd, f"{src}/self_attention", f"{dst}.attn", cross=False)
    if cross:
        _map_attention(v, sd, f"{src}/attention", f"{dst}.cross_attn", cross=True)
    sd[f"{dst}.mlp.0.weight"] = v[f"{src}/ffn/linear_0/weight"]
    sd[f"{dst}.mlp.0.bias"] = v[f"{src}/ffn/linear_0/bias"]
    sd[f"{dst}.mlp.2.weight"] = v[f"{src}/ffn/linear_1/weight"]
    sd[f"{dst}.mlp.2.bias"] = v[f"{src}/ffn/linear_1/bias"]
    _map_norm(v, sd, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")


def _alignment_heads_dump(ct2_dir: Path, n_layer: int, n_head: int) -> bytes | None:
    """config.json's ``alignment_heads`` ([layer, head] pairs) in openai-whisper's base85 form."""
    config = ct2_dir / "config.json"
    if not config.is_file():
        return None
    pairs = json.loads(config.read_text(encoding="utf-8")).get("alignment_heads")
    if not pairs:
        return None
    mask = np.zeros((n_layer, n_head), dtype=bool)
    try:
        mask[tuple(np.asarray(pairs, dtype=int).T)] = True
    except (IndexError, ValueError) as e:
        raise CT2FormatError(f"{config}: bad alignment_heads {pairs!r}: {e}") from None
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def ct2_to_openai_checkpoint(ct2_dir: str | os.PathLike) -> dict[str, Any]:
    """Convert a CTranslate2 Whisper folder into the dict ``whisper.load_model(path)`` reads.

    Returns ``{"dims": {ModelDimensions fields}, "model_state_dict": {name: torch.Tensor},
    "alignment_heads": bytes | None}``; the last key (openai-whisper's base85 mask, from
    config.json) is ignored by ``whisper.load_model`` and used by `load_openai_whisper`.
    """
    import torch
    from whisper.model import AudioEncoder, ModelDimensions, TextDecoder

    ct2_dir = Path(ct2_dir)
    model = read_ct2_model(ct2_dir / "model.bin")
    if model.spec_name != "WhisperSpec":
        raise CT2FormatError(f"{ct2_dir}: spec {model.spec_name!r} is not a Whisper model")
    names = list(model.variables) + list(model.aliases)
    scaled = [n for n in names if n.endswith("_scale")]
    if scaled:
        raise CT2FormatError(
            f"{ct2_dir}: quantized CTranslate2 model ({scaled[0]}, ...) is not supported; "
            "convert from a float16/float32 model"
        )
    v = _Vars(model)

    conv1 = v["encoder/conv1/weight"]
    enc_pos, dec_pos = v["encoder/position_encodings/encodings"], v["decoder/position_encodings/encodings"]
    emb = v["decoder/embeddings/weight"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(enc_pos.shape[0]),
        "n_audio_state": int(enc_pos.shape[1]),
        "n_audio_head": v.scalar("encoder/num_heads"),
        "n_audio_layer": _layer_count(names, "encoder"),
        "n_vocab": int(emb.shape[0]),
        "n_text_ctx": int(dec_pos.shape[0]),
        "n_text_state": int(emb.shape[1]),
        "n_text_head": v.scalar("decoder/num_heads"),
        "n_text_layer": _layer_count(names, "decoder"),
    }

    sd: dict[str, np.ndarray] = {}
    for i in (1, 2):
        sd[f"encoder.conv{i}.weight"] = v[f"encoder/conv{i}/weight"]
        sd[f"encoder.conv{i}.bias"] = v[f"encoder/conv{i}/bias"]
    sd["encoder.positional_embedding"] = enc_pos
    for i in range(dims["n_audio_layer"]):
        _map_block(v, sd, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    _map_norm(v, sd, "encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = emb
    sd["decoder.positional_embedding"] = dec_pos
    for i in range(dims["n_text_layer"]):
        _map_block(v, sd, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    _map_norm(v, sd, "decoder/layer_norm", "decoder.ln")
    if "decoder/projection/weight" in v and not np.array_equal(v["decoder/projection/weight"], emb):
        raise CT2FormatError(f"{ct2_dir}: output projection differs from the token embedding")
    if "decoder/projection/bias" in v and np.any(v["decoder/projection/bias"]):
        raise CT2FormatError(f"{ct2_dir}: output projection has a bias openai-whisper lacks")

    left = [n for n, a in model.variables.items() if a.ndim > 0 and n not in v.used]
    if left:
        raise CT2FormatError(f"{ct2_dir}: variables with no openai-whisper slot: {left[:5]}")

    # Check names and shapes against the real module, without allocating it.
    d = ModelDimensions(**dims)
    with torch.device("meta"):  # Whisper() itself calls to_sparse, which meta tensors lack
        enc = AudioEncoder(d.n_mels, d.n_audio_ctx, d.n_audio_state, d.n_audio_head, d.n_audio_layer)
        dec = TextDecoder(d.n_vocab, d.n_text_ctx, d.n_text_state, d.n_text_head, d.n_text_layer)
    expected = {f"{side}.{k}": tuple(t.shape) for side, mod in (("encoder", enc), ("decoder", dec))
                for k, t in mod.state_dict().items()}  # fmt: skip
    got = {k: tuple(a.shape) for k, a in sd.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:5]
        raise CT2FormatError(f"{ct2_dir}: converted names/shapes do not match openai-whisper: {diff}")

    return {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.array(a, copy=True)) for k, a in sd.items()},
        "alignment_heads": _alignment_heads_dump(ct2_dir, dims["n_text_layer"], dims["n_text_head"]),
    }


# --------------------------------------------------------------------------------------------
# Cached checkpoint and loader
# --------------------------------------------------------------------------------------------


def openai_whisper_checkpoint(ct2_dir: str | os.PathLike | None = None, cache: Path | None = None) -> Path:
    """Convert a CTranslate2 Whisper folder (default: the bundled base) to a cached ``.pt`` once.

    The file lives under ``cache or cache_root()`` / ``openai-whisper``, keyed on the source
    ``model.bin`` path, size and mtime; it is written to a temporary file and renamed into
    place, so a crash or a concurrent run never leaves a partial checkpoint.
    """
    import torch

    ct2_dir = Path(ct2_dir) if ct2_dir is not None else whisper_ct2_dir()
    src = (ct2_dir / "model.bin").resolve()
    st = src.stat()
    key = f"{src}|{st.st_size}|{st.st_mtime_ns}|{_CONVERTER_REVISION}"
    stamp = hashlib.sha256(key.encode()).hexdigest()[:12]
    target = (cache or cache_root()) / "openai-whisper" / f"{ct2_dir.name}-{stamp}.pt"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    checkpoint = ct2_to_openai_checkpoint(ct2_dir)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("converted %s to %s in %.1f s", ct2_dir, target, time.perf_counter() - t0)
    return target


def _stored_alignment_heads(path: Path) -> bytes | None:
    """The ``alignment_heads`` entry of a checkpoint, read through mmap (tensors stay on disk)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) torch files cannot be memory-mapped
        return None
    heads = checkpoint.get("alignment_heads") if isinstance(checkpoint, dict) else None
    return heads if isinstance(heads, bytes) else None


def load_openai_whisper(model: str | os.PathLike | None = None, device: str = "cpu") -> whisper.Whisper:
    """Load an openai-whisper model.

    ``None`` or ``"base"`` → the bundled CTranslate2 base, converted once and cached. A
    CTranslate2 folder (with ``model.bin``) → converted the same way. Another existing file →
    ``whisper.load_model(path)``. Any other name (``small``, ``large-v3``) →
    ``whisper.load_model(name)``, which downloads it (needs network access). Alignment heads
    for word timestamps are set from the checkpoint when it carries them.
    """
    import whisper

    if model is None or str(model) == BUNDLED_WHISPER:
        path = openai_whisper_checkpoint()
    else:
        p = Path(model).expanduser()
        if p.is_dir() and (p / "model.bin").is_file():
            path = openai_whisper_checkpoint(p)
        elif p.is_file():
            path = p
        else:
            return whisper.load_model(str(model), device=device)
    m = whisper.load_model(str(path), device=device)
    heads = _stored_alignment_heads(path)
    if heads is None and (model is None or str(model) == BUNDLED_WHISPER):
        heads = whisper._ALIGNMENT_HEADS[BUNDLED_WHISPER]
    if heads is not None:
        m.set_alignment_heads(heads)
    return m
