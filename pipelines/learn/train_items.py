"""Fit a team's own checklist item from its description's examples (`callqa train --checklist FILE`).

A team writes an item in its own words, with 10-20 snippets an agent might say that pass and 10-20 that look
alike but fail (`examples: {pass: [...], fail: [...]}`), and detects it with `model: {head: <item id>}`.
Training fits one linear head over the frozen sentence encoder for every such item:

- positives: the pass snippets; negatives: the fail snippets (the team's hard negatives) and a *background
  bank* of ordinary agent sentences (`sentence_bank.npz`, agent sentences of the labelled sets A-E, which carry
  no label for any team item): without it a head fitted on near-misses alone fires on anything unlike them.
  The three groups weigh the same in total (`bank_weight` scales the bank); L2-regularised logistic regression.
- the head reads every agent sentence *and its clauses* alone (`unit: pieces`): a commitment inside a long
  unpunctuated ASR sentence is scored on its own clause.
- threshold: the `recall_quantile`-th percentile of the pass snippets' leave-one-out scores (a pass snippet
  the head never saw clears it 90% of the time by default); confidence: Platt scaling of the leave-one-out
  scores of pass and fail snippets, shifted so the threshold is where the verdict turns.

The method and its three settings were chosen on one labelled set (W01) and then frozen; see docs/corpus.md
for what it reads on the sets it never saw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from callqa.pipelines.learn.train import platt, read_manifests
from callqa.qa_rules.checklist import CHECKLIST_DIR, Checklist, Item, load_checklist
from callqa.qa_rules.learned import Head, Heads, load_heads
from callqa.qa_rules.operators import walk_operators
from callqa.qa_rules.utterances import utterances

from callqa.records import TextEmbedder, Transcript

BANK_FILE = CHECKLIST_DIR / "sentence_bank.npz"
MIN_EXAMPLES = 5  # per side; the docs ask for 10-20


@dataclass(frozen=True)
class ItemTrainConfig:
    bank_weight: float = 1.0  # the bank's total weight relative to the pass (and to the fail) snippets'
    c: float = 100.0  # inverse L2 strength
    iters: int = 2000  # full-batch gradient steps
    step: float = 0.5
    recall_quantile: float = 10.0  # threshold: this percentile of the pass snippets' leave-one-out scores


def logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, cfg: ItemTrainConfig) -> tuple[np.ndarray, float]:
    """Weighted L2 logistic regression by full-batch gradient descent (deterministic: starts at zero)."""
    w, b = np.zeros(x.shape[1]), 0.0
    total = weight.sum()
    for _ in range(cfg.iters):
        p = 1 / (1 + np.exp(-np.clip(x @ w + b, -30, 30)))
        g = (p - y) * weight
        w -= cfg.step * (x.T @ g / total + w / (cfg.c * total))
        b -= cfg.step * g.sum() / total
    return w, float(b)


def _fit(pos: np.ndarray, neg: np.ndarray, bank: np.ndarray, cfg: ItemTrainConfig) -> tuple[np.ndarray, float]:
    x = np.vstack([pos, neg, bank]).astype(np.float64)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg) + len(bank))]
    weight = np.r_[np.full(len(pos), 1 / len(pos)), np.full(len(neg), 1 / len(neg)),
                   np.full(len(bank), cfg.bank_weight / max(1, len(bank)))]
    return logistic(x, y, weight / weight.mean(), cfg)


def fit_example_head(pos: np.ndarray, neg: np.ndarray, bank: np.ndarray, cfg: ItemTrainConfig
                     ) -> tuple[Head, dict[str, Any]]:
    """One item's head from the embeddings of its pass and fail snippets, plus what it measured on them."""
    if len(pos) < MIN_EXAMPLES or len(neg) < MIN_EXAMPLES:
        raise ValueError(f"an item needs at least {MIN_EXAMPLES} pass and {MIN_EXAMPLES} fail examples "
                         f"(has {len(pos)} and {len(neg)}); 10-20 of each work best")
    w, b = _fit(pos, neg, bank, cfg)
    loo_pos = np.array([pos[i] @ ww + bb for i in range(len(pos))
                        for ww, bb in [_fit(np.delete(pos, i, 0), neg, bank, cfg)]])
    loo_neg = np.array([neg[i] @ ww + bb for i in range(len(neg))
                        for ww, bb in [_fit(pos, np.delete(neg, i, 0), bank, cfg)]])
    cut = float(np.percentile(loo_pos, cfg.recall_quantile))
    a, _ = platt(np.r_[loo_pos, loo_neg], np.r_[np.ones(len(loo_pos)), np.zeros(len(loo_neg))])
    a = max(a, 1e-3)
    head = Head.linear(w, b, a=a, b=-a * cut, threshold=0.5, unit="pieces")
    report = {"pass": len(pos), "fail": len(neg), "bank": len(bank), "logit_threshold": round(cut, 4),
              "loo_pass_recall": round(float(np.mean(loo_pos >= cut)), 3),
              "loo_fail_rejected": round(float(np.mean(loo_neg < cut)), 3),
              "bank_flagged": round(float(np.mean(bank @ w + b >= cut)), 4)}
    return head, report


def example_items(checklist: Checklist) -> dict[str, Item]:
    """Head name → the item whose examples fit it: items with examples whose detection reads a `model` head."""
    out: dict[str, Item] = {}
    for item in checklist.items:
        if not item.examples:
            continue
        names = [arg["head"] for op, arg in walk_operators(item.detect) if op == "model"]
        if len(names) != 1:
            raise ValueError(f"item '{item.id}' has examples: its detect needs exactly one `model: {{head: ...}}` "
                             f"to fit (found {len(names)})")
        out[names[0]] = item
    return out


def load_bank(path: Path = BANK_FILE) -> tuple[np.ndarray, dict]:
    with np.load(path) as z:
        return z["vectors"].astype(np.float32), json.loads(bytes(z["meta"]).decode())


def build_bank(manifests: list[Path], encoder: TextEmbedder, out: Path = BANK_FILE, size: int = 2000,
               seed: int = 13) -> Path:
    """Embed the agent sentences of labelled (or unlabelled) calls into a background bank (float16)."""
    rows = read_manifests(manifests)
    texts = list(dict.fromkeys(u.text for r in rows
                               for u in utterances(Transcript.from_turns(r["turns"], r.get("language")))
                               if u.speaker == "agent"))
    rng = np.random.default_rng(seed)
    if len(texts) > size:
        texts = [texts[i] for i in sorted(rng.choice(len(texts), size, replace=False))]
    vecs = np.asarray(encoder.embed(texts), np.float16)
    meta = {"encoder": getattr(encoder, "name", "?"), "sentences": len(texts), "seed": seed,
            "sources": [str(m) for m in manifests],
            "texts_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        np.savez_compressed(f, vectors=vecs, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return out


def train_items(checklist: Checklist, encoder: TextEmbedder, base: Heads | None = None,
                cfg: ItemTrainConfig | None = None, bank_path: Path = BANK_FILE) -> Heads:
    """`base`'s heads (the checklist's trained ones, if any) plus one fitted head per example item."""
    cfg = cfg or ItemTrainConfig()
    items = example_items(checklist)
    if not items:
        raise ValueError(f"checklist {checklist.id}: no item has `examples` and a `model` head to fit")
    bank, bank_meta = load_bank(bank_path)
    heads = dict(base.heads) if base else {}
    meta = dict(base.meta) if base else {"encoder": getattr(encoder, "name", "?")}
    fitted = {}
    for name, item in items.items():
        pos = np.asarray(encoder.embed(list(item.examples.get("pass", ()))), np.float32)
        neg = np.asarray(encoder.embed(list(item.examples.get("fail", ()))), np.float32)
        heads[name], fitted[name] = fit_example_head(pos, neg, bank, cfg)
        fitted[name]["item"] = item.id
    meta["example_heads"] = {"config": asdict(cfg), "bank": bank_meta, "heads": fitted}
    return Heads(heads, meta)


def run_item_training(checklist_path: str | Path, out: Path, cfg: ItemTrainConfig | None = None,
                      base: Heads | None = None) -> tuple[Path, Path, Heads]:
    """`callqa train --checklist FILE --out DIR`: fit the example items, write `<DIR>/<id>.heads.npz` (the
    checklist's existing heads kept) and `<DIR>/<file name>` pointing at it by SHA-256. Returns both paths."""
    from callqa.models.text_encoder import get_encoder

    checklist = load_checklist(checklist_path)
    if base is None and checklist.heads_path and Path(checklist.heads_path).is_file():
        base = load_heads(checklist.heads_path)
    heads = train_items(checklist, get_encoder(), base, cfg)
    out.mkdir(parents=True, exist_ok=True)
    heads_path = out / f"{checklist.id}.heads.npz"
    digest = heads.save(heads_path)
    raw = yaml.safe_load(checklist.source)
    raw["model"] = {**(raw.get("model") or {}), "heads": heads_path.name, "sha256": digest}
    yaml_path = out / Path(checklist_path).with_suffix(".yaml").name
    if not Path(checklist_path).suffix:
        yaml_path = out / f"{checklist.id}.yaml"
    yaml_path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
    return yaml_path, heads_path, Heads(heads.heads, heads.meta, digest, str(heads_path))
