"""Apply the checklist and the customer need tags to transcripts: one call at a time (`score_task`, for calls
as they come out of ASR) or a chunk of calls at once (`score_many_task`, for calls whose transcripts are stored).
Both are Prefect tasks that `process_batch` (flows.py) calls directly when run under Prefect."""

from __future__ import annotations

import hashlib
from pathlib import Path

from callqa.qa_rules.checklist import Checklist
from callqa.qa_rules.engine import ChecklistEngine, call_score
from callqa.qa_rules.operators import walk_operators
from callqa.qa_rules.tags import load_tags, tag_needs
from callqa.qa_rules.utterances import utterances
from prefect import task
from prefect.cache_policies import NO_CACHE

from callqa.records import CallScore, NeedTag, Transcript


def _embedder():
    from callqa.models.text_encoder import get_encoder

    return get_encoder()


def make_engine(checklist: Checklist) -> ChecklistEngine:
    """An engine with the bundled multilingual sentence encoder."""
    return ChecklistEngine(checklist, _embedder())


def scoring_models(engine: ChecklistEngine) -> dict:
    """What decides a score besides the transcript: the sentence encoder, the trained heads file (or none) and
    the checklist text, each by name and hash; `Store.save_score` adds the ASR and stores it as the manifest."""
    cl = engine.checklist
    heads = engine.heads
    return {
        "checklist": {"id": cl.id, "version": cl.version,
                      "sha256": hashlib.sha256(cl.source.encode("utf-8")).hexdigest()},
        "encoder": getattr(engine.embedder, "name", None),
        "heads": {"file": Path(heads.path).name, "sha256": heads.sha256} if heads is not None else None,
        **({"cross": {"file": Path(engine.cross.path).name, "sha256": engine.cross.sha256}}
           if getattr(engine, "cross", None) is not None else {}),
    }


def score_one(engine: ChecklistEngine, transcript: Transcript) -> tuple[CallScore, list[NeedTag]]:
    """Score and tag one call: `(engine.score(t), tag_needs(t, engine.embedder))`."""
    return engine.score(transcript), tag_needs(transcript, engine.embedder)


def score_many(engine: ChecklistEngine, transcripts: list[Transcript]) -> list[tuple[CallScore, list[NeedTag]]]:
    """Score and tag many calls at once; the i-th result is `(engine.score(t), tag_needs(t, engine.embedder))` of
    the i-th transcript. The checklist's sentences are embedded across calls in batched passes (`verdicts_many`,
    the verdicts `verdicts` gives call by call). The sentences of the speakers the need tags' semantic rules
    read are embedded together in one pass too, before the tags run: `tag_needs` then finds them in the encoder's
    memo cache instead of embedding a few per call (the same vectors the encoder gives those texts for the rest
    of the process); the tags' rules run unchanged."""
    verdicts = engine.verdicts_many(transcripts)
    speakers = {t.speaker for t in load_tags().tags if any(k == "semantic" for k, _ in walk_operators(t.detect))}
    if engine.embedder is not None and speakers:
        texts = [u.text for t in transcripts for u in utterances(t) if "any" in speakers or u.speaker in speakers]
        if texts:
            engine.embedder.embed(list(dict.fromkeys(texts)))
    return [(call_score(engine.checklist, v), tag_needs(t, engine.embedder))
            for t, v in zip(transcripts, verdicts, strict=True)]


# Scores are persisted in DuckDB, not by Prefect's result cache.
score_task = task(name="apply-checklist", cache_policy=NO_CACHE)(score_one)
score_many_task = task(name="apply-checklist-many", cache_policy=NO_CACHE)(score_many)
