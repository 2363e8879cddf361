"""`callqa status`: recent runs, current failures and their reasons, and whether a run is writing now."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from callqa.pipelines.store.database import Store, WriterLock


def run_status(db: str | Path, limit: int = 10, wait: float = 10.0) -> dict[str, Any]:
    """Everything `callqa status` prints, as a dict (also its `--json` output)."""
    holder = WriterLock(db).holder()
    with Store(db, read_only=True, wait=wait) as store:
        con = store.con
        runs = con.execute(
            "SELECT run_id, status, started_at, finished_at, source_dir, checklist_id, checklist_version, "
            "n_found, n_scored, n_skipped, n_failed, n_no_speech, workers, orchestrator, host, pid "
            "FROM runs ORDER BY started_at DESC NULLS LAST LIMIT ?", [limit],
        ).fetchall()
        run_cols = ["run_id", "status", "started_at", "finished_at", "source_dir", "checklist_id",
                    "checklist_version", "found", "scored", "skipped", "failed", "no_speech", "workers",
                    "orchestrator", "host", "pid"]
        failures = con.execute(
            "SELECT file_name, status, error_reason, failure_kind, attempts, error, updated_at FROM recordings "
            "WHERE status IN ('failed', 'no_speech') ORDER BY updated_at DESC, file_name"
        ).fetchall()
        fail_cols = ["file", "status", "reason", "kind", "attempts", "message", "at"]
        # rows that never became a recording (missing file, outside the batch), from the latest run that had any
        unreadable = con.execute(
            "SELECT file, reason, message FROM run_failures WHERE recording_id IS NULL AND run_id = "
            "(SELECT f.run_id FROM run_failures f JOIN runs r USING (run_id) WHERE f.recording_id IS NULL "
            " ORDER BY r.started_at DESC LIMIT 1) ORDER BY file"
        ).fetchall()
        totals = dict(con.execute("SELECT status, count(*) FROM recordings GROUP BY status").fetchall())
        from callqa.pipelines.store.migrations import current_version

        version = current_version(con)
    # the lock file names its holder only while the holder lives (it is emptied on release)
    active = holder if holder.get("pid") and _lock_held(db) else None
    return {
        "db": str(Path(db).resolve()), "schema_version": version, "active_run": active,
        "recordings": totals,
        "runs": [{k: (str(v) if v is not None and k in ("started_at", "finished_at") else v)
                  for k, v in zip(run_cols, r, strict=True)} for r in runs],
        "failures": [{k: (str(v) if k == "at" and v is not None else v) for k, v in zip(fail_cols, r, strict=True)}
                     for r in failures],
        "unreadable": [{"file": f, "reason": r, "message": m} for f, r, m in unreadable],
    }


def _lock_held(db: str | Path) -> bool:
    """Whether a live process holds the writer lock (a shared-lock probe: writes nothing)."""
    path = WriterLock(db).path
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def format_status(st: dict[str, Any]) -> str:
    out = [f"database: {st['db']} (schema v{st['schema_version']})"]
    a = st["active_run"]
    out.append(f"writing now: {a.get('what')} (pid {a.get('pid')} on {a.get('host')}, since {a.get('since')})"
               if a else "writing now: nothing")
    rec = st["recordings"]
    out.append("recordings: " + (", ".join(f"{n} {s}" for s, n in sorted(rec.items())) or "none"))
    out += ["", "recent runs:"]
    if not st["runs"]:
        out.append("  (none)")
    for r in st["runs"]:
        started = (r["started_at"] or "")[:19]
        counts = (f"{r['found'] or 0} found, {r['scored'] or 0} scored, {r['skipped'] or 0} already done, "
                  f"{r['no_speech'] or 0} no speech, {r['failed'] or 0} failed")
        if r["status"] != "finished":
            counts = "no counts (" + ("still running" if r["status"] == "running" else "cut off") + ")"
        out.append(f"  {r['run_id']}  {started}  {r['status'] or '?':<11}  {counts}  [{r['source_dir']}]")
    out += ["", "failures (latest state of each recording):"]
    if not st["failures"] and not st["unreadable"]:
        out.append("  (none)")
    for f in st["failures"]:
        retry = "will not retry" if f["kind"] == "permanent" else f"retried so far: {f['attempts']}"
        out.append(f"  {f['file']}: {f['reason'] or f['status']} ({f['kind'] or '?'}, {retry}): {f['message'] or ''}")
    for f in st["unreadable"]:
        out.append(f"  {f['file']}: {f['reason']}: {f['message']}")
    return "\n".join(out)
