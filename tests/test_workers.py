"""Several workers on one inbox: two real `dask worker` processes take the calls of one inbox through the
`score-recordings` flow (prefect-dask), one of them is killed with SIGKILL in the middle of a call, and every
call ends up stored exactly once (recordings, segments, verdicts, scores, partitions), none lost; a rerun adds
nothing. Workers never open DuckDB: they leave Parquet partitions and return results to the single writer."""

from __future__ import annotations

import json
import threading
import time

import duckdb
import pytest
import soundfile as sf
from callqa.models.audio import load_audio
from callqa.pipelines.run.batch import file_sha256
from callqa.pipelines.run.scale import partition_path
from callqa.pipelines.run.workers import LocalWorkers, WorkersError, score_inbox_with_workers

from tests.conftest import SAMPLES

CLIP_S = 20.0  # the first 20 s of each bundled sample call: short, but a real call with both speakers
N_CALLS = 4


@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers") / "inbox"
    root.mkdir()
    rows = [json.loads(x) for x in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x]
    for r in rows[:N_CALLS]:
        audio = load_audio(SAMPLES / r["file"])
        n = int(CLIP_S * 16000)
        sf.write(root / f"{r['agent_id']}_20261110T1000_{r['call_id']}.flac", audio.channels[:, :n].T, 16000)
    return root


def _kill_mid_call(workers: LocalWorkers, name: str, seen: dict, stop: threading.Event, after_s: float = 2.0) -> None:
    """Wait until worker `name` has been running the same task for `after_s`, then SIGKILL it."""
    since: dict[str, float] = {}
    while not stop.is_set():
        keys = workers.executing().get(name, [])
        now = time.monotonic()
        since = {k: since.get(k, now) for k in keys}
        ripe = [k for k, t in since.items() if now - t >= after_s]
        if ripe:
            seen["key"], seen["pid"] = ripe[0], workers.kill(name)
            seen["partitions"] = len(list(workers.root.parent.glob("stage/transcripts/*.parquet")))
            return
        time.sleep(0.25)


def _per_call(con: duckdb.DuckDBPyConnection, table: str, key: str = "recording_id") -> dict[str, int]:
    return dict(con.execute(f"SELECT {key}, count(*) FROM {table} GROUP BY {key}").fetchall())


def test_two_workers_one_killed_mid_call_every_call_stored_once(inbox, tmp_path, prefect_server):
    stage, db = tmp_path / "stage", tmp_path / "calls.duckdb"
    rids = sorted(file_sha256(f) for f in inbox.iterdir())
    assert len(rids) == N_CALLS

    seen: dict = {}
    stop = threading.Event()
    with LocalWorkers(2, tmp_path / "dask") as workers:
        assert set(workers.pids()) == {"w0", "w1"}
        killer = threading.Thread(target=_kill_mid_call, args=(workers, "w1", seen, stop), daemon=True)
        killer.start()
        summary = score_inbox_with_workers(inbox, workers.address, 2, stage, db=str(db), progress=False)
        stop.set()
        killer.join(30)

        assert "key" in seen, "worker w1 never ran a call long enough to be killed in the middle of it"
        assert workers.workers[1].proc.wait(10) == -9  # SIGKILL: it did not finish, clean up or say goodbye
        assert seen["partitions"] < N_CALLS  # calls were still in flight when it died
        assert workers.computed("w0", seen["key"])  # the call w1 died in was run again, to the end, by w0
        assert set(workers.pids()) == {"w0"}

        assert summary.counts == {"found": N_CALLS, "scored": N_CALLS, "skipped": 0, "failed": 0, "no_speech": 0}
        assert summary.failures == []

        with duckdb.connect(str(db), read_only=True) as con:
            before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("recordings", "segments", "item_verdicts", "call_scores", "loaded_partitions",
                                "call_tags")}

        # a rerun on the surviving worker: everything is already stored, nothing is stored again
        again = score_inbox_with_workers(inbox, workers.address, 2, stage, db=str(db), progress=False)
        assert again.counts == {"found": N_CALLS, "scored": 0, "skipped": N_CALLS, "failed": 0, "no_speech": 0}

    with duckdb.connect(str(db), read_only=True) as con:
        after = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in before}
        assert after == before
        assert _per_call(con, "recordings") == dict.fromkeys(rids, 1)
        assert dict(con.execute("SELECT recording_id, status FROM recordings").fetchall()) == dict.fromkeys(
            rids, "scored")
        assert _per_call(con, "call_scores") == dict.fromkeys(rids, 1)
        n_items = con.execute("SELECT count(DISTINCT item_id) FROM item_verdicts").fetchone()[0]
        assert n_items >= 5
        assert _per_call(con, "item_verdicts") == dict.fromkeys(rids, n_items)  # each item once per call
        assert con.execute("SELECT count(*) FROM (SELECT recording_id, item_id FROM item_verdicts "
                           "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0] == 0
        assert _per_call(con, "loaded_partitions") == dict.fromkeys(rids, 1)
        # each call's stored segments are exactly its partition's, not twice (the call redone after the kill)
        for rid in rids:
            part = con.execute(f"SELECT count(*) FROM read_parquet('{partition_path(stage, rid)}')").fetchone()[0]
            assert con.execute("SELECT count(*) FROM segments WHERE recording_id = ?", [rid]).fetchone()[0] == part
        runs = con.execute("SELECT orchestrator, workers, status FROM runs ORDER BY started_at").fetchall()
        assert runs == [("prefect+dask", 2, "finished")] * 2


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path):
    lw = LocalWorkers(1, tmp_path / "dask", worker_args=["--no-such-option"])
    with pytest.raises(WorkersError, match=r"(?s)dask worker w0 exited with code 2: .*no-such-option"):
        with lw:
            pass
    # nothing is left running: the scheduler that did start was stopped too
    assert lw.scheduler is not None and lw.scheduler.poll() is not None
    assert all(w.proc.poll() is not None for w in lw.workers)
    with pytest.raises(ValueError, match="at least one worker"):
        LocalWorkers(0, tmp_path)


def test_kept_alive_holds_an_idle_scheduler_up_and_it_stops_by_itself_after(tmp_path):
    """`callqa serve --dask` keeps its cluster between runs (a night without work) by resetting the scheduler's
    idle clock; when the beats stop (the owner died), the scheduler stops on its own idle timeout."""
    with LocalWorkers(1, tmp_path / "dask", idle_timeout_s=4) as lw:
        with lw.kept_alive(every_s=1):
            time.sleep(10)  # 2.5 idle timeouts without any work
            assert lw.scheduler is not None and lw.scheduler.poll() is None
        deadline = time.monotonic() + 30
        while lw.scheduler.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert lw.scheduler.poll() is not None, "the scheduler outlived its idle timeout with nobody keeping it"
        assert "idle" in (tmp_path / "dask" / "scheduler.log").read_text(errors="replace")


def test_watching_the_cluster_never_lends_a_flow_its_client(tmp_path):
    """prefect-dask's task runner takes the process's default Dask client when there is one; the clients LocalWorkers
    opens to watch the cluster (the kill test's poller, serve's idle-clock beat) must not be it, or a flow starting
    while one is open or half closed fails with "No global client found" (seen once in a full run)."""
    import distributed

    with LocalWorkers(1, tmp_path / "dask") as lw, lw._client() as watcher:
        assert len(watcher.scheduler_info(n_workers=-1)["workers"]) == 1
        with pytest.raises(ValueError, match="No global client"):
            distributed.get_client()
