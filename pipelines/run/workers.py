"""Several worker processes on one inbox, each call stored exactly once.

The engine is Dask (through prefect-dask's task runner, the same `score-recordings` flow as `callqa run
--dask-address`): one flow run plans the inbox under the database's writer lock and hands each recording to
exactly one `transcribe-recording` task; Dask's scheduler gives the tasks to whichever worker process is free.
Workers never open DuckDB: each leaves its transcript as a Parquet partition on the stage folder
(`scale.write_partition`) and returns it; the flow's process, the single writer, stores each result as it comes
back and ledgers the partition (`loaded_partitions`), so a partition is merged at most once.

A worker killed mid-call loses only that call's unfinished work: the scheduler sees the connection drop and
gives the task to another worker (up to `distributed.scheduler.allowed-failures` deaths per task, default 3,
then Prefect records the call as a transient failure, retried by the next run). A transcript a worker finished
but whose result never reached the writer (the flow died) is a partition the next run merges instead of
transcribing again. What the database holds is therefore every call once: the plan never hands out a call
already scored, a stored transcript is reused, and `load_partitions` skips partitions already merged.

`LocalWorkers` starts the real processes an operator starts on each host (`dask scheduler`, then `dask worker`
per process), here on one machine: the tests, `callqa pipeline-bench --dask` and `callqa serve --dask` use it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callqa.pipelines.run.flows import RunSummary, run_scoring_flow

log = logging.getLogger(__name__)


class WorkersError(RuntimeError):
    """The scheduler or a worker did not start (the message says which, with the tail of its log)."""


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen
    log: Path
    started: float
    ready_s: float | None = None  # spawn → registered with the scheduler


@dataclass
class LocalWorkers:
    """A Dask scheduler and `n` single-threaded worker processes on this host, as `dask` CLI processes.

    `root` holds the scheduler file and each process's log. `nanny=False` (the default here) makes each
    worker one plain process, so killing it kills the worker and nothing restarts it; an operator's hosts run
    with the nanny (`dask worker --nworkers N`), which restarts a worker that died.
    Use as a context manager; every process is stopped on exit (SIGTERM, then SIGKILL after `stop_s`)."""

    n: int
    root: Path
    nanny: bool = False
    start_timeout: float = 120.0
    stop_s: float = 10.0
    idle_timeout_s: float = 300.0  # a scheduler with no work this long stops (its workers follow in 60 s), so
    # nothing outlives a parent that was killed before it could stop them; a long-lived owner uses kept_alive()
    env: dict[str, str] = field(default_factory=dict)
    worker_args: list[str] = field(default_factory=list)  # more `dask worker` options, e.g. --memory-limit 2GB
    scheduler: subprocess.Popen | None = None
    workers: list[WorkerProc] = field(default_factory=list)
    address: str = ""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"need at least one worker, not {self.n}")
        self.root = Path(self.root)

    # --- start and stop -------------------------------------------------------------------------------------
    def __enter__(self) -> LocalWorkers:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _popen(self, args: list[str], log: Path) -> subprocess.Popen:
        env = {**os.environ, **self.env}
        with open(log, "wb") as out:
            # own session: a stop signals the whole group, and a Ctrl-C at the terminal does not reach it twice
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    cwd=self.root)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        sched_file = self.root / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        log = self.root / "scheduler.log"
        t0 = time.monotonic()
        self.scheduler = self._popen(dask + ["--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                             "--scheduler-file", str(sched_file),
                                             "--idle-timeout", f"{self.idle_timeout_s:.0f}s"], log)
        while not sched_file.is_file() or not sched_file.read_text(encoding="utf-8").strip():
            self._check_alive(self.scheduler, "dask scheduler", log, t0)
            time.sleep(0.2)
        self.address = json.loads(sched_file.read_text(encoding="utf-8"))["address"]
        for i in range(self.n):
            self.add_worker(f"w{i}", sched_file)
        self.wait_for(self.n)

    def add_worker(self, name: str, sched_file: Path | None = None) -> WorkerProc:
        log = self.root / f"{name}.log"
        args = [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--name", name,
                "--nthreads", "1", "--no-dashboard", "--local-directory", str(self.root / "dask-space"),
                "--nanny" if self.nanny else "--no-nanny", "--death-timeout", "60", *self.worker_args]
        w = WorkerProc(name, self._popen(args, log), log, time.monotonic())
        self.workers.append(w)
        return w

    def wait_for(self, n: int) -> None:
        """Until `n` workers are registered with the scheduler; records each one's start-up time."""
        t0 = time.monotonic()
        with self._client() as client:
            while True:
                names = set(self._names(client).values())
                now = time.monotonic()
                for w in self.workers:
                    if w.ready_s is None and w.name in names:
                        w.ready_s = now - w.started
                if len(names) >= n:
                    return
                for w in self.workers:
                    if w.name not in names:
                        self._check_alive(w.proc, f"dask worker {w.name}", w.log, t0)
                time.sleep(0.25)

    def _check_alive(self, proc: subprocess.Popen, what: str, log: Path, t0: float) -> None:
        if proc.poll() is not None:
            raise WorkersError(f"{what} exited with code {proc.returncode}: {_tail(log)}")
        if time.monotonic() - t0 > self.start_timeout:
            raise WorkersError(f"{what} did not come up within {self.start_timeout:.0f} s: {_tail(log)}")

    def stop(self) -> None:
        procs = [w.proc for w in self.workers] + ([self.scheduler] if self.scheduler else [])
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_s
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait(5)

    @contextmanager
    def kept_alive(self, every_s: float | None = None) -> Iterator[LocalWorkers]:
        """While the block runs, reset the scheduler's idle clock every `every_s` (default: a quarter of
        `idle_timeout_s`), so a cluster owned by a long-lived process (`callqa serve`, idle between nightly runs)
        does not stop by itself. If the owner dies, even by SIGKILL, the beats stop with it and the scheduler stops
        `idle_timeout_s` later, its workers 60 s after that: nothing is left running for good."""
        every = every_s if every_s is not None else max(1.0, self.idle_timeout_s / 4)
        stop = threading.Event()

        def reset_idle(dask_scheduler: Any = None) -> None:  # runs on the scheduler (pickled by value)
            dask_scheduler.idle_since = None

        def beat() -> None:
            while not stop.wait(every):
                try:
                    with self._client() as client:
                        client.run_on_scheduler(reset_idle)
                except Exception as e:  # noqa: BLE001 - a missed beat is retried; the run itself will say more
                    log.warning("could not reach the Dask scheduler %s to keep it up: %s", self.address, e)

        thread = threading.Thread(target=beat, name="dask-keep-alive", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(every + 35)  # at most one beat in flight (a client times out in 30 s)

    # --- what runs where ------------------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Worker name → pid of the process doing the work (with a nanny: its child)."""
        import psutil

        out = {}
        for w in self.workers:
            if w.proc.poll() is not None:
                continue
            pid = w.proc.pid
            if self.nanny:
                kids = psutil.Process(pid).children()
                pid = kids[0].pid if kids else pid
            out[w.name] = pid
        return out

    def _client(self):
        """A short-lived client for watching the cluster, never the process's default: prefect-dask's task runner
        takes `distributed.get_client()` when there is one, so a watcher's client (the kill test's poller, serve's
        idle-clock beat) alive or half closed at the moment a flow starts would be taken for the run's and fail it
        with "No global client found and no address provided"."""
        from distributed import Client

        return Client(self.address, timeout=30, set_as_default=False)

    def _names(self, client: Any) -> dict[str, str]:
        return {addr: v.get("name") for addr, v in client.scheduler_info(n_workers=-1)["workers"].items()}

    def executing(self) -> dict[str, list[str]]:
        """Worker name → keys of the tasks it is running right now (asked of each worker itself)."""

        def running(dask_worker: Any) -> list[str]:
            return [str(ts.key) for ts in dask_worker.state.executing]

        with self._client() as client:
            names = self._names(client)
            return {names[a]: keys for a, keys in client.run(running, on_error="return").items()
                    if isinstance(keys, list)}

    def computed(self, name: str, key: str) -> bool:
        """Whether worker `name` ran task `key` to the end (its own transition log: executing -> memory)."""

        def story(key: str, dask_worker: Any = None) -> bool:
            return any(len(e) >= 3 and e[1] == "executing" and e[2] == "memory" for e in dask_worker.state.story(key))

        with self._client() as client:
            addr = [a for a, n in self._names(client).items() if n == name]
            if not addr:
                return False
            return bool(client.run(story, key, workers=addr)[addr[0]])

    def kill(self, name: str) -> int:
        """SIGKILL one worker (no clean-up, as the OOM killer or a power cut would); returns its pid."""
        pid = self.pids()[name]
        os.kill(pid, signal.SIGKILL)
        return pid

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each live worker process, MB."""
        import psutil

        out = {}
        for name, pid in self.pids().items():
            try:
                out[name] = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
        return out


def score_inbox_with_workers(inbox: str | Path, address: str, workers: int, stage_dir: str | Path,
                             **params: Any) -> RunSummary:
    """One run of `score-recordings` over `inbox` on the Dask scheduler at `address` (`workers`: how many worker
    processes it has, to split the cores' threads between them), transcripts left on `stage_dir`. Calls a dead
    worker had are redone by another; the run stores each call once. Run it again (or on a schedule) for new
    files: what is stored is skipped, partitions not merged yet are merged first."""
    return run_scoring_flow(str(inbox), workers=workers, dask_address=address, stage_dir=str(stage_dir),
                            **params)


def _signal_group(p: subprocess.Popen, sig: signal.Signals) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def _tail(log: Path, n: int = 1500) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-n:].strip() or "(empty log)"
    except OSError:
        return "(no log)"
