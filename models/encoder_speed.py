"""CPU speed for the text encoder: bfloat16 weights pre-packed for oneDNN, and padding-aware batches.

On CPUs with native bfloat16 (AMX or AVX512-BF16) the whole model runs in bf16: matmuls accumulate
in float32 inside oneDNN, and the pooled embeddings stay within cosine 0.9999 of the float32 model.
Every `nn.Linear` is swapped for one whose weight is reordered into oneDNN's blocked layout once, at
load (plain bf16 `F.linear` redoes that reorder on every call, which dominates small batches), and a
BERT FFN's exact GELU is fused into its first matmul. torch's dynamic int8 quantization was measured
too and rejected: cosine to float32 as low as 0.96. Numbers: docs/text_encoder.md.

Precision is "auto" (bf16 where the CPU has it, else fp32), "bf16" or "fp32"; the `precision`
argument of TextEncoder wins over the CALLQA_ENCODER_PRECISION environment variable.
Imported lazily by text_encoder (this module imports torch).
"""

from __future__ import annotations

import os

import torch

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_ENV = "CALLQA_ENCODER_PRECISION"
# one forward pass costs about this many padded tokens' worth of work on top of its tokens (weights
# streamed from memory, per-layer overheads): measured on 2 Xeon cores, 1 thread (docs/text_encoder.md)
FORWARD_COST_TOKENS = {"bf16": 96, "fp32": 24}
_PACK_HINT = 512  # rows (batch x tokens) oneDNN picks the weight layout for; every row count runs on it
_packing_ok: bool | None = None


def native_bf16() -> bool:
    """True if this CPU computes bfloat16 natively (AMX tiles or AVX512-BF16) and torch has oneDNN."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return torch.backends.mkldnn.is_available() and any(p() for p in probes if p is not None)
    except (RuntimeError, AttributeError):
        return False


def resolve_precision(precision: str | None = None) -> str:
    """"bf16" or "fp32" from the argument, else $CALLQA_ENCODER_PRECISION, else "auto"."""
    value = (precision or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"encoder precision must be one of {PRECISIONS}, not {value!r}")
    if value == "auto":
        return "bf16" if native_bf16() else "fp32"
    return value


def model_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def speed_up(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Finish a model loaded in `model_dtype(precision)`: in bf16, pack every Linear for oneDNN."""
    if precision == "bf16" and packing_works():
        _pack_linears(model)
    return model


def plan_batches(lengths: list[int], max_batch: int, forward_cost: int) -> list[tuple[int, int]]:
    """Split texts sorted by token count into [start, end) batches of at most `max_batch`, minimising
    padded tokens + `forward_cost` per batch (padding to the longest costs; so does each extra pass)."""
    best, cut = [0] + [1 << 62] * len(lengths), [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for start in range(max(0, end - max_batch), end):
            cost = best[start] + forward_cost + (end - start) * lengths[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    spans, end = [], len(lengths)
    while end:
        spans.append((cut[end], end))
        end = cut[end]
    return spans[::-1]


def _pack_linears(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear) and child.weight.dtype == torch.bfloat16:
            setattr(module, name, PackedLinear(child))
        elif _is_exact_gelu(getattr(child, "intermediate_act_fn", None)) and isinstance(
            getattr(child, "dense", None), torch.nn.Linear
        ):  # BertIntermediate: dense, then GELU -> one oneDNN matmul with a GELU post-op
            child.dense = PackedLinear(child.dense, gelu=True)
            child.intermediate_act_fn = torch.nn.Identity()
        else:
            _pack_linears(child)


def _is_exact_gelu(act: object) -> bool:
    return type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is torch.nn.functional.gelu


class PackedLinear(torch.nn.Module):
    """x W^T + b (then GELU if `gelu`), W kept in oneDNN's layout: the private ops inductor's freezing
    pass uses. Pickles (and deep-copies) through a dense copy of W, packed again on load."""

    def __init__(self, linear: torch.nn.Linear, gelu: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features, self.gelu = linear.in_features, linear.out_features, gelu
        self._pack(linear.weight.detach(), None if linear.bias is None else linear.bias.detach().clone())

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        with torch.no_grad():
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.to(torch.bfloat16), _PACK_HINT)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = ("gelu", [], "none") if self.gelu else ("none", [], "")
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, *post)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "weight": self.weight.to_dense()}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._pack(state["weight"], state["bias"])

    def extra_repr(self) -> str:
        gelu = ", GELU fused" if self.gelu else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 packed for oneDNN{gelu}"


def packing_works() -> bool:
    """The private oneDNN ops exist and agree with F.linear and GELU (checked once per process)."""
    global _packing_ok
    if _packing_ok is None:
        try:
            lin = torch.nn.Linear(64, 48).to(torch.bfloat16)
            x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
            with torch.inference_mode():
                want = lin(x)
                gelu = torch.nn.functional.gelu(want)
                pairs = [(PackedLinear(lin)(x), want), (PackedLinear(lin, gelu=True)(x), gelu)]
            _packing_ok = all(torch.allclose(a.float(), b.float(), atol=3e-2, rtol=2e-2) for a, b in pairs)
        except (AttributeError, RuntimeError):
            _packing_ok = False
    return _packing_ok
