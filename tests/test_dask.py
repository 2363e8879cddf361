"""Scale-out: the same flow on prefect-dask's DaskTaskRunner (a LocalCluster of 2 worker processes), workers
leaving transcripts as Parquet partitions that one loader merges idempotently, also after a crash."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from callqa.pipelines.run.batch import file_sha256
from callqa.pipelines.run.flows import process_batch, run_scoring_flow, transcribe_job
from callqa.pipelines.run.scale import load_partitions, partition_path
from callqa.pipelines.store.database import Store

from tests.conftest import SAMPLES


@pytest.fixture()
def batch(tmp_path):
    root = tmp_path / "inbox"
    root.mkdir()
    rows = [json.loads(x) for x in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x]
    for r in rows[:3]:
        shutil.copy(SAMPLES / r["file"], root / f"{r['agent_id']}_20261110T1000_{r['call_id']}.opus")
    return root


def test_dask_flow_with_parquet_partitions_and_crash_recovery(batch, tmp_path, prefect_server, asr_options):
    stage, db = tmp_path / "stage", tmp_path / "d.duckdb"
    files = sorted(batch.iterdir())
    late = files[-1]
    late.rename(tmp_path / late.name)  # arrives after the first run

    summary = run_scoring_flow(str(batch), db=str(db), stage_dir=str(stage), dask=True, workers=2, progress=False)
    assert summary.counts["scored"] == 2 and summary.counts["failed"] == 0
    rids = [file_sha256(f) for f in files[:2]]
    assert all(partition_path(stage, r).is_file() for r in rids)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT orchestrator, workers FROM runs").fetchone() == ("prefect+dask", 2)
    assert con.execute("SELECT count(*) FROM loaded_partitions").fetchone()[0] == 2
    con.close()

    # a worker finishes the late call, but the run that asked for it dies before storing anything
    (tmp_path / late.name).rename(late)
    rid = file_sha256(late)
    transcribe_job(late, asr_options, 0, rid, str(stage))
    assert partition_path(stage, rid).is_file()

    # the next run merges that partition instead of transcribing again, and scores it
    again = process_batch(batch, db=db, stage_dir=stage, progress=False)
    assert again.counts == {"found": 3, "scored": 1, "skipped": 2, "failed": 0, "no_speech": 0}
    (call,) = again.timings["calls"]
    assert "speech" not in call and "job" not in call  # scored from the merged transcript: no Whisper

    with Store(db) as store:  # loading again adds nothing
        before = store.counts()
        assert load_partitions(store, stage) == []
        assert store.counts() == before
        assert before["call_scores"] == 3
        outcomes = dict(store.con.execute("SELECT recording_id, outcome FROM loaded_partitions").fetchall())
    assert outcomes[rid] == "loaded" and len(outcomes) == 3
