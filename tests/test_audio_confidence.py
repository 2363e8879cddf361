"""Whisper's confidence into evidence (issue 15, item 4), on real Whisper, a real DuckDB file and the real app/report.

The call is made from one real 11 s clip (JFK, ../shared/data/speech): the agent's channel is the clip as recorded,
the customer's channel the same clip reversed in time under white noise 1.4 times its RMS (-2.9 dB SNR): speech-like
sound that VAD passes and nobody can understand, so Whisper writes text it doubts there. A verdict quoting the
customer's side must be flagged as resting on low-confidence audio, one quoting the agent's clean speech must not, one
without evidence must not, and the same verdicts over the same words typed in (a text-only transcript) are never
flagged."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import duckdb
import numpy as np
import pytest
from callqa.models import confidence
from callqa.models.asr import AsrOptions, transcribe_audio
from callqa.models.audio import load_audio
from callqa.models.runtimes import RUNTIMES, get_runtime
from callqa.pipelines.store.database import Store, parse_started_at
from callqa.qa_rules.checklist import load_checklist
from callqa.qa_rules.engine import call_score

from callqa.records import Evidence, ItemVerdict, Transcript
from tests.conftest import SHARED

CLIP = SHARED / "speech" / "whisper_jfk.flac"
CALL_ID = "LOWAUDIO1"
STARTED = "2026-11-10T10:00:00+08:00"  # ISO week 2026-W46
WEEK = "2026-W46"


NOISE_GAIN = 1.4  # noise RMS / clip RMS


def degraded_call():
    """Left (agent): the clip. Right (customer): the clip reversed, plus white noise (seeded)."""
    audio = load_audio(CLIP)
    x = audio.channels[0]
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    noise = np.random.default_rng(7).normal(0.0, NOISE_GAIN * rms, x.shape)
    right = np.clip(x[::-1] + noise, -1.0, 1.0)
    return dataclasses.replace(audio, channels=np.ascontiguousarray(np.stack([x, right]), dtype=np.float32))


def clean_clip():
    """The whole clip, one channel. (Cut at 5 s, inside the word "what", Whisper writes "ask NOT!" at word prob 0.56:
    rightly flagged, so not clean.)"""
    audio = load_audio(CLIP)
    return dataclasses.replace(audio, channels=np.ascontiguousarray(audio.channels[:1]))


@pytest.fixture(scope="module")
def transcribed(shared_data) -> tuple[str, Transcript]:
    """The degraded call through the default runtime. Whisper's temperature fallback samples on the noisy side; the
    seed makes a run repeatable on one machine (the assertions hold with margin over unseeded runs too, see below).
    (openai-whisper passed these tests on an earlier, milder version of the call, but its fallback on the noisy
    side took about 10 minutes on 2 shared cores: its own test is on clean speech.)"""
    import ctranslate2

    ctranslate2.set_random_seed(15)
    opts = AsrOptions()
    return opts.runtime, transcribe_audio(degraded_call(), get_runtime(opts), opts)


LINES = re.compile(r"(avg log-prob|no-speech prob|compression ratio|word prob) [-0-9.]+ (<|>|&lt;|&gt;) [-0-9.]+")


def verdicts_over(tr: Transcript) -> list[ItemVerdict]:
    """greeting: evidence on the agent's first (clean) segment; objection: one piece of evidence spanning the
    customer's whole (degraded) side; selling_point: a fail with no evidence."""
    def span(segs: list) -> Evidence:
        return Evidence(tr.segments.index(segs[0]), segs[0].speaker, " ".join(s.text for s in segs), segs[0].start,
                        segs[-1].end, 0.9)

    agent = [s for s in tr.segments if s.speaker == "agent"]
    customer = [s for s in tr.segments if s.speaker == "customer"]
    return [ItemVerdict("greeting", "pass", 0.95, (span(agent[:1]),)),
            ItemVerdict("objection", "pass", 0.95, (span(customer),)), ItemVerdict("selling_point", "fail", 0.95)]


def store_call(db: Path, rid: str, call_id: str, tr: Transcript, verdicts: list[ItemVerdict] | None = None) -> None:
    checklist = load_checklist("sales_core")
    aware, local = parse_started_at(STARTED)
    with Store(db) as store:
        store.save_checklist(checklist)
        store.upsert_recording(rid, path=str(CLIP), file_name=CLIP.name, call_id=call_id, agent_id="A01",
                               started_at=aware, started_local=local, language="en", agent_channel=0,
                               duration_s=tr.duration, status="new")
        store.save_transcript(rid, tr)
        store.save_score(rid, call_score(checklist, verdicts_over(tr) if verdicts is None else verdicts))


@pytest.fixture(scope="module")
def stored(transcribed, tmp_path_factory) -> tuple[str, Transcript, Path]:
    runtime, tr = transcribed
    db = tmp_path_factory.mktemp(f"conf-{runtime}") / "calls.duckdb"
    store_call(db, "a" * 64, CALL_ID, tr)
    text_only = Transcript.from_turns([{"speaker": s.speaker, "text": s.text, "start": s.start, "end": s.end}
                                       for s in tr.segments], "en")
    store_call(db, "b" * 64, "TYPED1", text_only)
    return runtime, tr, db


def flags(db: Path, rid: str) -> dict[str, tuple[bool, str | None]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {i: (f, why) for i, f, why in con.execute(
            "SELECT item_id, low_confidence_audio, audio_flag FROM item_verdicts WHERE recording_id = ?",
            [rid]).fetchall()}


def assert_survives(tr: Transcript, db: Path, rid: str) -> None:
    assert tr.segments
    for s in tr.segments:
        assert s.avg_logprob is not None and -10 < s.avg_logprob <= 0, s
        assert s.no_speech_prob is not None and 0 <= s.no_speech_prob <= 1, s
        assert s.compression_ratio is not None and s.compression_ratio > 0, s
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT avg_logprob, no_speech_prob, compression_ratio FROM segments "
                           "WHERE recording_id = ? ORDER BY seg_idx", [rid]).fetchall()
    assert rows == [(s.avg_logprob, s.no_speech_prob, s.compression_ratio) for s in tr.segments]
    with Store.open_readonly(db) as store:
        back = store.load_transcript(rid)
    assert [(s.avg_logprob, s.no_speech_prob, s.compression_ratio) for s in back.segments] == rows


def test_whisper_confidence_survives_into_the_db(stored):
    runtime, tr, db = stored
    assert tr.runtime == runtime and {s.speaker for s in tr.segments} == {"agent", "customer"}
    assert_survives(tr, db, "a" * 64)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_both_runtimes_keep_whisper_confidence_into_the_db(runtime, shared_data, tmp_path):
    opts = AsrOptions(runtime=runtime, diarize_mono=False)
    tr = transcribe_audio(clean_clip(), get_runtime(opts), opts)
    assert tr.runtime == runtime
    db = tmp_path / "calls.duckdb"
    first = tr.segments[0]
    store_call(db, "c" * 64, "CLEAN1", tr, [ItemVerdict("greeting", "pass", 0.95, (
        Evidence(0, first.speaker, first.text, first.start, first.end),))])
    assert_survives(tr, db, "c" * 64)
    # clean read speech: nothing under it is doubtful, whichever runtime heard it
    assert not any(confidence.is_low_confidence(s) for s in tr.segments), tr.segments
    assert flags(db, "c" * 64) == {"greeting": (False, None)}


def test_degraded_side_is_low_confidence_and_clean_side_is_not_with_margins(stored):
    runtime, tr, _ = stored
    agent = [s for s in tr.segments if s.speaker == "agent"]
    customer = [s for s in tr.segments if s.speaker == "customer"]
    shown = [(s.speaker, s.avg_logprob, s.no_speech_prob, s.compression_ratio, s.confidence, s.text)
             for s in tr.segments]
    # Measured (faster-whisper, unseeded runs): the agent's side is decoded the same way every time (no fallback):
    # avg log-prob -0.33, no-speech 0.04, word prob 0.83-0.99, clear of every line. The customer's side goes through
    # the temperature fallback, which samples, so its numbers vary: with this noise (3 runs) window log-prob -1.18,
    # -2.43, -5.02 and lowest word prob 0.20, 0.01, 0.00; with noise at the clip's RMS (4 runs) a segment could pass
    # the lines (word prob 0.66, window -0.96), but each run had one far past one (lowest word prob 0.05-0.44).
    for s in agent:
        assert s.avg_logprob > confidence.LOW_AVG_LOGPROB + 0.4, shown
        assert s.no_speech_prob < confidence.HIGH_NO_SPEECH - 0.3, shown
        assert s.confidence > confidence.LOW_WORD_PROB + 0.15, shown
        assert not confidence.is_low_confidence(s), shown
    assert customer and any(confidence.is_low_confidence(s) for s in customer), shown
    assert (min(s.confidence for s in customer) < confidence.LOW_WORD_PROB - 0.15
            or min(s.avg_logprob for s in customer) < confidence.LOW_AVG_LOGPROB - 0.15), shown


def test_verdict_on_degraded_audio_is_flagged_and_clean_one_is_not(stored):
    _, tr, db = stored
    got = flags(db, "a" * 64)
    assert got["greeting"] == (False, None)
    assert got["selling_point"] == (False, None)  # no evidence: nothing heard to doubt
    flagged, why = got["objection"]
    low = [s for s in tr.segments if s.speaker == "customer" and confidence.is_low_confidence(s)]
    assert flagged and why.startswith(f"{low[0].start:.1f}-{low[0].end:.1f} s: ") and LINES.search(why), why


def test_text_only_verdicts_are_never_flagged(stored):
    _, _, db = stored
    got = flags(db, "b" * 64)
    assert set(got) == {"greeting", "objection", "selling_point"}
    assert all(v == (False, None) for v in got.values()), got


def test_app_call_page_and_queue_show_the_flag(stored):
    _, _, db = stored
    from callqa.pipelines.app.server import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app(db), base_url="http://127.0.0.1:8765")
    page = client.get(f"/calls/{CALL_ID}")
    assert page.status_code == 200, page.text
    blocks = {m.group(1): m.group(0) for m in
              re.finditer(r'<article class="verdict" id="item-([a-z_]+)".*?</article>', page.text, re.S)}
    assert set(blocks) >= {"greeting", "objection", "selling_point"}
    assert "data-audio-flag" in blocks["objection"] and "low-confidence audio" in blocks["objection"]
    assert "data-audio-flag" not in blocks["greeting"] and "data-audio-flag" not in blocks["selling_point"]
    typed = client.get("/calls/TYPED1")
    assert typed.status_code == 200 and "data-audio-flag" not in typed.text

    queue = client.get(f"/queue?week={WEEK}")
    assert queue.status_code == 200
    rows = {(c, i): body for c, i, body in re.findall(
        r'<tr class="q-row"[^>]*data-call="([^"]+)" data-item="([^"]+)"[^>]*>(.*?)</tr>', queue.text, re.S)}
    entry = rows[(CALL_ID, "objection")]
    assert ">low-confidence audio<" in entry and LINES.search(entry)  # the reason, and where and why
    assert all(">low-confidence audio<" not in body for key, body in rows.items() if key != (CALL_ID, "objection"))


def test_report_marks_the_flagged_verdict(stored, tmp_path):
    _, _, db = stored
    from callqa.pipelines.reports.report import build_week_report, write_report

    with Store.open_readonly(db) as store:
        report = build_week_report(store, WEEK)
    write_report(report, tmp_path, clips=False)
    html = (tmp_path / "calls" / f"{CALL_ID}.html").read_text(encoding="utf-8")
    rows = dict(re.findall(r'<tr data-item="([a-z_]+)">(.*?)</tr>', html, re.S))
    assert "low-confidence audio" in rows["objection"] and LINES.search(rows["objection"])
    assert "low-confidence audio" not in rows["greeting"]
    typed = (tmp_path / "calls" / "TYPED1.html").read_text(encoding="utf-8")
    assert "low-confidence audio" not in typed
