"""`callqa status`: recent runs, current failures and their reasons, and whether a run is writing now."""

from __future__ import annotations

import fcntl
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from callqa.pipelines.store import history
from callqa.pipelines.store.database import Store, WriterLock


def run_status(db: str | Path, limit: int = 10, wait: float = 10.0) -> dict[str, Any]:
    """Everything `callqa status` prints, as a dict (also its `--json` output)."""
    holder = WriterLock(db).holder()
    with Store.open_readonly(db, wait=wait) as store:
        runs = history.recent_runs(store, limit)
        failures = history.current_failures(store)
        unreadable = history.unreadable_files(store)
        totals = history.status_counts(store)
        version = history.schema_version(store)
    # the lock file names its holder only while the holder lives (it is emptied on release)
    active = holder if holder.get("pid") and _lock_held(db) else None
    return {
        "db": str(Path(db).resolve()), "schema_version": version, "active_run": active,
        "recordings": totals,
        "runs": [{k: (str(v) if v is not None and k in ("started_at", "finished_at") else v)
                  for k, v in asdict(r).items()} for r in runs],
        "failures": [{k: (str(v) if k == "at" and v is not None else v) for k, v in asdict(f).items()}
                     for f in failures],
        "unreadable": [asdict(u) for u in unreadable],
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
