"""Blind reading of the prototype: call-level F1 for objection, resolved, forbidden on the given sets.

.venv/bin/python scripts/prototypes/finetune_lora_eval.py tests/data/heldout/calls_w11_final.jsonl corpus/W15.jsonl real
"""

import json
import sys
from pathlib import Path

import finetune_lora as ft
import numpy as np
import torch
from callqa.pipelines.learn.train import read_manifest

torch.set_num_threads(1)
m = ft.Model()
sd = torch.load(Path(__file__).with_name("lora_e2.pt"))
m.load_state_dict(sd, strict=False)
m.eval()


def f1(y, p):
    y, p = np.array(y, bool), np.array(p, bool)
    tp = (y & p).sum()
    return 2 * tp / max(1, y.sum() + p.sum())


def score(rows, labels=None):
    res = {"objection": ([], []), "objection_resolved": ([], []), "forbidden_phrase": ([], [])}
    for row in rows:
        lab = labels[row["source_id"]] if labels else row["labels"]
        turns = row["turns"]
        sp = [t["speaker"] for t in turns]
        tx = [ft.ctx(t["text"]) for t in turns]
        cust = [i for i, s in enumerate(sp) if s == "customer"]
        ag = [i for i, s in enumerate(sp) if s == "agent"]
        prev = [next((tx[j] for j in range(i - 1, -1, -1) if sp[j] == "agent"), "") for i in range(len(sp))]
        po = ft.predict(m, "O", [(tx[i], prev[i]) for i in cust]) if cust else np.zeros(0)
        cons = [i for i, p in zip(cust, po, strict=False) if p > 0.5]
        pf = ft.predict(m, "F", [(tx[i], "") for i in ag]) if ag else np.zeros(0)
        forb = bool((pf > 0.5).any())
        resolved = None
        if cons:
            ok = True
            for c in cons:
                reps = [r for r in range(c + 1, min(len(sp), c + 4)) if sp[r] == "agent"]
                pa = ft.predict(m, "A", [(tx[c], tx[r]) for r in reps]) if reps else np.zeros(0)
                ok = ok and bool((pa > 0.5).any())
            resolved = ok and not forb
        for k, pred in (("objection", bool(cons)), ("forbidden_phrase", forb)):
            if lab.get(k) is not None:
                res[k][0].append(lab[k])
                res[k][1].append(pred)
        if lab.get("objection_resolved") is not None or resolved is not None:
            # positive class = resolved true; na counts as not-true on both sides
            res["objection_resolved"][0].append(lab.get("objection_resolved") is True)
            res["objection_resolved"][1].append(resolved is True)
    return {k: round(float(f1(*v)), 3) for k, v in res.items()}


R = Path(__file__).resolve().parents[2]
for name in sys.argv[1:]:
    if name == "real":
        rows = [json.loads(line) for line in open(R / "../shared/data/real/dialogues.jsonl")]
        labels = {
            json.loads(line)["source_id"]: json.loads(line)["labels"]
            for line in open(R / "tests/data/heldout/real_labels.jsonl")
        }
        print(name, score(rows, labels), flush=True)
    else:
        print(name, score(read_manifest(R / name)), flush=True)
