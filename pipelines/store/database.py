"""The DuckDB store: schema, idempotent writes, and the queries reports use.

One process writes a database file at a time (DuckDB's rule); flows compute in tasks and persist
through one `Store`. Identity of a recording is the SHA-256 of its bytes; verdicts are keyed by
(recording, checklist id, checklist version, item), so re-scoring with a new checklist version adds
rows and never overwrites history.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from callqa.models.confidence import evidence_flag
from callqa.models.weights import BUNDLED_WHISPER, bundled_whisper_stamp
from callqa.pipelines.store.migrations import LATEST, current_version, migrate
from callqa.qa_rules.checklist import Checklist, parse_checklist
from callqa.qa_rules.routing import Route, Routing

from callqa.records import CallScore, Evidence, ItemVerdict, NeedTag, RecordingState, Segment, Transcript

log = logging.getLogger(__name__)

SEGMENT_COLUMNS = ("recording_id, seg_idx, speaker, start_s, end_s, text, confidence, avg_logprob, no_speech_prob, "
                   "compression_ratio")

# The ISO week of the call's local wall-clock time, as 'YYYY-Www'.
WEEK_EXPR = "isoyear(r.started_local) || '-W' || lpad(CAST(week(r.started_local) AS VARCHAR), 2, '0')"


def latest_checklist_version(con: duckdb.DuckDBPyConnection, checklist_id: str) -> int | None:
    row = con.execute(
        "SELECT max(checklist_version) FROM call_scores WHERE checklist_id = ?", [checklist_id]
    ).fetchone()
    return row[0] if row else None

DEFAULT_DB = "callqa.duckdb"
SCHEMA_VERSION = LATEST  # see migrations.py: the schema is the ordered list of migrations there

# Failure reasons that do not change on a retry (the bytes are what they are): recorded once, never retried.
PERMANENT_REASONS = frozenset({"empty", "not_audio", "corrupt", "unsupported", "no_speech", "bad_config",
                               "outside_batch", "symlink_outside", "not_found"})


def stored_checklist(con: duckdb.DuckDBPyConnection, checklist_id: str, version: int) -> Checklist:
    """The checklist exactly as it was when its verdicts were stored, rebuilt from its stored YAML."""
    row = con.execute("SELECT source FROM checklists WHERE checklist_id = ? AND version = ?",
                      [checklist_id, version]).fetchone()
    if not row or not row[0]:
        raise LookupError(f"checklist {checklist_id!r} v{version} is not stored in this database")
    return parse_checklist(row[0], source=f"<stored {checklist_id} v{version}>")


def failure_kind(reason: str | None) -> str:
    """'permanent' for a property of the file, 'transient' for anything else (retried up to the limit)."""
    return "permanent" if reason in PERMANENT_REASONS else "transient"


# --- hook for text written to the database ------------------------------------------------------
# Every transcript text and evidence quote passes through these functions before it is stored,
# e.g. PII masking from qa_rules: `store.register_text_filter(mask_pii)`. Scoring sees the raw text.
_TEXT_FILTERS: list[Callable[[str], str]] = []


def register_text_filter(fn: Callable[[str], str]) -> None:
    """Apply `fn` to every segment text and evidence quote before it is written (idempotent per fn)."""
    if fn not in _TEXT_FILTERS:
        _TEXT_FILTERS.append(fn)


def unregister_text_filter(fn: Callable[[str], str]) -> None:
    if fn in _TEXT_FILTERS:
        _TEXT_FILTERS.remove(fn)


@contextmanager
def masked_text(fn: Callable[[str], str] | None) -> Iterator[None]:
    """Apply `fn` to stored text for the duration of the block (nothing when `fn` is None)."""
    if fn is None:
        yield
        return
    register_text_filter(fn)
    try:
        yield
    finally:
        unregister_text_filter(fn)


def stored_text(text: str) -> str:
    for fn in _TEXT_FILTERS:
        text = fn(text)
    return text


class DatabaseBusy(RuntimeError):
    """Another process is writing the database; the message says who and what to do."""


class WriterLock:
    """One writing run per database file: an exclusive `flock` on `<db>.lock`, which also records who holds
    it (pid, host, start time, command). The kernel drops the lock when the holder dies, even by SIGKILL,
    so a crashed run never leaves a stale lock behind."""

    def __init__(self, db: str | Path, wait: float = 0.0, what: str = "callqa"):
        self.db = Path(db)
        self.path = self.db.with_name(self.db.name + ".lock")
        self.wait = wait
        self.what = what
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise DatabaseBusy(busy_message(self.db, self.holder())) from None
                if not announced:
                    log.info("%s; waiting up to %.0f s", busy_message(self.db, self.holder()), self.wait)
                    announced = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                                  "since": datetime.now().astimezone().isoformat(timespec="seconds")}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy_message(db: Path, holder: dict[str, Any]) -> str:
    who = (f"{holder.get('what', 'a callqa run')} (pid {holder.get('pid')} on {holder.get('host')}, "
           f"since {holder.get('since')})") if holder.get("pid") else "another process"
    return (f"database {db} is being written by {who}; only one run may write a database at a time. "
            "Wait for it to finish, or pass --wait SECONDS to queue behind it")


def connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried while another process holds DuckDB's own file lock (up to `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise
            if time.monotonic() >= deadline:
                holder = WriterLock(path).holder()
                raise DatabaseBusy(busy_message(path, holder) if holder else
                                   f"database {path} is locked by another process: {e}") from None
            time.sleep(0.2)


class Store:
    """A DuckDB file holding calls, transcripts, verdicts and scores."""

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False, wait: float = 5.0,
                 lock: bool = True):
        """Open (and, for writing, create or upgrade) a database. A writer takes the file's `WriterLock`
        unless the caller already holds it (`lock=False`); both kinds wait up to `wait` seconds for
        another process to let go, then raise `DatabaseBusy`."""
        self.path = Path(path)
        self._lock: WriterLock | None = None
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if lock:
                self._lock = WriterLock(self.path, wait).acquire()
        elif not self.path.exists():
            raise FileNotFoundError(f"no database at {self.path}; run `callqa run` first")
        try:
            self.con = connect(self.path, read_only, wait)
            if not read_only:
                migrate(self.con)
            elif (v := current_version(self.con)) < LATEST:
                log.warning("database %s has schema v%d (this callqa writes v%d); any `callqa run` upgrades it",
                            self.path, v, LATEST)
        except BaseException:
            if self._lock:
                self._lock.release()
            raise

    @classmethod
    def open_readonly(cls, path: str | Path = DEFAULT_DB, wait: float = 5.0) -> Store:
        """The store for readers (the CLI's read commands): a DuckDB read-only connection (no
        writer lock, no migration; it reads during a batch and cannot change the file). A missing file raises
        FileNotFoundError; a writer holding DuckDB's own lock longer than `wait` seconds, DatabaseBusy."""
        return cls(path, read_only=True, wait=wait)

    def close(self) -> None:
        self.con.close()
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # --- writes ------------------------------------------------------------------------------

    def checklist(self, checklist_id: str, version: int) -> Checklist:
        """A stored checklist version as a `Checklist`, rebuilt from the YAML it was stored with."""
        return stored_checklist(self.con, checklist_id, version)

    def save_checklist(self, checklist: Checklist) -> None:
        items = [
            {"id": it.id, "title": it.title, "description": it.description, "speaker": it.speaker,
             "weight": it.weight, "critical": it.critical, "polarity": it.polarity, "applies_if": it.applies_if,
             "miss_context": it.miss_context}
            for it in checklist.items
        ]
        existing = self.con.execute(
            "SELECT source FROM checklists WHERE checklist_id = ? AND version = ?", [checklist.id, checklist.version]
        ).fetchone()
        if existing is not None:
            if existing[0] != checklist.source:
                log.warning("checklist %s v%d differs from the stored copy; bump its version to keep history",
                            checklist.id, checklist.version)
            return
        self.con.execute(
            "INSERT INTO checklists (checklist_id, version, title, items, source) VALUES (?, ?, ?, ?, ?)",
            [checklist.id, checklist.version, json.dumps(checklist.title, ensure_ascii=False),
             json.dumps(items, ensure_ascii=False), checklist.source],
        )

    def upsert_recording(self, recording_id: str, **fields: Any) -> None:
        """Insert a recording or update the given fields (metadata is JSON-encoded)."""
        if "metadata" in fields and not isinstance(fields["metadata"], str | None):
            fields["metadata"] = json.dumps(fields["metadata"], ensure_ascii=False, default=str)
        exists = self.con.execute("SELECT 1 FROM recordings WHERE recording_id = ?", [recording_id]).fetchone()
        if exists:
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                self.con.execute(
                    f"UPDATE recordings SET {sets}, updated_at = current_timestamp WHERE recording_id = ?",
                    [*fields.values(), recording_id],
                )
        else:
            cols = ["recording_id", *fields]
            self.con.execute(
                f"INSERT INTO recordings ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                [recording_id, *fields.values()],
            )

    def save_transcript(self, recording_id: str, transcript: Transcript) -> None:
        """Replace a recording's segments (one transaction) and mark it transcribed. Text passes through
        the registered text filters (PII masking) first: `register_text_filter`."""
        with self.transaction() as con:
            con.execute("DELETE FROM segments WHERE recording_id = ?", [recording_id])
            rows = [(recording_id, i, s.speaker, s.start, s.end, stored_text(s.text), s.confidence, s.avg_logprob,
                     s.no_speech_prob, s.compression_ratio) for i, s in enumerate(transcript.segments)]
            if rows:
                con.executemany(f"INSERT INTO segments ({SEGMENT_COLUMNS}) VALUES ({', '.join('?' * 10)})", rows)
            con.execute(
                "UPDATE recordings SET status = 'transcribed', asr_runtime = ?, asr_model = ?, "
                "detected_language = ?, error = NULL, error_reason = NULL, updated_at = current_timestamp "
                "WHERE recording_id = ?",
                [transcript.runtime, transcript.model, transcript.language, recording_id],
            )

    def save_score(self, recording_id: str, score: CallScore, models: dict[str, Any] | None = None) -> None:
        """Store a call's verdicts and score for one checklist version (idempotent). `models` (encoder, heads,
        checklist: `scoring_models`) joined with the ASR that made the stored transcript is the score's model
        manifest, kept once in `model_manifests` and referenced from `call_scores.manifest_sha`."""
        key = [recording_id, score.checklist_id, score.checklist_version]
        segments = self._segments(recording_id)
        flags = [evidence_flag(segments, v.evidence) for v in score.verdicts]
        with self.transaction() as con:
            manifest_sha = self._save_manifest(con, recording_id, models) if models is not None else None
            con.execute(
                "DELETE FROM item_verdicts WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?", key
            )
            con.execute(
                "DELETE FROM call_scores WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?", key
            )
            con.executemany(
                "INSERT INTO item_verdicts (recording_id, checklist_id, checklist_version, item_id, verdict, "
                "confidence, evidence, reason, low_confidence_audio, audio_flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[*key, v.item_id, v.verdict, v.confidence,
                  json.dumps([asdict(e) | {"quote": stored_text(e.quote)} for e in v.evidence], ensure_ascii=False),
                  v.reason, flag is not None, flag]
                 for v, flag in zip(score.verdicts, flags, strict=True)],
            )
            con.execute(
                "INSERT INTO call_scores (recording_id, checklist_id, checklist_version, score, points, max_points, "
                "critical_fail, manifest_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [*key, score.score, score.points, score.max_points, score.critical_fail, manifest_sha],
            )
            con.execute(
                "UPDATE recordings SET status = 'scored', updated_at = current_timestamp WHERE recording_id = ?",
                [recording_id],
            )

    @staticmethod
    def _save_manifest(con: duckdb.DuckDBPyConnection, recording_id: str, models: dict[str, Any]) -> str:
        row = con.execute("SELECT asr_runtime, asr_model FROM recordings WHERE recording_id = ?",
                          [recording_id]).fetchone()
        runtime, model = row if row else (None, None)
        asr: dict[str, Any] = {"runtime": runtime, "model": model}
        if model == BUNDLED_WHISPER:
            asr["weights"] = f"whisper-base-{bundled_whisper_stamp()}"
        manifest = {**models, "asr": asr}
        text = json.dumps(manifest, sort_keys=True, ensure_ascii=False)
        sha = hashlib.sha256(text.encode()).hexdigest()
        con.execute("INSERT INTO model_manifests (manifest_sha, manifest) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [sha, text])
        return sha

    def save_tags(self, recording_id: str, tags: list[NeedTag]) -> None:
        """Replace a call's customer need tags (idempotent); evidence quotes pass the text filters."""
        with self.transaction() as con:
            con.execute("DELETE FROM call_tags WHERE recording_id = ?", [recording_id])
            if tags:
                con.executemany(
                    "INSERT INTO call_tags (recording_id, tag_id, title, confidence, evidence) VALUES (?, ?, ?, ?, ?)",
                    [[recording_id, t.tag_id, json.dumps(t.title, ensure_ascii=False), t.confidence,
                      json.dumps([asdict(e) | {"quote": stored_text(e.quote)} for e in t.evidence],
                                 ensure_ascii=False)] for t in tags],
                )

    def record_failure(self, recording_id: str | None, status: str, reason: str, message: str,
                       run_id: str | None = None, file: str | None = None) -> str:
        """Store a failure on the recording (latest state) and in `run_failures` (history); returns its kind."""
        kind = failure_kind(reason)
        with self.transaction() as con:
            if recording_id is not None:
                con.execute(
                    "UPDATE recordings SET status = ?, error_reason = ?, error = ?, failure_kind = ?, "
                    "attempts = coalesce(attempts, 0) + 1, updated_at = current_timestamp WHERE recording_id = ?",
                    [status, reason, message, kind, recording_id],
                )
            if run_id is not None:
                con.execute(
                    "INSERT INTO run_failures (run_id, recording_id, file, status, reason, kind, message) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", [run_id, recording_id, file or "", status, reason, kind, message],
                )
        return kind

    def start_run(self, run_id: str, source_dir: str, checklist: Checklist, workers: int = 1,
                  orchestrator: str = "none", flow_run_id: str | None = None) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO runs (run_id, started_at, source_dir, checklist_id, checklist_version, status, "
            "host, pid, workers, orchestrator, flow_run_id) VALUES (?, current_timestamp, ?, ?, ?, 'running', ?, ?, "
            "?, ?, ?)",
            [run_id, source_dir, checklist.id, checklist.version, socket.gethostname(), os.getpid(), workers,
             orchestrator, flow_run_id],
        )

    def mark_interrupted_runs(self) -> int:
        """Runs still 'running' when a new writer starts were cut off (the writer lock proves they are gone)."""
        n = self.con.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
        if n:
            self.con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        return n

    def finish_run(self, run_id: str, counts: dict[str, int]) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = current_timestamp, status = 'finished', n_found = ?, n_scored = ?, "
            "n_skipped = ?, n_failed = ?, n_no_speech = ? WHERE run_id = ?",
            [counts.get("found", 0), counts.get("scored", 0), counts.get("skipped", 0), counts.get("failed", 0),
             counts.get("no_speech", 0), run_id],
        )

    def save_route(self, recording_id: str, routing: Routing, route: Route, checklist: Checklist | None) -> None:
        """Store where routing sent a call; a skipped call is also marked `skipped` with its reason on the
        recording (not a failure: it is not retried, and it is not scored)."""
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO call_routes (recording_id, routing_id, routing_version, checklist_id, "
                "checklist_version, skip_reason, message, route_rule) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [recording_id, routing.id, routing.version, checklist.id if checklist else None,
                 checklist.version if checklist else None, route.reason, route.message, route.rule])
            if route.reason:
                con.execute("UPDATE recordings SET status = 'skipped', error_reason = ?, error = ?, "
                            "updated_at = current_timestamp WHERE recording_id = ?",
                            [route.reason, route.message, recording_id])

    def is_routed_and_done(self, recording_id: str, routing: Routing, versions: dict[str, int]) -> bool:
        """Routing already decided this call under this routing version and it was skipped, or it is scored under
        the current version (`versions`: checklist id → version) of the checklist it was routed to."""
        row = self.con.execute(
            "SELECT skip_reason, checklist_id FROM call_routes WHERE recording_id = ? AND routing_id = ? "
            "AND routing_version = ?", [recording_id, routing.id, routing.version]).fetchone()
        if row is None:
            return False
        if row[0] is not None:
            return True
        return row[1] in versions and self.con.execute(
            "SELECT 1 FROM call_scores WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?",
            [recording_id, row[1], versions[row[1]]]).fetchone() is not None

    # --- reads -------------------------------------------------------------------------------

    def recording_status(self, recording_id: str) -> str | None:
        row = self.con.execute("SELECT status FROM recordings WHERE recording_id = ?", [recording_id]).fetchone()
        return row[0] if row else None

    def is_scored(self, recording_id: str, checklist: Checklist) -> bool:
        return self.con.execute(
            "SELECT 1 FROM call_scores WHERE recording_id = ? AND checklist_id = ? AND checklist_version = ?",
            [recording_id, checklist.id, checklist.version],
        ).fetchone() is not None

    def recording_state(self, recording_id: str) -> RecordingState | None:
        row = self.con.execute("SELECT status, attempts, failure_kind FROM recordings WHERE recording_id = ?",
                               [recording_id]).fetchone()
        return RecordingState(row[0], row[1] or 0, row[2]) if row else None

    def item_verdicts(self, recording_id: str, checklist_id: str, version: int) -> list[ItemVerdict]:
        """The stored (automatic) verdicts of one call under one checklist version, as scored; [] if not scored."""
        rows = self.con.execute(
            "SELECT item_id, verdict, confidence, evidence, reason FROM item_verdicts WHERE recording_id = ? "
            "AND checklist_id = ? AND checklist_version = ?", [recording_id, checklist_id, version],
        ).fetchall()
        return [ItemVerdict(i, v, c, tuple(Evidence(**e) for e in json.loads(ev or "[]")), reason or "")
                for i, v, c, ev, reason in rows]

    def load_transcript(self, recording_id: str) -> Transcript | None:
        row = self.con.execute(
            "SELECT status, detected_language, duration_s, asr_runtime, asr_model FROM recordings "
            "WHERE recording_id = ?", [recording_id],
        ).fetchone()
        if row is None or row[0] not in ("transcribed", "scored"):
            return None
        return Transcript(self._segments(recording_id), row[1], row[2] or 0.0, row[3] or "", row[4] or "")

    def _segments(self, recording_id: str) -> tuple[Segment, ...]:
        """A recording's stored segments, with Whisper's confidence where it was kept (None before schema v8)."""
        rows = self.con.execute(
            "SELECT speaker, start_s, end_s, text, confidence, avg_logprob, no_speech_prob, compression_ratio "
            "FROM segments WHERE recording_id = ? ORDER BY seg_idx", [recording_id],
        ).fetchall()
        return tuple(Segment(sp, a, b, t, c, (), lp, ns, cr) for sp, a, b, t, c, lp, ns, cr in rows)

    def counts(self) -> dict[str, int]:
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("recordings", "segments", "item_verdicts", "call_scores")}


def parse_started_at(value: str | None) -> tuple[datetime | None, datetime | None]:
    """(aware timestamp, local wall-clock) from an ISO 8601 string; the wall clock decides the ISO week."""
    if not value:
        return None, None
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt, dt.replace(tzinfo=None)
