"""`callqa pipeline-bench --landing`: how long a file waits, from landing in the inbox to its score being stored,
under a running schedule, with the plain served flow (one worker) and with `callqa serve --dask` workers, side
by side in one run (same files, fresh databases, one Prefect server).

For each setting it starts a real `callqa serve INBOX --every S` process against a fresh Prefect server started
with scripts/prefect_server.sh (its database in a temporary folder), waits until a first scheduled run has completed
(the schedule is live), then lands calls one at a time (each copied under a dot-name, then renamed, as
docs/operations.md asks of uploaders), each once the previous one is stored, and last a burst of calls at once.
"Stored" is when the bench, asking DuckDB every 0.25 s, first sees the call's recording `scored`; the run that
stored it is the latest run (`callqa status`'s history) started before then, so the wait splits into "landed ->
run started" (the rest of the interval, the runner's poll, the flow-run process start) and "run started ->
stored" (plan, model loads, transcription, checklist, storage). With Dask it also reads each worker's start-up
from serve's log and its resident memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from callqa.pipelines.run.batch import file_sha256
from callqa.pipelines.store import history
from callqa.pipelines.store.database import Store

REPO = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO / "scripts" / "prefect_server.sh"


class LandingBenchError(RuntimeError):
    """A serve process or the server did not do what the bench waited for (the message has the log's tail)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path, n: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen | None = None,
          log: Path | None = None, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise LandingBenchError(f"{what}: callqa serve exited with {proc.returncode}\n{_tail(log) if log else ''}")
        time.sleep(every)
    raise LandingBenchError(f"{what}: not within {timeout:.0f} s\n{_tail(log) if log else ''}")


@contextmanager
def prefect_server(root: Path):
    """A started Prefect server with its scheduler (scripts/prefect_server.sh), its database under `root`;
    yields the environment that points a client at it. Stopped on exit."""
    port = _free_port()
    env = {**os.environ, "CALLQA_PREFECT_HOME": str(root / "prefect"), "CALLQA_PREFECT_PORT": str(port),
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    try:
        subprocess.run(["bash", str(SERVER_SCRIPT), "start"], env=env, check=True, timeout=240, capture_output=True)
        yield env | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    finally:
        subprocess.run(["bash", str(SERVER_SCRIPT), "stop"], env=env, timeout=60, capture_output=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (Ctrl-C) to serve's process group, then SIGKILL; serve stops its own Dask processes on the way."""
    for sig, grace in ((signal.SIGINT, 40), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _stored(db: Path, rid: str) -> tuple[float, float] | None:
    """(run started, score seen stored), epoch seconds, once recording `rid` is scored; None before."""
    if not db.exists():
        return None
    try:
        with Store.open_readonly(db, wait=0) as store:
            state = store.recording_state(rid)
            if state is None or state.status != "scored":
                return None
            seen = time.time()
            starts = [r.started_at.timestamp() for r in history.recent_runs(store, 50) if r.started_at]
    except Exception:  # noqa: BLE001 - the file is being written this instant: ask again
        return None
    before = [t for t in starts if t <= seen]
    return (max(before), seen) if before else None


def _worker_rss_mb(serve: subprocess.Popen) -> list[float]:
    import psutil

    out = []
    for p in psutil.Process(serve.pid).children(recursive=True):
        try:
            if "distributed.cli.dask_worker" in " ".join(p.cmdline()):
                out.append(p.memory_info().rss / 2**20)
        except psutil.Error:
            continue
    return out


def _land(src: Path, inbox: Path) -> float:
    """Copy under a dot-name (never scanned), then rename into place; returns the landing time (epoch s)."""
    part = inbox / f".{src.name}.part"
    shutil.copy(src, part)
    part.rename(inbox / src.name)
    return time.time()


def run_setting(label: str, workers: int, dask: bool, files: list[Path], singles: int, root: Path,
                env: dict[str, str], every: float, timeout: float = 600.0) -> dict[str, Any]:
    """One `callqa serve` setting: start it, wait for the schedule, land `singles` calls one by one, then the rest
    at once; returns the figures."""
    import httpx

    inbox, db, log = root / label / "inbox", root / label / "calls.duckdb", root / label / "serve.log"
    inbox.mkdir(parents=True, exist_ok=True)
    env = env | {"PREFECT_HOME": str(root / label / "client"), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    cmd = [sys.executable, "-m", "callqa.pipelines.cli", "serve", str(inbox), "--db", str(db),
           "--every", f"{every:g}", "--workers", str(workers)] + (["--dask"] if dask else [])
    t0 = time.monotonic()
    with open(log, "wb") as out:
        serve = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 cwd=root / label)
    try:
        with httpx.Client(base_url=env["PREFECT_API_URL"], timeout=10) as api:
            def completed() -> bool:
                r = api.post("/flow_runs/filter", json={"deployments": {"name": {"any_": ["inbox-nightly"]}},
                                                        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
                return r.status_code == 200 and len(r.json()) > 0

            _wait("a first COMPLETED scheduled run", completed, timeout, serve, log)
        live_s = time.monotonic() - t0
        calls = []
        for f in files[:singles]:
            rid = file_sha256(f)
            landed = _land(f, inbox)
            started, stored = _wait(f"{f.name} scored", lambda rid=rid: _stored(db, rid), timeout, serve, log)
            calls.append({"file": f.name, "landed_to_stored_s": stored - landed,
                          "landed_to_run_s": started - landed, "run_to_stored_s": stored - started})
        burst = files[singles:]
        burst_s = None
        if burst:
            rids = [file_sha256(f) for f in burst]
            landed = time.time()
            for f in burst:
                _land(f, inbox)
            last = max(_wait(f"{r[:8]} scored", lambda r=r: _stored(db, r), timeout, serve, log)[1] for r in rids)
            burst_s = last - landed
        rss = _worker_rss_mb(serve) if dask else []
    finally:
        _stop(serve)
    ready = [float(x) for x in re.findall(r"\bw\d+ pid \d+ up in ([\d.]+) s", log.read_text(errors="replace"))]
    return {"label": label, "workers": workers, "dask": dask, "serve_to_live_s": round(live_s, 1), "calls": calls,
            "burst": len(burst), "burst_landed_to_all_stored_s": round(burst_s, 1) if burst_s is not None else None,
            "worker_start_s": round(statistics.mean(ready), 2) if ready else None,
            "worker_rss_mb": round(statistics.mean(rss)) if rss else None}


def landing_bench(workers: tuple[int, ...] = (1, 2), singles: int = 3, burst: int | None = None,
                  dask_all: bool = False, every: float = 5.0, sources: list[Path] | None = None,
                  keep: Path | None = None) -> dict[str, Any]:
    """Each worker count in turn: 1 is the plain served flow (unless `dask_all`), N > 1 `serve --dask --workers N`.
    `singles` calls land one at a time, then a burst of `burst` calls (default: the largest worker count)."""
    from callqa.pipelines.bench.pipeline_bench import bench_batch, default_sources

    burst = max(workers) if burst is None else burst
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="callqa-landing-"))
    files = sorted(bench_batch(root / "calls", singles + burst, sources or default_sources()).iterdir())
    from callqa.models.audio import load_audio

    out: dict[str, Any] = {"cpus": os.cpu_count(), "every_s": every, "singles": singles, "burst": burst,
                           "load_before": round(os.getloadavg()[0], 2), "settings": [],
                           "audio_s": {f.name: round(load_audio(f).duration, 1) for f in files}}
    try:
        for w in workers:
            dask = dask_all or w > 1
            title = f"{w} Dask worker{'s' if w > 1 else ''}" if dask else "plain (1 worker)"
            label = f"w{w}-dask" if dask else f"w{w}"
            # a fresh server per setting: the deployment has the same name in each, and a run the previous serve
            # was stopped in would hold the deployment's concurrency slot until its lease ran out
            with prefect_server(root / label) as env:
                out["settings"].append(run_setting(label, w, dask, files, singles, root, env, every)
                                       | {"title": title})
    finally:
        out["load_after"] = round(os.getloadavg()[0], 2)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return out


def format_landing(r: dict[str, Any]) -> str:
    ss = r["settings"]
    lengths = ", ".join(f"{v:g}" for v in list(r["audio_s"].values())[:r["singles"]])
    out = [f"pipeline-bench --landing: file landed -> score stored under `callqa serve --every {r['every_s']:g}`, "
           f"{r['cpus']} CPUs (load average {r['load_before']} before, {r['load_after']} after); "
           f"{r['singles']} calls landed one at a time ({lengths} s of audio), "
           f"then {r['burst']} at once",
           f"{'':<34}" + "".join(f"{s['title']:>20}" for s in ss)]

    def row(label: str, values: list[Any]) -> None:
        out.append(f"{label:<34}" + "".join(f"{'-' if v is None else v:>20}" for v in values))

    def med(s: dict, key: str) -> float:
        return round(statistics.median(c[key] for c in s["calls"]), 1) if s["calls"] else 0.0

    row("serve start -> schedule live s", [s["serve_to_live_s"] for s in ss])
    row("one call: landed -> stored s", [med(s, "landed_to_stored_s") for s in ss])
    row("  (min - max)", [f"{min(c['landed_to_stored_s'] for c in s['calls']):.1f} - "
                          f"{max(c['landed_to_stored_s'] for c in s['calls']):.1f}" if s["calls"] else None
                          for s in ss])
    row("  landed -> run started s", [med(s, "landed_to_run_s") for s in ss])
    row("  run started -> stored s", [med(s, "run_to_stored_s") for s in ss])
    row(f"burst of {r['burst']}: landed -> all stored s", [s["burst_landed_to_all_stored_s"] for s in ss])
    row("per worker: start s", [s["worker_start_s"] for s in ss])
    row("per worker: RSS MB", [s["worker_rss_mb"] for s in ss])
    out.append("one call: medians over the calls landed one at a time; 'run started' is the start of the run that "
               "stored it (callqa status's history)")
    return "\n".join(out)


def main_landing(workers: tuple[int, ...], singles: int, dask_all: bool, as_json: bool,
                 sources: list[Path] | None = None) -> str:
    r = landing_bench(workers, singles, dask_all=dask_all, sources=sources)
    return json.dumps(r, indent=2) if as_json else format_landing(r)
