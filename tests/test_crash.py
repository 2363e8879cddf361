"""Crash safety and the one-writer rule, with real processes: `callqa run --no-prefect` is killed with
SIGKILL after its first stored call; a second run must finish the batch with every call scored exactly once,
no half-written call, nothing lost. While the first run is alive, a second writer is refused with a clear
message and `callqa status` can still read the database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from callqa.pipelines.cli.main import main

from tests.conftest import SAMPLES


@pytest.fixture()
def batch(tmp_path):
    root = tmp_path / "batch"
    shutil.copytree(SAMPLES / "calls", root / "calls")
    rows = [json.loads(x) for x in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x][:3]
    (root / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return root, [r["call_id"] for r in rows]


def _run_cmd(batch, db):
    return [sys.executable, "-m", "callqa.pipelines.cli", "-q", "run", str(batch), "--manifest", str(batch / "m.jsonl"),
            "--db", str(db), "--no-prefect"]


def test_sigkill_mid_batch_then_rerun_scores_each_call_exactly_once(batch, tmp_path, checklist, capsys):
    root, call_ids = batch
    db = tmp_path / "crash.duckdb"
    proc = subprocess.Popen(_run_cmd(root, db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 500
        for line in proc.stderr:  # the log says "scored <file>" after each call is committed
            if " scored " in line and ".opus" in line:
                break
            assert time.monotonic() < deadline, "first run never scored a call"
        # a second writer is refused while the first one lives, with a message that says who holds the DB
        assert main(["-q", "run", str(root), "--manifest", str(root / "m.jsonl"), "--db", str(db),
                     "--no-prefect"]) == 3
        err = capsys.readouterr().err
        assert "is being written by callqa run" in err and f"pid {proc.pid}" in err and "--wait" in err
        # and readers still get in between its writes
        assert main(["status", "--db", str(db), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["active_run"]["pid"] == proc.pid and st["runs"][0]["status"] == "running"
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the next call (transcribing or writing)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    con = duckdb.connect(str(db), read_only=True)
    before = con.execute("SELECT count(*) FROM call_scores").fetchone()[0]
    con.close()
    assert 1 <= before < len(call_ids)

    again = subprocess.run(_run_cmd(root, db), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(call_ids)} found, {len(call_ids) - before} scored, {before} already done" in again.stdout

    con = duckdb.connect(str(db), read_only=True)
    per_call = dict(con.execute(
        "SELECT r.call_id, count(s.recording_id) FROM recordings r LEFT JOIN call_scores s USING (recording_id) "
        "GROUP BY r.call_id").fetchall())
    assert per_call == {c: 1 for c in call_ids}  # none lost, none twice
    n_items = len(checklist.items)
    half = con.execute(  # a score without all its verdicts, or verdicts/segments without a score: half-written
        "SELECT r.call_id, (SELECT count(*) FROM item_verdicts v WHERE v.recording_id = r.recording_id), "
        "(SELECT count(*) FROM segments g WHERE g.recording_id = r.recording_id), r.status FROM recordings r"
    ).fetchall()
    assert all(nv == n_items and ns > 0 and status == "scored" for _, nv, ns, status in half), half
    runs = con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
    assert [r[0] for r in runs] == ["interrupted", "finished"]
    con.close()
