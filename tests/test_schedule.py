"""Schedules fire: a real `prefect server` (scripts/prefect_server.sh, scheduler services on), a real
`callqa serve --every 5` process, a real recording dropped into the inbox. The scheduler must create the
runs, the served process must run one that scores the call into DuckDB, and the run must be COMPLETED in
the Prefect API with its summary artifact. Every wait is bounded; every process started here is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.conftest import BAD as SHARED_BAD
from tests.conftest import DEV, ROOT

SCRIPT = ROOT / "scripts" / "prefect_server.sh"
CALL = DEV / "audio" / "D006.flac"  # 30 s, the shortest dev call
LANDED_AS = "A07_20261103T1015_D006.flac"  # the folder scan reads agent and time from the name
BAD = SHARED_BAD / "text_not_audio.wav"  # a text file named .wav: not audio, a property of the file
BAD_AS = "A07_20261103T1030_BAD1.wav"
DEADLINE_S = 150.0  # file landed -> COMPLETED run with its artifact


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0,
              alive: subprocess.Popen | None = None, log: Path | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` s (or when `alive` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"{what}: the process exited with {alive.returncode}\n{_tail(log)}")
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{_tail(log)}")


def _tail(log: Path | None, n: int = 40) -> str:
    if log is None or not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture()
def started_prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A started `prefect server` with its scheduler, on a free port, its database under tmp_path/prefect.
    (The session fixture of conftest.py is an ephemeral server, which runs no scheduler service.)"""
    port = _free_port()
    env = {**os.environ, "CALLQA_PREFECT_HOME": str(tmp_path / "prefect"), "CALLQA_PREFECT_PORT": str(port),
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    env.pop("PREFECT_API_URL", None)
    try:
        subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, timeout=240, capture_output=True)
        st = subprocess.run(["bash", str(SCRIPT), "status"], env=env, timeout=30, capture_output=True, text=True)
        assert st.returncode == 0 and f":{port}/api" in st.stdout and "prefect.db" in st.stdout
        assert (tmp_path / "prefect" / "prefect.db").is_file()
        yield env | {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, timeout=60, capture_output=True)
    st = subprocess.run(["bash", str(SCRIPT), "status"], env=env, timeout=30, capture_output=True, text=True)
    assert st.returncode == 3, st.stdout  # stopped


def _read_while_written(db: Path, read: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
    """read(con) on a read-only connection, or None while the file is missing or being written: the flow closes
    the file between writes, so a read that meets a write is retried by the caller (_wait_for)."""
    if not db.exists():
        return None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        return read(con)
    except duckdb.Error:
        return None
    finally:
        con.close()


def _scored(db: Path) -> tuple[float] | None:
    """(score,) once the landed call is scored (a tuple: a critical fail scores 0.0, which is falsy)."""
    row = _read_while_written(db, lambda con: con.execute(
        "SELECT s.score FROM call_scores s JOIN recordings r USING (recording_id) WHERE r.file_name = ?",
        [LANDED_AS]).fetchone())
    return (row[0],) if row else None


def _failures(db: Path, name: str) -> list[tuple] | None:
    """The run_failures rows of one file (None while the database is being written or has none yet)."""
    return _read_while_written(db, lambda con: con.execute(
        "SELECT run_id, status, reason, kind FROM run_failures WHERE file = ? OR file LIKE ?",
        [name, f"%/{name}"]).fetchall()) or None


def _completed_runs(api: httpx.Client) -> int:
    r = api.post("/flow_runs/filter", json={"deployments": {"name": {"any_": ["inbox-nightly"]}},
                                            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 200})
    r.raise_for_status()
    return len(r.json())


def _completed_run_with_artifact(api: httpx.Client) -> dict | None:
    r = api.post("/flow_runs/filter", json={
        "deployments": {"name": {"any_": ["inbox-nightly"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50})
    r.raise_for_status()
    for run in r.json():
        a = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["callqa-run-summary"]},
                                                              "flow_run_id": {"any_": [run["id"]]}}})
        a.raise_for_status()
        for art in a.json():
            if "| 1 | 1 | 0 | 0 | 0 |" in art["data"]:  # found 1, scored 1: the run that scored the landed file
                return {"run": run, "artifact": art}
    return None


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT (what Ctrl-C sends `callqa serve`), then SIGKILL, to the whole process group (flow-run children)."""
    for sig, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # children of the group that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_callqa_serve_schedule_fires_and_scores_a_new_file(started_prefect_server: dict[str, str],
                                                          tmp_path: Path) -> None:
    inbox, db, log = tmp_path / "inbox", tmp_path / "calls.duckdb", tmp_path / "serve.log"
    inbox.mkdir()
    env = started_prefect_server | {"PREFECT_HOME": str(tmp_path / "client"), "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    callqa = [sys.executable, "-m", "callqa.pipelines.cli"]
    with open(log, "wb") as out:
        serve = subprocess.Popen([*callqa, "serve", str(inbox), "--db", str(db), "--every", "5"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        with httpx.Client(base_url=env["PREFECT_API_URL"], timeout=10) as api:
            def scheduled() -> bool:  # the server's scheduler made runs of the served deployment
                r = api.post("/flow_runs/filter", json={"deployments": {"name": {"any_": ["inbox-nightly"]}}})
                return r.status_code == 200 and len(r.json()) > 0

            _wait_for("scheduled runs of score-recordings/inbox-nightly", scheduled, 120, alive=serve, log=log)
            dep = api.get("/deployments/name/score-recordings/inbox-nightly").json()
            assert dep["schedules"][0]["schedule"]["interval"] == 5.0

            # the file lands atomically (a dot-name is never scanned), as docs/operations.md asks of uploaders
            shutil.copy(CALL, inbox / f".{LANDED_AS}.part")
            (inbox / f".{LANDED_AS}.part").rename(inbox / LANDED_AS)
            landed = time.monotonic()
            (score,) = _wait_for("the landed call scored in DuckDB", lambda: _scored(db), DEADLINE_S,
                              alive=serve, log=log)
            to_score = time.monotonic() - landed
            found = _wait_for("a COMPLETED run with its callqa-run-summary artifact",
                              lambda: _completed_run_with_artifact(api), DEADLINE_S - to_score, alive=serve,
                              log=log)
            to_done = time.monotonic() - landed

            # a broken file lands: it fails once for good (permanent), and later scheduled runs leave it alone
            shutil.copy(BAD, inbox / f".{BAD_AS}.part")
            (inbox / f".{BAD_AS}.part").rename(inbox / BAD_AS)
            _wait_for("the broken file recorded as failed", lambda: _failures(db, BAD_AS), DEADLINE_S,
                      alive=serve, log=log)
            runs_then = _completed_runs(api)
            _wait_for("two more scheduled runs after the failure", lambda: _completed_runs(api) >= runs_then + 2,
                      DEADLINE_S, alive=serve, log=log)
        assert 0 <= score <= 100
        assert found["run"]["deployment_id"] == dep["id"] and found["run"]["state_type"] == "COMPLETED"
        assert f"database: `{db}`" in found["artifact"]["data"]
        print(f"\nfile landed -> score stored: {to_score:.1f} s; -> run COMPLETED with artifact: {to_done:.1f} s")
    finally:
        _stop_group(serve)
    assert serve.poll() is not None
    (failure,) = _failures(db, BAD_AS)  # recorded once, not once per run
    assert failure[1:] == ("failed", "not_audio", "permanent"), failure
    con = duckdb.connect(str(db), read_only=True)
    status, kind, attempts = con.execute("SELECT status, failure_kind, attempts FROM recordings WHERE file_name = ?",
                                         [BAD_AS]).fetchone()
    con.close()
    assert (status, kind, attempts) == ("failed", "permanent", 1)
    server_log = Path(started_prefect_server["CALLQA_PREFECT_HOME"]) / "server.log"
    assert "InvalidRequestError" not in server_log.read_text(errors="replace")  # the scheduler's SQLAlchemy 2.1 bug


# --- several workers under the schedule -------------------------------------------------------------------------

CLIP_S = 12.0  # the first 12 s of three bundled sample calls: both speakers, short enough for a 2-core machine
N_CLIPS = 3


def _clips(dest: Path) -> list[Path]:
    """Three short real calls, named for the folder scan, written outside the inbox (they land later)."""
    import soundfile as sf
    from callqa.models.audio import load_audio

    from tests.conftest import SAMPLES

    dest.mkdir()
    rows = [json.loads(x) for x in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x]
    out = []
    for i, r in enumerate(rows[:N_CLIPS]):
        audio = load_audio(SAMPLES / r["file"])
        f = dest / f"{r['agent_id']}_20261104T10{i:02d}_{r['call_id']}.flac"
        sf.write(f, audio.channels[:, :int(CLIP_S * 16000)].T, 16000)
        out.append(f)
    return out


def _dask_processes(serve: subprocess.Popen) -> dict[str, list[Any]]:
    """The `dask scheduler` and `dask worker` processes `callqa serve --dask` started (its children)."""
    import psutil

    found: dict[str, list[Any]] = {"scheduler": [], "worker": []}
    for p in psutil.Process(serve.pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "distributed.cli.dask_scheduler" in cmd:
            found["scheduler"].append(p)
        elif "distributed.cli.dask_worker" in cmd:
            found["worker"].append(p)
    return found


def _stored_per_call(db: Path, names: list[str]) -> dict[str, dict[str, int]] | None:
    """Per landed file: its rows in recordings, call_scores and item_verdicts, once every one of them is scored."""
    def count(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
        got = {n: {t: con.execute(f"SELECT count(*) FROM {t} JOIN recordings r USING (recording_id) "
                                  "WHERE r.file_name = ?", [n]).fetchone()[0]
                   for t in ("call_scores", "item_verdicts")} for n in names}
        for n in names:
            got[n]["recordings"] = con.execute("SELECT count(*) FROM recordings WHERE file_name = ?", [n]).fetchone()[0]
        return got

    got = _read_while_written(db, count)
    return got if got and all(v["call_scores"] for v in got.values()) else None


def test_callqa_serve_on_two_dask_workers_scores_each_landed_call_once(started_prefect_server: dict[str, str],
                                                                      tmp_path: Path) -> None:
    """`callqa serve --every 5 --dask --workers 2`: a scheduler and two `dask worker` processes come up with serve;
    three calls landing at once are each stored exactly once, transcribed on the Dask workers, by flow runs of the
    served deployment that the Prefect API shows COMPLETED with their artifact; stopping serve stops the cluster."""
    import psutil
    from callqa.pipelines.run.batch import file_sha256
    from distributed import Client

    inbox, db, log = tmp_path / "inbox", tmp_path / "calls.duckdb", tmp_path / "serve.log"
    inbox.mkdir()
    clips = _clips(tmp_path / "incoming")
    names, rids = [c.name for c in clips], {file_sha256(c) for c in clips}
    env = started_prefect_server | {"PREFECT_HOME": str(tmp_path / "client"), "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with open(log, "wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "callqa.pipelines.cli", "serve", str(inbox), "--db", str(db),
                                  "--every", "5", "--dask", "--workers", "2"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    cluster: dict[str, list[Any]] = {}
    try:
        sched_file = tmp_path / "calls.dask" / "scheduler.json"  # default_dask_dir: beside the database
        _wait_for("the Dask scheduler file", sched_file.is_file, 120, alive=serve, log=log)
        cluster = _wait_for("a scheduler and two workers started by serve",
                            lambda: (lambda f: f if len(f["scheduler"]) == 1 and len(f["worker"]) == 2 else None)(
                                _dask_processes(serve)), 60, alive=serve, log=log)
        with httpx.Client(base_url=env["PREFECT_API_URL"], timeout=10) as api:
            def completed_runs() -> list[dict]:
                r = api.post("/flow_runs/filter", json={
                    "deployments": {"name": {"any_": ["inbox-nightly"]}},
                    "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 200})
                return r.json() if r.status_code == 200 else []

            # a first scheduled run on the empty inbox has completed on the cluster: the schedule is live
            _wait_for("a COMPLETED run of score-recordings/inbox-nightly", completed_runs, 150, alive=serve, log=log)
            dep = api.get("/deployments/name/score-recordings/inbox-nightly").json()
            assert dep["parameters"]["orchestrator"] == "prefect+dask" and dep["parameters"]["workers"] == 2

            for c in clips:  # land atomically: a dot-name first (never scanned), then all renamed at once
                shutil.copy(c, inbox / f".{c.name}.part")
            for c in clips:
                (inbox / f".{c.name}.part").rename(inbox / c.name)
            landed = time.monotonic()
            stored = _wait_for("the three landed calls scored in DuckDB", lambda: _stored_per_call(db, names),
                               DEADLINE_S + 60, alive=serve, log=log)
            to_score = time.monotonic() - landed

            def runs_that_scored() -> list[tuple] | None:  # each run that scored calls, COMPLETED in the API
                try:
                    with duckdb.connect(str(db), read_only=True) as con:
                        rows = con.execute("SELECT flow_run_id, n_scored, orchestrator, workers FROM runs "
                                           "WHERE n_scored > 0").fetchall()
                except duckdb.Error:
                    return None
                done = {r["id"] for r in completed_runs()}
                return rows if rows and all(r[0] in done for r in rows) else None

            scoring_runs = _wait_for("the runs that scored them COMPLETED", runs_that_scored, 60, alive=serve,
                                     log=log)
            for flow_run_id, _, _, _ in scoring_runs:
                run = api.get(f"/flow_runs/{flow_run_id}").json()
                assert run["deployment_id"] == dep["id"] and run["state_type"] == "COMPLETED"
                arts = api.post("/artifacts/filter", json={"artifacts": {
                    "key": {"any_": ["callqa-run-summary"]}, "flow_run_id": {"any_": [flow_run_id]}}}).json()
                assert len(arts) == 1 and f"database: `{db}`" in arts[0]["data"]

        # exactly once: one recording row, one score, each checklist item once, per landed call
        n_items = {v["item_verdicts"] for v in stored.values()}
        assert len(n_items) == 1 and n_items.pop() >= 5
        assert all(v["recordings"] == 1 and v["call_scores"] == 1 for v in stored.values()), stored
        assert sum(n for _, n, _, _ in scoring_runs) == N_CLIPS
        assert {(o, w) for _, _, o, w in scoring_runs} == {("prefect+dask", 2)}
        with duckdb.connect(str(db), read_only=True) as con:
            assert {r for (r,) in con.execute("SELECT recording_id FROM call_scores").fetchall()} == rids
            assert con.execute("SELECT count(*) FROM loaded_partitions").fetchone()[0] == N_CLIPS

        # the calls were transcribed on the Dask workers (each worker's own log of tasks run to the end)
        def finished_keys(dask_worker: Any = None) -> list[str]:
            return sorted({str(e[0]) for e in dask_worker.state.log
                           if len(e) >= 3 and e[1] == "executing" and e[2] == "memory"})

        address = json.loads(sched_file.read_text())["address"]
        with Client(address, timeout=30) as client:
            per_worker = client.run(finished_keys)
        assert len(per_worker) == 2
        ran = [k for keys in per_worker.values() for k in keys]
        assert len(ran) == N_CLIPS, per_worker  # each call's transcription once, all on the workers
        print(f"\n3 calls landed -> all scored on 2 Dask workers: {to_score:.1f} s; tasks per worker: "
              f"{[len(k) for k in per_worker.values()]}")
    finally:
        _stop_group(serve)
        procs = [p for ps in cluster.values() for p in ps]
        _, alive = psutil.wait_procs(procs, timeout=30)
        for p in alive:  # never leave them running, even when the assertion below fails
            p.kill()
    assert serve.poll() is not None
    assert alive == [], f"callqa serve left Dask processes running: {alive}"
    assert "stopped the Dask scheduler" in log.read_text(errors="replace")


def test_served_deployment_with_workers_or_dask_builds_the_runner_its_serve_process_names(monkeypatch, tmp_path):
    """A served run is a new process that loads its flow from the deployment's entrypoint: the plain deployment
    keeps flows.py's flow (one thread); with workers or Dask the entrypoint builds the same `score-recordings`
    with the task runner that the serve process's environment names."""
    from callqa.pipelines.run.deploy import SERVED_ENTRYPOINT, build_deployments, served_env
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from prefect.utilities.importtools import import_object
    from prefect_dask import DaskTaskRunner

    plain = build_deployments(tmp_path, db=tmp_path / "c.duckdb", every=5)[0]
    assert plain.entrypoint.endswith("pipelines/run/flows.py:score_recordings")
    assert plain.parameters["orchestrator"] == "prefect" and plain.parameters["stage_dir"] is None
    on_dask = build_deployments(tmp_path, db=tmp_path / "c.duckdb", every=5, workers=2,
                                dask_address="tcp://10.0.0.1:8786", stage_dir=tmp_path / "stage")[0]
    assert on_dask.entrypoint == SERVED_ENTRYPOINT and on_dask.name == "inbox-nightly"
    assert on_dask.parameters["orchestrator"] == "prefect+dask" and on_dask.parameters["workers"] == 2
    assert on_dask.parameters["stage_dir"] == str(tmp_path / "stage")

    for workers, address, runner in ((2, "tcp://10.0.0.1:8786", DaskTaskRunner), (2, None, ProcessPoolTaskRunner),
                                     (1, None, ThreadPoolTaskRunner)):
        for k, v in served_env(workers, address).items():
            monkeypatch.setenv(k, v)
        flow_ = import_object(SERVED_ENTRYPOINT)
        assert flow_.name == "score-recordings" and isinstance(flow_.task_runner, runner), (workers, address)
        if address:
            assert flow_.task_runner.address == address
