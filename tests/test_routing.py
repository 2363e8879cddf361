"""Checklist routing (qa_rules/routing.py): a routing file picks each call's checklist from its attributes, sets
voicemails and calls with too little speech aside with their reason, and the scorecard counts both per agent.
Pure routing on the dev calls' reference transcripts; then a batch run (stored transcripts, no ASR) end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from callqa.qa_rules.checklist import ChecklistError
from callqa.qa_rules.routing import CallAttributes, load_routing, parse_routing, route

from callqa.records import Segment, Transcript
from tests.conftest import DEV, dev_calls

VOICEMAIL = Transcript((
    Segment("customer", 0.5, 6.0, "The person you have called is not available. "
                                  "Please leave a message after the tone."),
    Segment("agent", 7.0, 15.0, "Hi, this is Jordan from HomeWise Appliances, calling about your water filter. "
                                "Please call me back when you can."),
), language="en", duration=16.0)
VOICEMAIL_ZH = Transcript((
    Segment("customer", 0.4, 5.0, "您拨打的用户暂时无法接听，请在嘀声后留言。"),
    Segment("agent", 6.0, 12.0, "您好，我是美家电器的王琳，看到您咨询过洗碗机，方便的时候给我回个电话。"),
), language="zh", duration=13.0)
HUNG_UP = Transcript((Segment("agent", 0.3, 3.1, "您好，我是美家电器的王琳。"),
                      Segment("customer", 3.5, 4.6, "不需要，谢谢。")), language="zh", duration=5.0)


def reference(call_id: str) -> tuple[dict, Transcript]:
    call = next(c for c in dev_calls() if c["call_id"] == call_id)
    segs = tuple(Segment(t["speaker"], t["start"], t["end"], t["text"]) for t in call["turns"])
    return call, Transcript(segs, language=call["language"], duration=segs[-1].end)


def attrs(call: dict, **metadata: str) -> CallAttributes:
    _, t = reference(call["call_id"])
    return CallAttributes(call["direction"], call["language"], t.duration, metadata)


def test_the_routing_example_in_the_docs_parses():
    import re

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("id: routing")]
    rules = parse_routing(block, "docs/operations.md")
    assert rules.routes[0].when == {"queue": ["after-sales", "complaints"]}


def test_the_bundled_routing_file():
    rules = load_routing()
    assert rules.checklists == ["sales_core", "sales_core_timing"] and rules.min_speech_seconds == 8
    en_out, t_en = reference("D016")  # outbound, en, 52 s
    zh_out, t_zh = reference("D001")  # outbound, zh
    zh_in, t_in = reference("D007")  # inbound, zh
    assert route(rules, attrs(en_out), t_en).checklist == "sales_core_timing"
    assert route(rules, attrs(zh_out), t_zh).checklist == "sales_core"
    assert route(rules, attrs(zh_in, campaign="Timing-Pilot"), t_in).checklist == "sales_core_timing"  # any case
    short = CallAttributes("outbound", "en", 15.0)
    assert route(rules, short, t_en).checklist == "sales_core"  # min_duration_s 20 not met: the default


@pytest.mark.parametrize(("transcript", "reason"), [(VOICEMAIL, "voicemail"), (VOICEMAIL_ZH, "voicemail"),
                                                     (HUNG_UP, "short_call")])
def test_voicemails_and_short_calls_are_set_aside_with_their_reason(transcript, reason):
    decision = route(load_routing(), CallAttributes("outbound", transcript.language, transcript.duration), transcript)
    assert (decision.checklist, decision.reason) == (None, reason)
    assert decision.message


def test_a_real_call_that_mentions_a_message_is_not_a_voicemail():
    call, t = reference("D016")
    talked = Transcript(t.segments[:1] + (Segment("customer", 9.7, 12.0, "Sorry, I got your voicemail earlier."),)
                        + t.segments[1:], language="en", duration=t.duration)
    assert route(load_routing(), attrs(call), talked).checklist == "sales_core_timing"  # the customer talks: a call


@pytest.mark.parametrize(("text", "field"), [
    ("routes: []\ndefault: no_such_list", "default: no checklist 'no_such_list'"),
    ("routes: [{when: {queue: a}, checklist: nope}]\ndefault: sales_core", "routes[0].checklist"),
    ("routes: [{when: {min_duration_s: -3}, checklist: sales_core}]\ndefault: sales_core",
     "routes[0].when.min_duration_s"),
    ("routes: [{when: {}, checklist: sales_core}]\ndefault: sales_core", "routes[0].when"),
    ("routes: []\ndefault: sales_core\nskip: {voicemail: {patterns: ['(']}}", "skip.voicemail.patterns"),
    ("routes: []\ndefault: sales_core\nskip: {min_speech: 3}", "unknown field 'min_speech'"),
])
def test_bad_routing_files_name_the_field(text, field):
    with pytest.raises(ChecklistError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_routing("id: r\nversion: 1\n" + text)


def test_a_batch_run_routes_skips_and_the_scorecard_counts_both(tmp_path: Path):
    """Four calls of two agents in one week: an English outbound call (routed to sales_core_timing), a Mandarin
    one (sales_core), a voicemail and a hang-up (skipped). Their transcripts are stored first, so no ASR runs."""
    from callqa.pipelines.reports.report_data import weekly_scorecard
    from callqa.pipelines.reports.scorecard import format_scorecard
    from callqa.pipelines.run.batch import file_sha256
    from callqa.pipelines.run.flows import process_batch
    from callqa.pipelines.store.database import Store

    batch, db = tmp_path / "batch", tmp_path / "calls.duckdb"
    batch.mkdir()
    calls = {"en.flac": ("D016", "A01", reference("D016")[1]), "zh.flac": ("D001", "A02", reference("D001")[1]),
             "vm.flac": ("D006", "A01", VOICEMAIL), "hang.flac": ("D007", "A02", HUNG_UP)}
    rows = []
    with Store(db) as store:
        for k, (name, (src, agent, transcript)) in enumerate(calls.items()):
            shutil.copy(DEV / "audio" / f"{src}.flac", batch / name)
            rid = file_sha256(batch / name)
            store.upsert_recording(rid, path=str(batch / name), file_name=name, status="new",
                                   duration_s=transcript.duration)  # as the audio probe stores it
            store.save_transcript(rid, transcript)
            rows.append({"file": name, "agent_id": agent, "started_at": f"2026-11-0{3 + k % 2}T10:00:00+08:00",
                         "direction": "outbound", "language": transcript.language})
    (batch / "calls.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    summary = process_batch(str(batch), str(batch / "calls.jsonl"), db=str(db), progress=False, routing="default")
    assert summary.counts == {"found": 4, "scored": 2, "skipped": 0, "failed": 0, "no_speech": 0, "routed_out": 2}
    assert "2 not scored by routing" in summary.lines()[0]
    con = duckdb.connect(str(db), read_only=True)
    try:
        got = dict(con.execute("SELECT r.file_name, coalesce(c.checklist_id, c.skip_reason) FROM call_routes c "
                               "JOIN recordings r USING (recording_id)").fetchall())
        assert got == {"en.flac": "sales_core_timing", "zh.flac": "sales_core", "vm.flac": "voicemail",
                       "hang.flac": "short_call"}
        scored = dict(con.execute("SELECT file_name, checklist_id FROM call_scores JOIN recordings USING "
                                  "(recording_id)").fetchall())
        assert scored == {"en.flac": "sales_core_timing", "zh.flac": "sales_core"}
        status = dict(con.execute("SELECT file_name, status || ':' || error_reason FROM recordings "
                                  "WHERE status = 'skipped'").fetchall())
        assert status == {"vm.flac": "skipped:voicemail", "hang.flac": "skipped:short_call"}
        card = weekly_scorecard(con, "2026-W45", "sales_core")
    finally:
        con.close()
    assert card.routing == {"A01": {"routed": 0, "elsewhere": 1, "skipped": 1, "voicemail": 1},
                            "A02": {"routed": 1, "elsewhere": 0, "skipped": 1, "short_call": 1}}
    text = format_scorecard(card)
    assert "A01: 0 routed, 1 elsewhere, 1 skipped (voicemail 1)" in text
    assert card.to_dict()["routing"] == card.routing

    again = process_batch(str(batch), str(batch / "calls.jsonl"), db=str(db), progress=False, routing="default")
    assert again.counts["skipped"] == 4 and again.counts["scored"] == 0  # decided once: nothing redone
