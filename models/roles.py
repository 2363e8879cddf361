"""Which voice of a mono call is the agent, from what each voice says: a per-turn text model.

A logistic regression over the n-grams (1-3) of a turn's tokens (English words, single Chinese characters,
punctuation; digits folded) gives each turn a log-odds of being the agent's. A voice's score is the mean
over its turns; the voice with the higher mean is the agent. What it learns are the general ways agents
and customers talk, in both languages: agents greet, thank for the call or the contact, offer help, say
"let me check", "亲", "您", "为您", "稍等"; customers ask, want, report a problem with "my order".

Trained on the labelled corpus (`corpus/W*.jsonl`, every turn's speaker is known), never on the dev calls
or the real chats, which stay the measurements (docs/asr.md, "Which voice is the agent"):

    python -m callqa.models.roles train corpus/W*.jsonl          # writes models/role_text_model.json
    python -m callqa.models.roles train --cv corpus/W*.jsonl     # also leave-one-writer-out accuracy

Inference needs only this module and the JSON (no scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

MODEL_PATH = Path(__file__).with_name("role_text_model.json")
_C = 1.0  # inverse L2 strength
_MIN_DF = 3  # an n-gram seen in fewer turns is not a feature
_PRUNE = 0.1  # features with |weight| below this are not shipped (measured: no dialogue changes, see --cv)

_CJK = "\u3400-\u9fff\uf900-\ufaff"
_SPACE_IN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")  # word-segmented Chinese ("我 想 问") joined
_TOKEN = re.compile(rf"[a-z']+|[0-9]+|[{_CJK}]|[^\s a-z0-9'{_CJK}]")


def tokens(text: str) -> list[str]:
    t = _SPACE_IN_CJK.sub("", unicodedata.normalize("NFKC", text).lower())
    return ["0" if tok.isdigit() else tok for tok in _TOKEN.findall(t)]


def features(text: str) -> list[str]:
    toks = tokens(text)
    return [" ".join(toks[i : i + n]) for n in (1, 2, 3) for i in range(len(toks) - n + 1)]


class RoleModel:
    def __init__(self, intercept: float, weights: dict[str, float]):
        self.intercept = intercept
        self.weights = weights

    def turn_logit(self, text: str) -> float:
        """Log-odds that one turn is the agent's."""
        return self.intercept + sum(self.weights.get(f, 0.0) for f in set(features(text)))

    def voice_scores(self, texts: list[tuple[int, str]]) -> dict[int, float]:
        """Mean turn log-odds per voice label (voices without text are absent)."""
        per: dict[int, list[float]] = {}
        for label, text in texts:
            if text.strip():
                per.setdefault(label, []).append(self.turn_logit(text))
        return {k: sum(v) / len(v) for k, v in per.items()}


@lru_cache(maxsize=1)
def role_model(path: Path = MODEL_PATH) -> RoleModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    return RoleModel(float(data["intercept"]), {k: float(v) for k, v in data["weights"].items()})


def _turns(rows: Iterable[dict]) -> tuple[list[str], list[bool]]:
    texts, agent = [], []
    for row in rows:
        for t in row["turns"]:
            if t["speaker"] in ("agent", "customer") and t["text"].strip():
                texts.append(t["text"])
                agent.append(t["speaker"] == "agent")
    return texts, agent


def fit(rows: list[dict]) -> RoleModel:
    """Train on dialogues whose turns name their speaker (scikit-learn, at training time only)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, agent = _turns(rows)
    vec = CountVectorizer(analyzer=features, min_df=_MIN_DF, binary=True)
    clf = LogisticRegression(C=_C, max_iter=3000).fit(vec.fit_transform(texts), agent)
    weights = {f: round(float(w), 4) for f, w in zip(vec.get_feature_names_out(), clf.coef_[0], strict=True)
               if abs(w) >= _PRUNE}
    return RoleModel(round(float(clf.intercept_[0]), 4), weights)


def finds_agent(model: RoleModel, row: dict) -> bool:
    """Whether the model picks the agent of a dialogue, with either voice label for the agent."""
    for agent_voice in (0, 1):
        texts = [(agent_voice if t["speaker"] == "agent" else 1 - agent_voice, t["text"]) for t in row["turns"]]
        scores = model.voice_scores(texts)
        if len(scores) < 2 or max(scores, key=lambda k: scores[k]) != agent_voice:
            return False
    return True


def _load(paths: list[Path]) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            for p in paths}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callqa.models.roles")
    sub = ap.add_subparsers(dest="what", required=True)
    tr = sub.add_parser("train", help="train on labelled dialogues and write the model JSON")
    tr.add_argument("files", type=Path, nargs="+")
    tr.add_argument("--out", type=Path, default=MODEL_PATH)
    tr.add_argument("--cv", action="store_true", help="also leave-one-file-out accuracy (one file = one writer)")
    a = ap.parse_args(argv)
    sets = _load(a.files)
    if a.cv:
        total = 0
        for held in sets:
            model = fit([r for name, rows in sets.items() if name != held for r in rows])
            right = sum(finds_agent(model, r) for r in sets[held])
            total += right
            print(f"{held}: {right}/{len(sets[held])}")
        print(f"leave-one-writer-out: {total}/{sum(len(r) for r in sets.values())}")
    model = fit([r for rows in sets.values() for r in rows])
    a.out.write_text(json.dumps({"trained_on": sorted(sets), "c": _C, "min_df": _MIN_DF, "prune": _PRUNE,
                                 "intercept": model.intercept, "weights": dict(sorted(model.weights.items()))},
                                ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{a.out}: {len(model.weights)} features")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
