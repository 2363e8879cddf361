"""Schedules fire: a real `prefect server` (scripts/prefect_server.sh, scheduler services on), a real
`callqa serve --every 5` process, a real recording dropped into the inbox. The scheduler must create the
runs, the served process must run one that scores the call into DuckDB, and the run must be COMPLETED in
the Prefect API with its summary artifact. Every wait is bounded; every process started here is stopped."""

from __future__ import annotations

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

from tests.conftest import DEV, ROOT

SCRIPT = ROOT / "scripts" / "prefect_server.sh"
CALL = DEV / "audio" / "D006.flac"  # 30 s, the shortest dev call
LANDED_AS = "A07_20261103T1015_D006.flac"  # the folder scan reads agent and time from the name
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


def _scored(db: Path) -> tuple[float] | None:
    """(score,) once the landed call is scored (a tuple: a critical fail scores 0.0, which is falsy)."""
    if not db.exists():
        return None
    try:  # the flow closes the file between writes; a read that meets a write is retried by the caller
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("SELECT s.score FROM call_scores s JOIN recordings r USING (recording_id) "
                          "WHERE r.file_name = ?", [LANDED_AS]).fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return (row[0],) if row else None


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
        assert 0 <= score <= 100
        assert found["run"]["deployment_id"] == dep["id"] and found["run"]["state_type"] == "COMPLETED"
        assert f"database: `{db}`" in found["artifact"]["data"]
        print(f"\nfile landed -> score stored: {to_score:.1f} s; -> run COMPLETED with artifact: {to_done:.1f} s")
    finally:
        _stop_group(serve)
    assert serve.poll() is not None
    server_log = Path(started_prefect_server["CALLQA_PREFECT_HOME"]) / "server.log"
    assert "InvalidRequestError" not in server_log.read_text(errors="replace")  # the scheduler's SQLAlchemy 2.1 bug
