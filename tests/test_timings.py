"""The timings the benches read come from their own object (pipelines/run/timings.py), not from clock calls spread
through the flow: what StageClock and RunClock record, and that a real run's records keep the keys
`callqa pipeline-bench` reads. Sleeps are 50 ms with wide margins: these test bookkeeping, not speed."""

from __future__ import annotations

import time

import pytest
from callqa.pipelines.bench.pipeline_bench import _split
from callqa.pipelines.run.flows import process_batch
from callqa.pipelines.run.scale import write_partition
from callqa.pipelines.run.timings import RunClock, StageClock, stage_totals

from callqa.records import Segment, Transcript

NAP = 0.05


def test_stage_records_each_block_wall_time_and_cpu_time_on_request():
    clock = StageClock(file="a.flac")
    with clock.stage("decode"):
        time.sleep(NAP)
    with clock.stage("busy", cpu="busy_cpu"):
        # spin until this thread alone has used NAP of CPU: the stage's CPU time is the whole process's
        # (other threads' too, which is what a multi-threaded decoder needs), so it is at least this
        # thread's, and wall time is at least either; no bound ties wall to process CPU, since
        # background threads left by earlier tests can add CPU time faster than the wall clock runs
        t_end = time.thread_time() + NAP
        while time.thread_time() < t_end:
            pass
    assert clock["file"] == "a.flac"
    assert NAP <= clock["decode"] < NAP + 1.0
    assert clock["busy_cpu"] >= NAP and clock["busy"] >= NAP
    assert "decode_cpu" not in clock and clock.get("storage") is None


def test_a_stage_that_raises_is_still_recorded_and_add_accumulates():
    clock = StageClock()
    with pytest.raises(ValueError), clock.stage("speech"):
        time.sleep(NAP)
        raise ValueError("a bad file")
    assert clock["speech"] >= NAP
    first = clock["speech"]
    with clock.stage("speech", add=True):
        time.sleep(NAP)
    assert clock["speech"] >= first + NAP
    with clock.stage("speech"):  # without add: replaced
        pass
    assert clock["speech"] < first


def test_add_merges_reported_figures_and_skips_what_it_is_told():
    clock = StageClock(file="x")
    clock.add({"decode": 1.5, "vad": 0.2, "speech_s": 9.0}, skip=("speech_s",))
    clock.set("checklist", 0.25)
    assert clock.times == {"file": "x", "decode": 1.5, "vad": 0.2, "checklist": 0.25}


def test_run_clock_walls_add_up_to_the_run_and_charge_backdates_the_next_call():
    run = RunClock()
    time.sleep(NAP)
    assert run.planned() >= NAP
    a = run.call("a", {"decode": 0.1})
    with a.stage("storage"):
        time.sleep(NAP)
    run.finish(a)
    assert NAP <= a["wall"] < NAP + 1.0  # since the plan was made: planning is not a call's
    b = run.call("b")
    run.charge(10.0)  # b is handed 10 s of a chunk's time spent before it
    run.finish(b)
    assert 10.0 <= b["wall"] < 11.0
    s = run.summary(workers=2)
    assert s["workers"] == 2 and [c["file"] for c in s["calls"]] == ["a", "b"]
    assert s["calls"][0] == {"file": "a", "decode": 0.1, "storage": a["storage"], "wall": a["wall"]}
    assert s["plan_s"] <= s["total_s"]
    assert stage_totals(s["calls"], ("decode", "storage", "asr")) == {"decode": 0.1, "storage": a["storage"],
                                                                      "asr": 0.0}


def test_a_real_run_records_the_keys_pipeline_bench_reads(tmp_path):
    """Three calls whose transcripts wait on the stage folder (a worker left them): the run merges and scores them
    in one chunk, with no Whisper. Each call's record has the keys of today's flow, and pipeline-bench splits it."""
    inbox, stage, db = tmp_path / "inbox", tmp_path / "stage", tmp_path / "t.duckdb"
    inbox.mkdir()
    from callqa.pipelines.run.batch import file_sha256

    for i in range(3):
        f = inbox / f"A0{i}_20261110T1000_C{i}.wav"
        f.write_bytes(f"not decoded: the transcript is already on the stage folder {i}".encode())
        tr = Transcript((Segment("agent", 0.0, 3.0, "您好，我是小王，请问有什么可以帮您？"),
                         Segment("customer", 3.2, 6.0, "我想问一下价格。")), language="zh", duration=6.0)
        write_partition(stage, file_sha256(f), f, tr, {"duration_s": 6.0})

    summary = process_batch(inbox, db=db, stage_dir=stage, progress=False, checklist="sales_core_rules")
    assert summary.counts["scored"] == 3
    t = summary.timings
    assert set(t) == {"plan_s", "total_s", "calls", "workers"} and t["workers"] == 1
    first, *rest = t["calls"]
    assert set(first) == {"file", "engine_load", "checklist", "storage", "wall"}
    assert all(set(c) == {"file", "checklist", "storage", "wall"} for c in rest)
    # the chunk's checklist time is shared evenly; the calls' walls and the planning make up the run
    assert len({c["checklist"] for c in t["calls"]}) == 1
    assert t["plan_s"] + sum(c["wall"] for c in t["calls"]) <= t["total_s"] + 1e-6
    # what pipeline-bench --landing reads for "stored" and "run started": the recording scored, the run before it
    from callqa.pipelines.bench.landing_bench import _stored

    started, seen = _stored(db, file_sha256(inbox / "A00_20261110T1000_C0.wav"))
    assert started <= seen and seen - started < t["total_s"] + 60
    assert _stored(db, "0" * 64) is None
    split = _split(summary, t["total_s"])
    assert split["calls"] == 3 and split["per_call_s"]["asr"] == 0.0
    assert split["model_loads_s"] == pytest.approx(first["engine_load"], abs=0.01)


def test_the_landing_bench_prints_its_settings_side_by_side():
    from callqa.pipelines.bench.landing_bench import format_landing

    call = {"landed_to_stored_s": 40.0, "landed_to_run_s": 10.0, "run_to_stored_s": 30.0}
    slower = call | {"landed_to_stored_s": 50.0}
    settings = [{"title": "plain (1 worker)", "serve_to_live_s": 16.0, "calls": [call, slower],
                 "burst_landed_to_all_stored_s": 70.0, "worker_start_s": None, "worker_rss_mb": None},
                {"title": "2 Dask workers", "serve_to_live_s": 17.0, "calls": [call],
                 "burst_landed_to_all_stored_s": 69.0, "worker_start_s": 1.7, "worker_rss_mb": 398}]
    text = format_landing({"every_s": 5.0, "cpus": 2, "load_before": 3.8, "load_after": 5.5, "singles": 2, "burst": 2,
                           "audio_s": {"a": 43.7, "b": 40.5, "c": 1.0, "d": 2.0}, "settings": settings})
    lines = text.splitlines()
    assert "(43.7, 40.5 s of audio)" in lines[0] and "plain (1 worker)" in lines[1] and "2 Dask workers" in lines[1]
    assert lines[3].split()[-2:] == ["45.0", "40.0"]  # median landed -> stored per setting
    assert "40.0 - 50.0" in lines[4] and lines[-2].split()[-2:] == ["-", "398"]
