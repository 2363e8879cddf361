"""What the pipeline writes: PII masked in stored transcripts and evidence, need tags stored per call."""

from __future__ import annotations

import json
import shutil

import duckdb
from callqa.pipelines.run.batch import file_sha256
from callqa.pipelines.run.flows import process_batch
from callqa.pipelines.store.database import Store

from callqa.records import Segment, Transcript
from tests.conftest import SAMPLES

PHONE = "415-555-0199"


def _batch_with_stored_transcript(tmp_path, mask: bool):
    """A real recording whose transcript an earlier run already stored, so scoring needs no ASR."""
    batch = tmp_path / "batch"
    batch.mkdir()
    audio = batch / "S02_20261117T0940_demo.opus"
    shutil.copy(SAMPLES / "calls" / "S-004.opus", audio)
    rid = file_sha256(audio)
    db = tmp_path / "calls.duckdb"
    transcript = Transcript((
        Segment("agent", 0.0, 4.0, f"Hi, this is Tom from HomeCo, calling you back on {PHONE}."),
        Segment("customer", 4.5, 7.0, "Hi Tom. It's for my baby, she's six months old."),
        Segment("agent", 7.5, 11.0, "Then the bottle warmer fits: it heats 150 milliliters in three minutes."),
    ), "en", 11.0, "faster-whisper", "base")
    with Store(db) as store:
        store.upsert_recording(rid, path=str(audio), file_name=audio.name, status="new")
        store.save_transcript(rid, transcript)  # stored before this run: unmasked
    summary = process_batch(batch, db=db, progress=False, mask_pii=mask)
    assert summary.counts["scored"] == 1
    return db


def test_evidence_is_masked_and_tags_are_stored(tmp_path):
    db = _batch_with_stored_transcript(tmp_path, mask=True)
    con = duckdb.connect(str(db), read_only=True)
    evidence = con.execute("SELECT evidence FROM item_verdicts WHERE item_id = 'greeting'").fetchone()[0]
    tags = dict(con.execute("SELECT tag_id, evidence FROM call_tags").fetchall())
    con.close()
    quotes = [e["quote"] for e in json.loads(evidence)]
    assert quotes and all(PHONE not in q for q in quotes) and any("[PHONE]" in q for q in quotes)
    assert "baby" in tags
    assert "six months" in json.loads(tags["baby"])[0]["quote"]


def test_masking_can_be_turned_off(tmp_path):
    db = _batch_with_stored_transcript(tmp_path, mask=False)
    con = duckdb.connect(str(db), read_only=True)
    evidence = con.execute("SELECT evidence FROM item_verdicts WHERE item_id = 'greeting'").fetchone()[0]
    con.close()
    assert any(PHONE in e["quote"] for e in json.loads(evidence))


def test_new_transcripts_are_stored_masked(tmp_path):
    from callqa.pipelines.store.database import register_text_filter, unregister_text_filter
    from callqa.qa_rules.pii import mask_pii

    register_text_filter(mask_pii)
    try:
        with Store(tmp_path / "t.duckdb") as store:
            store.upsert_recording("r1", path="x", file_name="x", status="new")
            store.save_transcript("r1", Transcript((Segment("customer", 0, 2, "我的手机号是13812345678。"),), "zh"))
            text = store.con.execute("SELECT text FROM segments").fetchone()[0]
    finally:
        unregister_text_filter(mask_pii)
    assert "13812345678" not in text and "[PHONE]" in text
