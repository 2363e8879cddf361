"""Prefect flows: score a batch of recordings (discover → transcribe → classify → store).

Tasks are plain functions that compute; the flow is the single writer to DuckDB. Every stage is
restartable: a recording already scored under this checklist version is skipped, a stored
transcript is reused instead of transcribing again, and a failure is recorded with its reason
while the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from callqa.models.asr import AsrOptions, transcribe_audio
from callqa.models.audio import AudioError, load_audio
from callqa.models.runtimes import get_runtime
from callqa.pipelines.batch import BatchEntry, discover, file_sha256
from callqa.pipelines.store import DEFAULT_DB, Store, parse_started_at
from callqa.qa_rules.checklist import Checklist, load_checklist
from callqa.qa_rules.engine import ChecklistEngine
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from callqa.records import CallScore, Transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscribeResult:
    transcript: Transcript | None
    audio_info: dict[str, object] = field(default_factory=dict)
    status: str = "transcribed"  # transcribed | failed | no_speech
    reason: str | None = None
    message: str | None = None


def transcribe_recording(path: Path, options: AsrOptions, agent_channel: int = 0) -> TranscribeResult:
    """Decode and transcribe one file; bad input comes back as a failed result, never an exception."""
    t0 = time.perf_counter()
    try:
        audio = load_audio(path)
    except AudioError as e:
        return TranscribeResult(None, status="failed", reason=e.reason, message=e.message)
    info: dict[str, object] = {
        "duration_s": audio.duration, "channels": audio.source_channels, "sample_rate": audio.source_rate,
        "container": audio.container, "truncated": audio.truncated,
    }
    decode_s = time.perf_counter() - t0
    if audio.n_channels == 2 and agent_channel not in (0, 1):
        return TranscribeResult(None, info, "failed", "bad_config", f"agent_channel {agent_channel} is not 0 or 1")
    try:
        transcript = transcribe_audio(audio, get_runtime(options), options, agent_channel)
    except AudioError as e:
        status = "no_speech" if e.reason == "no_speech" else "failed"
        return TranscribeResult(None, info, status, e.reason, e.message)
    transcript.timings["decode"] = decode_s
    return TranscribeResult(transcript, info)


def _embedder():
    from callqa.models.text_encoder import get_encoder

    return get_encoder()


def make_engine(checklist: Checklist) -> ChecklistEngine:
    """An engine with the bundled multilingual sentence encoder."""
    return ChecklistEngine(checklist, _embedder())


# Results are persisted by the flow in DuckDB, not by Prefect's result cache (inputs hold a loaded model).
transcribe_task = task(name="transcribe-recording", task_run_name="transcribe {path.name}", cache_policy=NO_CACHE)(
    transcribe_recording
)


def _score(engine: ChecklistEngine, transcript: Transcript) -> CallScore:
    return engine.score(transcript)


score_task = task(name="score-transcript", cache_policy=NO_CACHE)(_score)


@dataclass
class RunSummary:
    run_id: str
    db: str
    counts: dict[str, int]
    failures: list[tuple[str, str, str]]  # (file, reason, message)

    def lines(self) -> list[str]:
        c = self.counts
        out = [f"run {self.run_id}: {c.get('found', 0)} found, {c.get('scored', 0)} scored, "
               f"{c.get('skipped', 0)} already done, {c.get('no_speech', 0)} no speech, {c.get('failed', 0)} failed"]
        out += [f"  {name}: {reason}: {msg}" for name, reason, msg in self.failures]
        return out


def _register(store: Store, rid: str, entry: BatchEntry) -> None:
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


def process_batch(
    source_dir: str | Path,
    manifest: str | Path | None = None,
    db: str | Path = DEFAULT_DB,
    checklist: str | Path = "sales_core",
    asr: AsrOptions | None = None,
    max_attempts: int = 3,
    progress: bool = True,
    tasks: bool = False,
) -> RunSummary:
    """The batch logic, callable with or without Prefect (the flow below wraps it with `tasks=True`,
    so each transcription and scoring is a Prefect task run)."""
    transcribe = transcribe_task if tasks else transcribe_recording
    score = score_task if tasks else _score
    from tqdm import tqdm

    opts = asr or AsrOptions()
    cl = load_checklist(checklist)
    entries = discover(Path(source_dir), Path(manifest) if manifest else None)
    run_id = uuid.uuid4().hex[:12]
    counts = {"found": len(entries), "scored": 0, "skipped": 0, "failed": 0, "no_speech": 0}
    failures: list[tuple[str, str, str]] = []
    engine: ChecklistEngine | None = None
    seen: set[str] = set()
    with Store(db) as store:
        store.save_checklist(cl)
        store.start_run(run_id, str(source_dir), cl)
        for entry in tqdm(entries, desc="calls", unit="call", disable=not progress):
            name = entry.path.name
            if entry.problem:
                counts["failed"] += 1
                failures.append((name, "unreadable", entry.problem))
                log.warning("%s: %s", name, entry.problem)
                continue
            rid = file_sha256(entry.path)
            if rid in seen or store.is_scored(rid, cl):
                counts["skipped"] += 1
                continue
            seen.add(rid)
            _register(store, rid, entry)
            transcript = store.load_transcript(rid)
            if transcript is None:
                row = store.con.execute(
                    "SELECT status, attempts, error_reason FROM recordings WHERE recording_id = ?", [rid]
                ).fetchone()
                if row[0] in ("failed", "no_speech") and (row[1] or 0) >= max_attempts:
                    counts["skipped"] += 1
                    continue
                result = transcribe(entry.path, opts, entry.agent_channel)
                store.upsert_recording(rid, **result.audio_info)
                if result.transcript is None:
                    counts["no_speech" if result.status == "no_speech" else "failed"] += 1
                    store.record_failure(rid, result.status, result.reason or "error", result.message or "")
                    failures.append((name, result.reason or "error", result.message or ""))
                    log.warning("%s: %s: %s", name, result.reason, result.message)
                    continue
                transcript = result.transcript
                store.save_transcript(rid, transcript)
            if engine is None:
                engine = make_engine(cl)
            store.save_score(rid, score(engine, transcript))
            counts["scored"] += 1
        store.finish_run(run_id, counts)
    return RunSummary(run_id, str(db), counts, failures)


@flow(name="score-recordings", flow_run_name="score {source_dir}", log_prints=True)
def score_recordings(
    source_dir: str,
    manifest: str | None = None,
    db: str = DEFAULT_DB,
    checklist: str = "sales_core",
    asr: AsrOptions | None = None,
    max_attempts: int = 3,
    progress: bool = True,
) -> RunSummary:
    """Score every new recording of a batch folder and store the results in DuckDB."""
    summary = process_batch(source_dir, manifest, db, checklist, asr, max_attempts, progress, tasks=True)
    logger = get_run_logger()
    for line in summary.lines():
        logger.info(line)
    return summary
