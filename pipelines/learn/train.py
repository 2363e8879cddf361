"""Train the checklist's heads (`callqa train`) and measure them leave-one-writer-out.

Data: labelled calls (manifest rows with `turns`, `labels`, `evidence`, and optionally `concerns`: each
customer concern with the agent turn that answered it). Every call is split into turns exactly as the
engine splits a transcript (`utterances`), each turn embedded once with the frozen sentence encoder, and
the features built by `callqa.qa_rules.learned` — the same code the engine runs, so training and scoring
cannot drift apart.

Per head (an item that needs judgement):
- a call whose label is false makes every turn of the item's speaker a negative;
- a call whose label is true makes its evidence turn (and, for objections, every listed concern) a
  positive, and its bag of turns a positive bag: multiple-instance learning, the bag's score is the
  smooth maximum of its turns' logits, so turns nobody marked are neither forced up nor down;
- `greeting` reads only the agent's first turn, where the label is exact.
The pair head `answer` learns (concern, reply) → "substantively answered", from `concerns` and from the
objection / objection_resolved evidence of sets without `concerns`.

Calibration: Platt scaling of the call-level maximum logit, fitted on out-of-fold predictions (folds by
writer, so a writer's style never calibrates itself). Seeds fixed; torch on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from callqa.qa_rules.learned import Head, Heads, pair_features, sentence_features
from callqa.qa_rules.utterances import turn_texts, utterances

from callqa.records import TextEmbedder, Transcript

# head → (speaker whose turns it reads, only the speaker's first turn)
TURN_HEADS: dict[str, tuple[str, bool]] = {
    "usage_scenario": ("agent", False),
    "selling_point": ("agent", False),
    "objection": ("customer", False),
    "greeting": ("agent", True),
    "forbidden_phrase": ("agent", False),
}
PAIR_HEAD = "answer"
ANSWER_WINDOW = 3  # agent turns after a concern that may answer it (the checklist's within_turns)


@dataclass
class CallData:
    """One labelled call as the trainer sees it: turn features plus which turns are marked."""

    key: str
    writer: str
    language: str
    labels: dict[str, Any]
    speakers: list[str]
    feats: np.ndarray  # (n_sentences, feature dim): what the turn heads read, one row per sentence
    vecs: np.ndarray  # (n_turns, embedding dim): whole-turn embeddings (the pair head reads these)
    sent_turn: np.ndarray  # (n_sentences,): the turn of each sentence
    evidence: dict[str, int] = field(default_factory=dict)  # label → turn number
    concerns: list[tuple[int, int | None]] = field(default_factory=list)  # (concern turn, answering turn)
    row: dict = field(default_factory=dict)


def read_manifest(path: str | Path, writer: str | None = None) -> list[dict]:
    """Rows of a JSONL manifest, each tagged with its writer (the row's own `writer`, else `writer`, else the
    file's folder name for corpus parts, else the file's stem)."""
    path = Path(path)
    default = writer or (path.parent.name if path.name.startswith("part_") else path.stem)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if "turns" not in row or "labels" not in row:
            raise ValueError(f"{path}:{n}: a labelled call needs 'turns' and 'labels'")
        row.setdefault("writer", default)
        rows.append(row)
    return rows


def read_manifests(paths: Iterable[str | Path]) -> list[dict]:
    """Rows of every manifest; a folder means every `*.jsonl` inside it (recursively)."""
    rows: list[dict] = []
    for p in paths:
        p = Path(p)
        files = sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            rows += read_manifest(f)
    return rows


def _turn_of_message(utts: list, n_messages: int) -> list[int | None]:
    seg_turn: dict[int, int] = {}
    for u in utts:
        seg_turn.setdefault(u.segment, u.turn)
    return [seg_turn.get(i) for i in range(n_messages)]


def prepare(rows: list[dict], encoder: TextEmbedder, progress: Callable[[Iterable], Iterable] | None = None
            ) -> list[CallData]:
    """Embed every call's sentences and turns (all calls in one batched pass) and build the heads' features,
    split exactly as the engine splits a transcript."""
    transcripts = [Transcript.from_turns(r["turns"], r.get("language")) for r in rows]
    utts_all = [utterances(t) for t in transcripts]
    texts_all = [turn_texts(u) for u in utts_all]
    unique = list(dict.fromkeys([x for texts in texts_all for x in texts.values()]
                                + [u.text for utts in utts_all for u in utts]))
    vec_of: dict[str, np.ndarray] = {}
    chunk = 512
    chunks = range(0, len(unique), chunk)
    for a in (progress(chunks) if progress else chunks):
        part = unique[a:a + chunk]
        vec_of.update(zip(part, np.asarray(encoder.embed(part), np.float32), strict=True))
    dim = next(iter(vec_of.values())).shape[0] if vec_of else 384
    out = []
    for r, utts, texts in zip(rows, utts_all, texts_all, strict=True):
        turns = list(texts)
        row_of = {t: k for k, t in enumerate(turns)}
        speaker = {u.turn: u.speaker for u in utts}
        speakers = [speaker[t] for t in turns]
        vecs = np.stack([vec_of[texts[t]] for t in turns]) if turns else np.zeros((0, dim), np.float32)
        sent_turn = np.array([row_of[u.turn] for u in utts], int)
        sent_vecs = np.stack([vec_of[u.text] for u in utts]) if utts else np.zeros((0, dim), np.float32)
        msg_turn = [row_of.get(t) if t is not None else None for t in _turn_of_message(utts, len(r["turns"]))]
        ev = {}
        for label, idx in (r.get("evidence") or {}).items():
            if isinstance(idx, list):
                idx = idx[0] if idx else None
            if isinstance(idx, int) and 0 <= idx < len(msg_turn) and msg_turn[idx] is not None:
                ev[label] = msg_turn[idx]
        concerns = []
        for c in r.get("concerns") or []:
            t = c.get("turn")
            a = c.get("answered_by")
            if isinstance(t, int) and 0 <= t < len(msg_turn) and msg_turn[t] is not None:
                at = msg_turn[a] if isinstance(a, int) and 0 <= a < len(msg_turn) else None
                concerns.append((msg_turn[t], at))
        out.append(CallData(str(r.get("call_id") or r.get("source_id")), str(r.get("writer", "?")),
                            str(r.get("language", "")), dict(r["labels"]), speakers,
                            sentence_features(sent_vecs, list(sent_turn), vecs, speakers), vecs, sent_turn,
                            ev, concerns, r))
    return out


# --- examples --------------------------------------------------------------------------------------


def _eligible_turns(call: CallData, speaker: str, first_only: bool) -> list[int]:
    idx = [t for t, s in enumerate(call.speakers) if s == speaker]
    return idx[:1] if first_only else idx


def eligible(call: CallData, speaker: str, first_only: bool) -> np.ndarray:
    """The sentences a head reads in one call: those of `speaker`'s turns (only the first with `first_only`)."""
    turns = _eligible_turns(call, speaker, first_only)
    return np.flatnonzero(np.isin(call.sent_turn, turns))


def turn_examples(calls: list[CallData], head: str, speaker: str, first_only: bool
                  ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(sentence features, labels: 0 = negative, -1 = unknown, positive bags: arrays of sentence rows).

    A call whose label is false makes each of its eligible sentences a negative. A true call gives positive
    bags: the sentences of its evidence turn (and of each concern, for objections), and all its eligible
    sentences (at least one of them shows the behaviour)."""
    feats, inst, bags = [], [], []
    n = 0
    for call in calls:
        y = call.labels.get(head)
        if y is None:
            continue
        idx = eligible(call, speaker, first_only)
        if not len(idx):
            continue
        feats.append(call.feats[idx])
        inst.append(np.full(len(idx), -1.0 if y else 0.0, np.float32))
        if y:
            rows = {int(i): n + k for k, i in enumerate(idx)}
            marked = {call.evidence[head]} if head in call.evidence else set()
            if head == "objection":
                marked |= {c for c, _ in call.concerns}
            for t in marked:
                sub = [rows[int(i)] for i in np.flatnonzero(call.sent_turn == t) if int(i) in rows]
                if sub:
                    bags.append(np.array(sub))
            bags.append(np.arange(n, n + len(idx)))
        n += len(idx)
    if not feats:
        return np.zeros((0, 1), np.float32), np.zeros(0, np.float32), []
    return np.vstack(feats), np.concatenate(inst), bags


def replies(call: CallData, concern: int, window: int = ANSWER_WINDOW) -> list[int]:
    """The agent turns within `window` turns after `concern`: the replies that may answer it."""
    return [r for r in range(concern + 1, min(len(call.speakers), concern + window + 1)) if call.speakers[r] == "agent"]


def pair_examples(calls: list[CallData], window: int = ANSWER_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(concern, reply) features with 1 = the reply substantively answers the concern, 0 = it does not."""
    xs, ys = [], []

    def add(call: CallData, c: int, r: int, y: int) -> None:
        xs.append(pair_features(call.vecs[c], call.vecs[r])[0])
        ys.append(y)

    for call in calls:
        if call.concerns:
            for c, a in call.concerns:
                if a is not None and a < len(call.speakers) and call.speakers[a] == "agent":
                    add(call, c, a, 1)
                elif a is None:
                    for r in replies(call, c, window):
                        add(call, c, r, 0)
        elif call.labels.get("objection") and "objection" in call.evidence:
            c = call.evidence["objection"]
            r = call.evidence.get("objection_resolved")
            if call.labels.get("objection_resolved") and r is not None and call.speakers[r] == "agent":
                add(call, c, r, 1)
            elif call.labels.get("objection_resolved") is False:
                if r is not None and call.speakers[r] == "agent":
                    add(call, c, r, 0)
                elif r == c:
                    for rr in replies(call, c, window):
                        add(call, c, rr, 0)
    if not xs:
        return np.zeros((0, 1), np.float32), np.zeros(0, np.float32)
    return np.stack(xs), np.array(ys, np.float32)


# --- fitting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    hidden: int = 64
    epochs: int = 60
    lr: float = 2e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2
    smooth_max: float = 4.0  # sharpness of the bag's smooth maximum (log-sum-exp temperature)
    seed: int = 13


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_mlp(x: np.ndarray, inst: np.ndarray, bags: list[np.ndarray] | None, cfg: TrainConfig) -> Head:
    """A 2-layer MLP on instances (labels 1/0; -1 unknown) plus the smooth maximum of each positive bag
    (an array of instance rows) pushed up: multiple-instance learning. Positives weighted to balance."""
    import torch
    from torch import nn

    _seed(cfg.seed)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    X = torch.from_numpy(x)
    y = torch.from_numpy(inst)
    known = y >= 0
    model = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(x.shape[1], cfg.hidden), nn.ReLU(),
                          nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bags = bags or []
    n_pos = float((y == 1).sum()) + len(bags)
    n_neg = float((y == 0).sum())
    pos_w = torch.tensor(max(1.0, n_neg / max(1.0, n_pos)) ** 0.5)
    bag_pos = None
    if bags:
        width = max(len(m) for m in bags)
        idx = np.zeros((len(bags), width), np.int64)
        mask = np.zeros((len(bags), width), bool)
        for k, m in enumerate(bags):
            idx[k, :len(m)] = m
            mask[k, :len(m)] = True
        bag_pos = (torch.from_numpy(idx), torch.from_numpy(mask))
    bce = nn.BCEWithLogitsLoss(pos_weight=pos_w)
    model.train()
    for _ in range(cfg.epochs):
        opt.zero_grad()
        z = model(X).squeeze(1)
        loss = bce(z[known], y[known]) if bool(known.any()) else z.sum() * 0
        if bag_pos is not None:
            idx, mask = bag_pos
            zb = z[idx].masked_fill(~mask, -1e4)
            smooth = torch.logsumexp(cfg.smooth_max * zb, dim=1) / cfg.smooth_max
            loss = loss + pos_w * nn.functional.binary_cross_entropy_with_logits(smooth, torch.ones_like(smooth))
        loss.backward()
        opt.step()
    lin1, lin2 = model[1], model[4]
    return Head(lin1.weight.detach().numpy().T.copy(), lin1.bias.detach().numpy().copy(),
                lin2.weight.detach().numpy().T.copy(), lin2.bias.detach().numpy().copy())


def platt(z: np.ndarray, y: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """Fit p = sigmoid(a*z + b) to labels y by Newton's method (with Platt's smoothed targets)."""
    if len(z) == 0 or y.min() == y.max():
        return 1.0, 0.0
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(a * z + b, -30, 30)))
        g = np.array([np.sum((p - t) * z), np.sum(p - t)])
        w = p * (1 - p) + 1e-9
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def call_max_logit(head: Head, call: CallData, speaker: str, first_only: bool) -> float | None:
    idx = eligible(call, speaker, first_only)
    if not len(idx):
        return None
    return float(head.logits(call.feats[idx]).max())


def fit_heads(calls: list[CallData], cfg: TrainConfig, heads: Iterable[str] = tuple(TURN_HEADS),
              folds: int = 3, progress: Callable[[str], None] | None = None) -> dict[str, Head]:
    """Train every head on `calls`; Platt-calibrate each on out-of-fold predictions (folds by writer)."""
    writers = sorted({c.writer for c in calls})
    rng = random.Random(cfg.seed)
    rng.shuffle(writers)
    fold_of = {w: k % folds for k, w in enumerate(writers)}
    out: dict[str, Head] = {}
    for name in heads:
        if progress:
            progress(name)
        speaker, first = TURN_HEADS[name]
        oof_z, oof_y = [], []
        for k in range(min(folds, len(writers))):
            train = [c for c in calls if fold_of[c.writer] != k]
            test = [c for c in calls if fold_of[c.writer] == k and c.labels.get(name) is not None]
            if not train or not test:
                continue
            h = fit_mlp(*turn_examples(train, name, speaker, first), cfg)
            for c in test:
                z = call_max_logit(h, c, speaker, first)
                if z is not None:
                    oof_z.append(z)
                    oof_y.append(float(bool(c.labels[name])))
        h = fit_mlp(*turn_examples(calls, name, speaker, first), cfg)
        a, b = platt(np.array(oof_z), np.array(oof_y))
        out[name] = Head(h.w1, h.b1, h.w2, h.b2, a=a, b=b)
    if progress:
        progress(PAIR_HEAD)
    oof_z, oof_y = [], []
    for k in range(min(folds, len(writers))):
        train = [c for c in calls if fold_of[c.writer] != k]
        test = [c for c in calls if fold_of[c.writer] == k]
        x, y = pair_examples(train)
        if not len(y):
            continue
        h = fit_mlp(x, y, None, cfg)
        xt, yt = pair_examples(test)
        if len(yt):
            oof_z += list(h.logits(xt))
            oof_y += list(yt)
    x, y = pair_examples(calls)
    h = fit_mlp(x, y, None, cfg)
    a, b = platt(np.array(oof_z), np.array(oof_y))
    out[PAIR_HEAD] = Head(h.w1, h.b1, h.w2, h.b2, a=a, b=b)
    return out


def corpus_digest(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: (str(r.get("writer")), str(r.get("call_id") or r.get("source_id")))):
        h.update(json.dumps([r.get("writer"), r.get("call_id"), r["turns"], r["labels"], r.get("evidence"),
                             r.get("concerns")], ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()


def train(rows: list[dict], encoder: TextEmbedder, cfg: TrainConfig | None = None,
          progress: Callable[[Iterable], Iterable] | None = None,
          log: Callable[[str], None] | None = None) -> Heads:
    """Heads trained on `rows` (all of them), with provenance in their metadata."""
    cfg = cfg or TrainConfig()
    calls = prepare(rows, encoder, progress)
    heads = fit_heads(calls, cfg, progress=log)
    writers: dict[str, int] = {}
    for c in calls:
        writers[c.writer] = writers.get(c.writer, 0) + 1
    meta = {"encoder": getattr(encoder, "name", "?"), "features": "turn+previous+position; pair: c,r,c*r",
            "answer_window": ANSWER_WINDOW, "config": cfg.__dict__, "writers": writers, "calls": len(calls),
            "corpus_sha256": corpus_digest(rows)}
    return Heads(heads, meta)


def run_training(manifests: list[Path], out: Path, cfg: TrainConfig | None = None,
                 exclude_writers: tuple[str, ...] = ()) -> tuple[Path, Heads]:
    """`callqa train`: read the manifests, train every head, write `<out>/sales_core.heads.npz` (or `out` itself
    when it names an .npz file) and a JSON report beside it. Returns (path, heads) with `heads.sha256` set."""
    from callqa.models.text_encoder import get_encoder
    from tqdm import tqdm

    rows = [r for r in read_manifests(manifests) if r.get("writer") not in exclude_writers]
    if not rows:
        raise ValueError("no labelled calls in the manifests given")
    encoder = get_encoder()
    heads = train(rows, encoder, cfg, progress=lambda it: tqdm(list(it), desc="embedding", unit="chunk"),
                  log=lambda name: print(f"[train] fitting head {name}", flush=True))
    path = out if out.suffix == ".npz" else out / "sales_core.heads.npz"
    digest = heads.save(path)
    report = {"heads": str(path), "sha256": digest, **heads.meta}
    path.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, Heads(heads.heads, heads.meta, digest, str(path))
