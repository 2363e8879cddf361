"""The run history `callqa status` reads: recent runs, recordings that failed, batch rows that never became
a recording, counts per status, the schema version. Every function takes a `Reader` (a `Store`, usually
`Store.open_readonly`, or a bare connection) and returns records from `callqa.records`."""

from __future__ import annotations

from callqa.pipelines.store.migrations import current_version
from callqa.pipelines.store.reader import Reader, connection

from callqa.records import RecordingFailure, RunRecord, UnreadableFile


def recent_runs(db: Reader, limit: int = 10) -> list[RunRecord]:
    """The latest `limit` runs, newest first (a run that never recorded its start last)."""
    rows = connection(db).execute(
        "SELECT run_id, status, started_at, finished_at, source_dir, checklist_id, checklist_version, "
        "n_found, n_scored, n_skipped, n_failed, n_no_speech, workers, orchestrator, host, pid "
        "FROM runs ORDER BY started_at DESC NULLS LAST LIMIT ?", [limit],
    ).fetchall()
    return [RunRecord(*r) for r in rows]


def current_failures(db: Reader) -> list[RecordingFailure]:
    """Every recording whose latest state is failed or no speech, most recent first."""
    rows = connection(db).execute(
        "SELECT file_name, status, error_reason, failure_kind, attempts, error, updated_at FROM recordings "
        "WHERE status IN ('failed', 'no_speech') ORDER BY updated_at DESC, file_name"
    ).fetchall()
    return [RecordingFailure(*r) for r in rows]


def unreadable_files(db: Reader) -> list[UnreadableFile]:
    """Batch rows that never became a recording (missing file, outside the batch), from the latest run that
    had any."""
    rows = connection(db).execute(
        "SELECT file, reason, message FROM run_failures WHERE recording_id IS NULL AND run_id = "
        "(SELECT f.run_id FROM run_failures f JOIN runs r USING (run_id) WHERE f.recording_id IS NULL "
        " ORDER BY r.started_at DESC LIMIT 1) ORDER BY file"
    ).fetchall()
    return [UnreadableFile(*r) for r in rows]


def status_counts(db: Reader) -> dict[str, int]:
    """Recordings per status (new, transcribed, scored, failed, no_speech, skipped)."""
    return dict(connection(db).execute("SELECT status, count(*) FROM recordings GROUP BY status").fetchall())


def schema_version(db: Reader) -> int:
    """The schema version of the database (the number of migrations applied)."""
    return current_version(connection(db))
