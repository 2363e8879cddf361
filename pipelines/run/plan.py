"""Plan a batch run: which recordings to transcribe, which only need scoring, which to leave alone.

`process_batch` (flows.py) calls `plan_run` once per run, inside its first short write session: every
readable entry is registered in `recordings` (its manifest fields, status `new` when first seen), and sorted by
what the database already holds for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from callqa.pipelines.run.batch import BatchEntry, file_sha256
from callqa.pipelines.store.database import Store, parse_started_at
from callqa.qa_rules.checklist import Checklist

# fail(store, recording_id or None, file name, status, reason, message): records a failure (flows.py counts it)
FailFn = Callable[[Store, str | None, str, str, str, str], None]


@dataclass
class RunPlan:
    """What a run has to do, as (entry, recording id) pairs in batch order."""

    to_transcribe: list[tuple[BatchEntry, str]] = field(default_factory=list)
    to_score: list[tuple[BatchEntry, str]] = field(default_factory=list)  # transcript already stored
    skipped: int = 0  # already scored under this checklist version, a duplicate file, or a failure not retried


def plan_run(store: Store, entries: list[BatchEntry], checklist: Checklist, max_attempts: int,
             fail: FailFn, done: Callable[[Store, str], bool] | None = None) -> RunPlan:
    """Register `entries` in `store` and decide, per entry, what this run does with it.

    - an unreadable entry (missing file, outside the batch: `entry.problem`) is reported through `fail` with no
      recording id, and not planned;
    - `done(store, recording_id)`, when given, replaces "already scored under `checklist`" (a routing file: scored
      under the checklist it was routed to, or skipped by routing);
    - a recording (identified by its content hash) already scored under `checklist`'s id and version, or a second
      copy of a file seen earlier in this batch, is skipped;
    - a recording whose transcript is stored goes to `to_score` (no ASR needed, e.g. a new checklist version);
    - a recording whose last attempt failed is skipped when the failure is permanent or it has had
      `max_attempts` attempts; every other recording goes to `to_transcribe`.
    """
    plan = RunPlan()
    seen: set[str] = set()
    for entry in entries:
        name = entry.path.name
        if entry.problem:
            fail(store, None, name, "failed", entry.reason or "unreadable", entry.problem)
            continue
        rid = file_sha256(entry.path)
        if rid in seen or (done(store, rid) if done else store.is_scored(rid, checklist)):
            plan.skipped += 1
            continue
        seen.add(rid)
        register(store, rid, entry)
        if store.load_transcript(rid) is not None:
            plan.to_score.append((entry, rid))
            continue
        state = store.recording_state(rid)  # registered just above
        if state.status in ("failed", "no_speech") and (state.failure_kind == "permanent"
                                                        or state.attempts >= max_attempts):
            plan.skipped += 1  # left with its reason: bad bytes do not improve, or out of attempts
            continue
        plan.to_transcribe.append((entry, rid))
    return plan


def register(store: Store, rid: str, entry: BatchEntry) -> None:
    """Insert or update a recording's row from its batch entry (status `new` only when first seen)."""
    aware, local = parse_started_at(entry.started_at)
    fields = dict(
        path=str(entry.path), file_name=entry.path.name, size_bytes=entry.path.stat().st_size,
        call_id=entry.call_id, agent_id=entry.agent_id, customer_id=entry.customer_id, started_at=aware,
        started_local=local, language=entry.language, direction=entry.direction,
        agent_channel=entry.agent_channel, metadata=entry.metadata,
    )
    if store.recording_status(rid) is None:
        fields["status"] = "new"
    store.upsert_recording(rid, **fields)
