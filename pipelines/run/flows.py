"""Prefect flows: score a batch of recordings (discover → transcribe → classify → store).

Tasks are plain functions that compute; one process is the single writer to DuckDB. Every stage is
restartable: a recording already scored under this checklist version is skipped, a stored
transcript is reused instead of transcribing again, and a failure is recorded with its reason and
kind (permanent: a property of the file, never retried; transient: retried on later runs up to
`max_attempts`) while the rest of the batch goes on.

A run holds the database's writer lock from start to end, but opens the DuckDB file only for its
short writes, so `callqa status` and `callqa scorecard` can read while a long batch transcribes.
Each call's results are written in transactions: a run killed at any instant leaves whole calls or
none, and the next run picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from callqa.models.asr import AsrOptions, transcribe_audio
from callqa.models.audio import AudioError, load_audio
from callqa.models.hints import call_options, merge_terms
from callqa.models.runtimes import get_runtime
from callqa.pipelines.run.batch import BatchEntry, discover
from callqa.pipelines.run.plan import plan_run
from callqa.pipelines.run.scale import load_partitions, mark_loaded, write_partition
from callqa.pipelines.run.scoring import (
    make_engine,
    score_many,
    score_many_task,
    score_one,
    score_task,
    scoring_models,
)
from callqa.pipelines.run.timings import RunClock, StageClock
from callqa.pipelines.store.database import (
    DEFAULT_DB,
    Store,
    WriterLock,
    failure_kind,
    masked_text,
)
from callqa.pipelines.store.reads import recording_duration
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST, load_checklist
from callqa.qa_rules.engine import ChecklistEngine
from callqa.qa_rules.routing import CallAttributes, Route, load_routed_checklists, load_routing, route
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from callqa.records import CallScore, NeedTag, Transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscribeResult:
    transcript: Transcript | None
    audio_info: dict[str, object] = field(default_factory=dict)
    status: str = "transcribed"  # transcribed | failed | no_speech
    reason: str | None = None
    message: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # decode, model_load, speech (vad, asr...), job (s)


def transcribe_recording(path: Path, options: AsrOptions, agent_channel: int = 0) -> TranscribeResult:
    """Decode and transcribe one file; bad input comes back as a failed result, never an exception.
    (Anything else — out of memory, a broken model — raises: that is a transient failure.)"""
    clock = StageClock()
    with clock.stage("decode"):
        try:
            audio = load_audio(path)
        except AudioError as e:
            return TranscribeResult(None, status="failed", reason=e.reason, message=e.message)
        info: dict[str, object] = {
            "duration_s": audio.duration, "channels": audio.source_channels, "sample_rate": audio.source_rate,
            "container": audio.container, "truncated": audio.truncated,
        }
    if audio.n_channels == 2 and agent_channel not in (0, 1):
        return TranscribeResult(None, info, "failed", "bad_config", f"agent_channel {agent_channel} is not 0 or 1")
    with clock.stage("model_load"):
        runtime = get_runtime(options)
    try:
        # "speech": everything models/ did after decoding (VAD, diarization, language id, Whisper)
        with clock.stage("speech"):
            transcript = transcribe_audio(audio, runtime, options, agent_channel)
    except AudioError as e:
        status = "no_speech" if e.reason == "no_speech" else "failed"
        return TranscribeResult(None, info, status, e.reason, e.message,
                                {"decode": clock["decode"], "model_load": clock["model_load"]})
    transcript.timings["decode"] = clock["decode"]
    clock.add(transcript.timings, skip=("decode", "speech_s"))  # and whatever breakdown models/ reports
    return TranscribeResult(transcript, info, timings=clock.times)


def transcribe_job(path: Path, options: AsrOptions, agent_channel: int = 0, recording_id: str | None = None,
                   stage_dir: str | None = None, mask_pii: bool = True) -> TranscribeResult:
    """What a worker runs: transcribe, and with a stage folder also leave the transcript there as a
    Parquet partition (so it outlives the run that asked for it), its text masked like the store's
    (the worker is another process: the parent's text filter does not reach it)."""
    clock = StageClock()
    with clock.stage("job"):
        result = transcribe_recording(path, options, agent_channel)
        if stage_dir and recording_id and result.transcript is not None:
            write_partition(stage_dir, recording_id, path, result.transcript, result.audio_info,
                            mask=_mask_pii if mask_pii else None)
    result.timings["job"] = clock["job"]
    return result


# Results are persisted in DuckDB, not by Prefect's result cache (inputs hold options, outputs transcripts).
# Unexpected errors (transient) are retried once within the run; bad input never raises, so is not retried.
transcribe_task = task(name="transcribe-recording", task_run_name="transcribe {path.name}", cache_policy=NO_CACHE,
                       retries=1, retry_delay_seconds=2)(transcribe_job)


def _mask_pii(text: str) -> str:
    from callqa.qa_rules.pii import mask_pii

    return mask_pii(text)


@dataclass
class RunSummary:
    run_id: str
    db: str
    counts: dict[str, int]
    failures: list[tuple[str, str, str]]  # (file, reason, message)
    kinds: dict[str, str] = field(default_factory=dict)  # file → permanent | transient
    timings: dict[str, Any] = field(default_factory=dict)  # plan_s, total_s, calls: [{file, decode, asr, ...}]

    def lines(self) -> list[str]:
        c = self.counts
        out = [f"run {self.run_id}: {c.get('found', 0)} found, {c.get('scored', 0)} scored, "
               f"{c.get('skipped', 0)} already done, {c.get('no_speech', 0)} no speech, {c.get('failed', 0)} failed"
               + (f", {c['routed_out']} not scored by routing" if "routed_out" in c else "")]
        out += [f"  {name}: {reason}: {msg}" + (" (will retry)" if self.kinds.get(name) == "transient" else "")
                for name, reason, msg in self.failures]
        return out

    def markdown(self) -> str:
        """The run summary as the Prefect artifact shows it."""
        c = self.counts
        out = [f"# callqa run `{self.run_id}`", "", f"database: `{self.db}`", "",
               "| found | scored | already done | no speech | failed |", "|---|---|---|---|---|",
               f"| {c.get('found', 0)} | {c.get('scored', 0)} | {c.get('skipped', 0)} | {c.get('no_speech', 0)} "
               f"| {c.get('failed', 0)} |", ""]
        if self.failures:
            out += ["## Failures", "", "| file | reason | kind | message |", "|---|---|---|---|"]
            out += [f"| {n} | {r} | {self.kinds.get(n, failure_kind(r))} | {m.replace('|', '/')} |"
                    for n, r, m in self.failures]
        else:
            out.append("No failures.")
        return "\n".join(out)


def worker_asr_options(opts: AsrOptions, workers: int) -> AsrOptions:
    """Split the cores between worker processes unless threads were set explicitly."""
    if workers > 1 and opts.cpu_threads == 0:
        return dataclasses.replace(opts, cpu_threads=max(1, (os.cpu_count() or 1) // workers))
    return opts


def _crashed(e: BaseException) -> TranscribeResult:
    return TranscribeResult(None, status="failed", reason="exception", message=f"{type(e).__name__}: {e}"[:500])


def _run_jobs(jobs: list[tuple[BatchEntry, str]], opts: AsrOptions, workers: int, tasks: bool,
              stage_dir: str | None, mask_pii: bool = True) -> Iterator[tuple[BatchEntry, str, TranscribeResult]]:
    """Transcribe `jobs`, yielding each result as soon as it is ready (completion order)."""
    if not jobs:
        return
    if tasks:  # the flow's task runner decides where this runs: threads, processes, or a Dask cluster
        from prefect.futures import as_completed as prefect_completed

        futures = {}
        for entry, rid in jobs:
            fut = transcribe_task.submit(entry.path, call_options(opts, entry.metadata), entry.agent_channel, rid,
                                         stage_dir, mask_pii)
            futures[fut.task_run_id] = (fut, entry, rid)
        for fut in prefect_completed([f for f, _, _ in futures.values()]):
            _, entry, rid = futures[fut.task_run_id]
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - a task that failed after its retries: transient
                result = _crashed(e)
            yield entry, rid, result
    elif workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futs = {pool.submit(transcribe_job, e.path, call_options(opts, e.metadata), e.agent_channel, rid,
                                stage_dir, mask_pii): (e, rid) for e, rid in jobs}
            for fut in as_completed(futs):
                entry, rid = futs[fut]
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker that died or raised: transient
                    result = _crashed(e)
                yield entry, rid, result
    else:
        for entry, rid in jobs:
            try:
                result = transcribe_job(entry.path, call_options(opts, entry.metadata), entry.agent_channel, rid,
                                        stage_dir, mask_pii)
            except Exception as e:  # noqa: BLE001
                result = _crashed(e)
            yield entry, rid, result


@dataclass(frozen=True)
class RunConfig:
    """How a batch is run, everything but where its recordings are: declared once, built once by the CLI (or
    the scheduled flow from its parameters) and handed down.

    workers: transcription processes when run without Prefect (with Prefect: the task runner's).
    wait: seconds to queue behind another run writing the same database before giving up.
    stage_dir: shared folder where workers leave transcripts as Parquet partitions (see scale.py).
    mask_pii: mask phone, ID and bank card numbers in stored transcripts and evidence (scoring sees raw text).
    score_chunk: calls whose transcript is stored are scored this many at a time (`score_many`).
    routing: a routing file (qa_rules/routing.py; "default": the bundled one): each call's checklist is picked by
    its attributes instead of `checklist`, voicemails and calls with too little speech are stored as skipped."""

    db: str | Path = DEFAULT_DB
    checklist: str | Path = DEFAULT_CHECKLIST
    asr: AsrOptions = field(default_factory=AsrOptions)
    max_attempts: int = 3
    progress: bool = True
    workers: int = 1
    wait: float = 0.0
    stage_dir: str | Path | None = None
    mask_pii: bool = True
    score_chunk: int = 64
    routing: str | Path | None = None

    def flow_parameters(self) -> dict[str, Any]:
        """The same settings as the `score-recordings` flow's parameters (a Prefect flow takes plain values)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "score_chunk"}


def process_batch(source_dir: str | Path, manifest: str | Path | None = None, config: RunConfig | None = None, *,
                  tasks: bool = False, orchestrator: str | None = None, flow_run_id: str | None = None,
                  **overrides: Any) -> RunSummary:
    """The batch logic, callable with or without Prefect (the flow below wraps it with `tasks=True`,
    so each transcription, and the scoring of each new call or chunk of stored calls, is a Prefect task run).
    `config` says how (`RunConfig`); keyword `overrides` replace single fields of it (`db=..., progress=False`)."""
    if config is not None and not isinstance(config, RunConfig):
        raise TypeError(f"process_batch: config must be a RunConfig, not {type(config).__name__} (db=... is a keyword)")
    cfg = dataclasses.replace(config or RunConfig(), **overrides)
    db, checklist, max_attempts, progress = cfg.db, cfg.checklist, cfg.max_attempts, cfg.progress
    workers, wait, stage_dir, mask_pii, score_chunk, routing = (cfg.workers, cfg.wait, cfg.stage_dir, cfg.mask_pii,
                                                                cfg.score_chunk, cfg.routing)
    asr = cfg.asr
    clock = RunClock()  # the timings the benches read (run/timings.py)
    score, scores = (score_task, score_many_task) if tasks else (score_one, score_many)
    from tqdm import tqdm

    opts = worker_asr_options(asr or AsrOptions(), workers)
    cl = load_checklist(checklist)
    stage = str(stage_dir) if stage_dir else None
    run_id = uuid.uuid4().hex[:12]
    counts = {"found": 0, "scored": 0, "skipped": 0, "failed": 0, "no_speech": 0}
    rules = load_routing(routing) if routing else None
    routed = load_routed_checklists(rules) if rules else {}
    versions = {c.id: c.version for c in routed.values()}
    if rules:
        counts["routed_out"] = 0
        cl = routed[rules.default]  # what the run records as its checklist: the routing's default
    if cl.vocabulary:  # the checklist's product terms, for every call (each call's own terms go first)
        opts = dataclasses.replace(opts, vocabulary=merge_terms(cl.vocabulary, opts.vocabulary))
    failures: list[tuple[str, str, str]] = []
    kinds: dict[str, str] = {}

    def fail(store: Store, rid: str | None, name: str, status: str, reason: str, message: str) -> None:
        kinds[name] = store.record_failure(rid, status, reason, message, run_id, name)
        counts["no_speech" if status == "no_speech" else "failed"] += 1
        failures.append((name, reason, message))
        log.warning("%s: %s: %s", name, reason, message)

    with WriterLock(db, wait, what=f"callqa run {source_dir}"), masked_text(_mask_pii if mask_pii else None):
        entries = discover(Path(source_dir), Path(manifest) if manifest else None)
        counts["found"] = len(entries)
        # 1. plan: one short write session
        with Store(db, lock=False, wait=60) as store:
            if n := store.mark_interrupted_runs():
                log.warning("%d earlier run(s) were cut off before finishing; their finished calls are kept", n)
            store.save_checklist(cl)
            for other in routed.values():
                store.save_checklist(other)
            store.start_run(run_id, str(source_dir), cl, workers, orchestrator or ("prefect" if tasks else "none"),
                            flow_run_id)
            if stage:
                load_partitions(store, stage)
            done = (lambda st, rid: st.is_routed_and_done(rid, rules, versions)) if rules else None
            plan = plan_run(store, entries, cl, max_attempts, fail, done=done)
        counts["skipped"] += plan.skipped
        clock.planned()
        log.info("run %s: %d to transcribe, %d to score from stored transcripts, %d already done",
                 run_id, len(plan.to_transcribe), len(plan.to_score), counts["skipped"])

        engine: ChecklistEngine | None = None
        routed_engines: dict[str, ChecklistEngine] = {}
        models_of: dict[int, dict] = {}  # engine → its model manifest part, hashed once per run, not per call
        bar = tqdm(total=len(plan.to_score) + len(plan.to_transcribe), desc="calls", unit="call", disable=not progress)

        def get_engine(timing: StageClock) -> ChecklistEngine:
            nonlocal engine
            if engine is None:
                with timing.stage("engine_load"):
                    engine = make_engine(cl)
            return engine

        def routed_engine(name: str, timing: StageClock) -> ChecklistEngine:
            if name not in routed_engines:
                with timing.stage("engine_load"):
                    routed_engines[name] = make_engine(routed[name])
            return routed_engines[name]

        def score_routed(entry: BatchEntry, transcript: Transcript, duration: float | None,
                         timing: StageClock) -> tuple[Any, ChecklistEngine | None, tuple[Route, Any]]:
            """(scored or None, engine or None, route info) for one call under the routing file."""
            attrs = CallAttributes(entry.direction, entry.language or transcript.language,
                                   duration or transcript.duration or None, dict(entry.metadata or {}))
            decision = route(rules, attrs, transcript)
            name = decision.checklist
            if name is None:
                log.info("%s: not scored: %s", entry.path.name, decision.message)
                return None, None, (decision, None)
            eng = routed_engine(name, timing)
            with timing.stage("checklist"):
                scored = score(eng, transcript)
            return scored, eng, (decision, routed[name])

        def store_call(timing: StageClock, rid: str, result: TranscribeResult | None,
                       scored: tuple[CallScore, list[NeedTag]] | None, eng: ChecklistEngine | None = None,
                       routed_to: tuple[Route, Any] | None = None) -> None:
            """One call's short write session (its own transactions), then its timing record."""
            name = timing["file"]
            with timing.stage("storage"), Store(db, lock=False, wait=60) as store:
                if result is not None:
                    store.upsert_recording(rid, **result.audio_info)
                    if result.transcript is None:
                        fail(store, rid, name, result.status, result.reason or "error", result.message or "")
                    else:
                        store.save_transcript(rid, result.transcript)
                        if stage:
                            mark_loaded(store, stage, rid)
                if scored is not None:
                    # tags first: a run killed between the two writes leaves the call unscored, so the next run
                    # scores (and tags) it again instead of skipping a scored call that has no tags
                    store.save_tags(rid, scored[1])
                    scorer = eng or get_engine(timing)
                    if id(scorer) not in models_of:
                        models_of[id(scorer)] = scoring_models(scorer)
                    store.save_score(rid, scored[0], models_of[id(scorer)])
                    counts["scored"] += 1
                    log.info("scored %s: %.0f", name, scored[0].score)
                if routed_to is not None and rules is not None:  # after the score: a crash between re-routes it
                    store.save_route(rid, rules, *routed_to)
                    if routed_to[0].reason:
                        counts["routed_out"] += 1
            clock.finish(timing)  # "wall": this call's share of the run (waits included)
            bar.update(1)

        # 2. calls with a stored transcript: scored `score_chunk` at a time, each then stored on its own (under a
        # routing file, one at a time: each may go to another checklist)
        step = max(1, score_chunk)
        for entry, rid in plan.to_score if rules else []:
            with Store(db, lock=False, wait=60) as store:
                transcript = store.load_transcript(rid)
                duration = recording_duration(store, rid)
            timing = clock.call(entry.path.name)
            if transcript is None:
                store_call(timing, rid, None, None)
                continue
            store_call(timing, rid, None, *score_routed(entry, transcript, duration, timing))
        for i in range(0, len(plan.to_score) if not rules else 0, step):
            with Store(db, lock=False, wait=60) as store:
                chunk = [(e, rid, store.load_transcript(rid)) for e, rid in plan.to_score[i:i + step]]
            chunk_timings = [clock.call(e.path.name) for e, _, _ in chunk]
            transcripts = [t for _, _, t in chunk if t is not None]
            eng = get_engine(chunk_timings[0]) if transcripts else None
            scoring = StageClock()
            with scoring.stage("checklist"):
                results = iter(scores(eng, transcripts) if transcripts else [])
            # The chunk is scored in one go: each of its calls is given an even share of the scoring time as its
            # "checklist", and of the chunk's time so far (transcripts loaded, engine, scoring) in its "wall"
            share, spent = scoring["checklist"] / max(1, len(transcripts)), clock.since_last()
            for (_, rid, transcript), timing in zip(chunk, chunk_timings, strict=True):
                if transcript is not None:
                    timing.set("checklist", share)
                clock.charge(spent / len(chunk))  # store_call adds the call's own storage time
                store_call(timing, rid, None, next(results) if transcript is not None else None)

        # 3. transcribe (in parallel where configured); score and store each call as it arrives (ASR dominates)
        for entry, rid, result in _run_jobs(plan.to_transcribe, opts, workers, tasks, stage, mask_pii):
            timing = clock.call(entry.path.name, result.timings)
            scored = None
            if result.transcript is not None and rules is not None:
                store_call(timing, rid, result, *score_routed(entry, result.transcript,
                                                              result.audio_info.get("duration_s"), timing))
                continue
            if result.transcript is not None:
                eng = get_engine(timing)
                with timing.stage("checklist"):
                    scored = score(eng, result.transcript)
            store_call(timing, rid, result, scored)
        bar.close()
        with Store(db, lock=False, wait=60) as store:
            store.finish_run(run_id, counts)
    return RunSummary(run_id, str(db), counts, failures, kinds, clock.summary(workers))


def _publish(summary: RunSummary) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key="callqa-run-summary", markdown=summary.markdown(),
                             description=f"callqa run {summary.run_id}: counts and failures")


# One transcription at a time by default (the model is one per process); see run_scoring_flow for more.
@flow(name="score-recordings", flow_run_name="score {source_dir}", log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=1))
def score_recordings(
    source_dir: str,
    manifest: str | None = None,
    db: str = DEFAULT_DB,
    checklist: str = DEFAULT_CHECKLIST,
    asr: AsrOptions | None = None,
    max_attempts: int = 3,
    progress: bool = True,
    workers: int = 1,
    wait: float = 0.0,
    stage_dir: str | None = None,
    orchestrator: str = "prefect",
    mask_pii: bool = True,
    routing: str | None = None,
) -> RunSummary:
    """Score every new recording of a batch folder and store the results in DuckDB.
    Publishes the run summary (counts, failures) as the markdown artifact `callqa-run-summary`."""
    from prefect.runtime import flow_run

    config = RunConfig(db, checklist, asr or AsrOptions(), max_attempts, progress, workers, wait, stage_dir, mask_pii,
                       routing=routing)
    summary = process_batch(source_dir, manifest, config, tasks=True, orchestrator=orchestrator,
                            flow_run_id=str(flow_run.get_id() or ""))
    logger = get_run_logger()
    for line in summary.lines():
        logger.info(line)
    _publish(summary)
    return summary


def task_runner_for(workers: int = 1, dask: bool = False, dask_address: str | None = None) -> tuple[Any, str]:
    """(task runner, orchestrator name) for `workers`: one thread (1), a process pool (>1), or prefect-dask's
    DaskTaskRunner (`dask=True`: a LocalCluster of `workers` processes; `dask_address`: an existing scheduler,
    workers on any host). `callqa run` and `callqa serve`'s deployment both pick theirs here."""
    if dask or dask_address:
        from callqa.pipelines.run.scale import dask_task_runner

        return dask_task_runner(dask_address, workers), "prefect+dask"
    if workers > 1:
        return ProcessPoolTaskRunner(max_workers=workers), "prefect"
    return ThreadPoolTaskRunner(max_workers=1), "prefect"


def scoring_flow_for(workers: int = 1, dask: bool = False, dask_address: str | None = None) -> tuple[Any, str]:
    """(`score-recordings` with the task runner for these workers, orchestrator name): the same flow, its name
    unchanged, so a deployment of it is still `score-recordings/...` whichever runner it has."""
    runner, orchestrator = task_runner_for(workers, dask, dask_address)
    return score_recordings.with_options(task_runner=runner), orchestrator


def run_scoring_flow(source_dir: str, *, workers: int = 1, dask: bool = False, dask_address: str | None = None,
                     **params: Any) -> RunSummary:
    """Run `score-recordings` once with the task runner for `workers` (see `task_runner_for`)."""
    flow_, orchestrator = scoring_flow_for(workers, dask, dask_address)
    return flow_(source_dir, workers=workers, orchestrator=orchestrator, **params)
