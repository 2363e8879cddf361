"""The review workstation (`callqa app`) through FastAPI's TestClient on a real dev database: pages show the read
model's numbers, reviews and appeals are stored exactly as the CLI stores them, bad input changes nothing, audio is
served only for recordings, the token and same-origin rules hold, and a review meets a batch's writer lock."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from callqa.pipelines.app.server import create_app
from callqa.pipelines.reports.call_metrics import load_segments
from callqa.pipelines.reports.report_data import agent_weeks, load_dataset, weekly_scorecard, weeks
from callqa.pipelines.store.review import list_reviews
from fastapi.testclient import TestClient

from tests.reportdb import dev_db_copy

BASE = "http://127.0.0.1:8765"
SAME = {"Origin": BASE}


@pytest.fixture(scope="module")
def db(tmp_path_factory, shared_data) -> Path:
    return dev_db_copy(tmp_path_factory, "app")


@pytest.fixture(scope="module")
def client(db) -> TestClient:
    return TestClient(create_app(db, write_wait=2.0), base_url=BASE)


def ro(db: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db), read_only=True)


class Rows(HTMLParser):
    """Table rows carrying `attr` (e.g. data-agent): {row value: {cell key: text}}, cells keyed by data-col/item."""

    def __init__(self, attr: str):
        super().__init__()
        self.attr, self.rows, self.row, self.cell, self.text = attr, {}, None, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and self.attr in a:
            self.row = self.rows.setdefault(a[self.attr], {})
        elif tag == "td" and self.row is not None and ("data-col" in a or "data-item" in a):
            self.cell, self.text = a.get("data-col") or a["data-item"], []

    def handle_data(self, data):
        if self.cell is not None:
            self.text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.row[self.cell] = "".join(self.text).strip()
            self.cell = None
        elif tag == "tr":
            self.row = None


def rows(html: str, attr: str) -> dict[str, dict[str, str]]:
    p = Rows(attr)
    p.feed(html)
    return p.rows


def rate(r: float | None) -> str:
    return "-" if r is None else f"{r * 100:.0f}%"


def review_count(db: Path) -> int:
    with ro(db) as con:
        return con.execute("SELECT count(*) FROM verdict_reviews").fetchone()[0]


def appeal_count(db: Path) -> int:
    with ro(db) as con:
        has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdict_appeals'")
        return con.execute("SELECT count(*) FROM verdict_appeals").fetchone()[0] if has.fetchone()[0] else 0


# --- pages -------------------------------------------------------------------------------------------


def assert_home_is_the_scorecard(client: TestClient, db: Path) -> None:
    with ro(db) as con:
        all_weeks = weeks(con)
        cards = {w: weekly_scorecard(con, w) for w in all_weeks}
    assert len(all_weeks) >= 2
    for w, card in cards.items():
        r = client.get(f"/?week={w}")
        assert r.status_code == 200, r.text
        shown = rows(r.text, "data-agent")
        assert list(shown) == [a.agent_id for a in card.agents]  # same agents, same order
        for a in card.agents:
            row = shown[a.agent_id]
            assert row["calls"] == str(a.calls) and row["score"] == f"{a.score:.1f}"
            assert row["crit"] == str(a.critical_fails)
            assert {it["id"]: row[it["id"]] for it in card.items} == {
                it["id"]: rate(a.pass_rate(it["id"])) for it in card.items}


def test_home_shows_exactly_the_weekly_scorecard(client, db):
    assert_home_is_the_scorecard(client, db)
    latest = client.get("/")
    assert latest.status_code == 200 and "Weekly scorecard 2026-W46" in latest.text
    assert 'data-queue-count' in latest.text
    assert client.get("/?week=2031-W01").status_code == 404


def test_agent_page_has_the_agents_calls_and_rates(client, db):
    with ro(db) as con:
        ds = load_dataset(con)
    a = agent_weeks(ds, "2026-W46")["A06"]
    r = client.get("/agents/A06?week=2026-W46")
    assert r.status_code == 200
    assert f'data-agent-score>{a.score:.1f}<' in r.text
    calls = rows(r.text, "data-call")
    assert sorted(calls) == sorted(c.call_id for c in ds.week_calls("2026-W46", "A06"))
    rates = rows(r.text, "data-item")
    for item_id, cells in rates.items():
        assert cells["agent"] == rate(a.pass_rate(item_id))
    assert "<polyline" in r.text  # trend over the weeks
    assert client.get("/agents/NOBODY").status_code == 404


def test_call_page_shows_transcript_verdicts_evidence_and_audio(client, db):
    with ro(db) as con:
        ds = load_dataset(con)
        call = next(c for c in ds.calls if c.call_id == "D001")
        segs = load_segments(con, call.recording_id)
    r = client.get("/calls/D001")
    assert r.status_code == 200
    html = r.text
    assert html.count('class="seg sp-') == len(segs)
    assert f'src="/audio/{call.recording_id}"' in html
    for item_id, v in call.verdicts.items():
        assert f'data-item="{item_id}" data-verdict="{v.verdict}"' in html
        assert f"{v.confidence:.2f}" in html
        for e in v.evidence:
            assert f'data-seek="{e.start}"' in html
    assert html.count("<mark class=\"ev-") >= 3  # evidence highlighted in the transcript
    assert f"/clips/{call.recording_id}.wav?start=" in html
    # the recording id and its prefix name the same call
    assert client.get(f"/calls/{call.recording_id[:12]}").status_code == 200
    assert client.get("/calls/NO-SUCH-CALL").status_code == 404


def test_text_from_the_database_is_escaped(db, tmp_path_factory):
    copy = dev_db_copy(tmp_path_factory, "escape")
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE segments SET text = '<script>alert(1)</script>' || text WHERE seg_idx = 0")
    c = TestClient(create_app(copy), base_url=BASE)
    html = c.get("/calls/D001").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_review_queue_lists_low_confidence_critical_and_a_stable_sample(client, db):
    r = client.get("/queue?week=2026-W46")
    assert r.status_code == 200
    entries = re.findall(r'<tr class="q-row"[^>]*data-call="([^"]+)" data-item="([^"]+)"', r.text)
    assert entries and len(set(entries)) == len(entries)
    with ro(db) as con:
        ds = load_dataset(con, weeks=["2026-W46"])
    for c in ds.week_calls("2026-W46"):
        for item_id, v in c.verdicts.items():
            must = v.human_verdict is None and (v.confidence < 0.7 or (item_id == "forbidden_phrase"
                                                                       and v.verdict == "fail"))
            if must:
                assert (c.call_id, item_id) in entries
    assert r.text.count(">sample<") >= 5
    again = re.findall(r'<tr class="q-row"[^>]*data-call="([^"]+)" data-item="([^"]+)"',
                       client.get("/queue?week=2026-W46").text)
    assert again == entries  # seeded: the same sample on every load
    home = client.get("/?week=2026-W46").text
    assert f"data-queue-count>{len(entries)}<" in home
    only = re.findall(r'data-call="[^"]+" data-item="([^"]+)"', client.get("/queue?week=2026-W46&item=greeting").text)
    assert only and set(only) == {"greeting"}
    agent = re.findall(r'<tr class="q-row"[^>]*data-call="([^"]+)"', client.get("/queue?week=2026-W46&agent=A05").text)
    assert agent and all(c in {x.call_id for x in ds.week_calls("2026-W46", "A05")} for c in agent)


# --- reviews -----------------------------------------------------------------------------------------


def test_review_post_is_stored_like_the_cli_and_shows_everywhere(client, db):
    with ro(db) as con:
        before = load_dataset(con)
    call = next(c for c in before.calls if c.call_id == "D030")
    auto = call.verdicts["usage_scenario"].auto_verdict
    flipped = "fail" if auto == "pass" else "pass"
    r = client.post("/api/reviews", headers=SAME, json={"call": "D030", "item": "usage_scenario",
                                                        "verdict": flipped, "reviewer": "lee",
                                                        "comment": "asks who uses it"})
    assert r.status_code == 201, r.text
    body = r.json()
    with ro(db) as con:
        stored = list_reviews(con, call="D030", item_id="usage_scenario")[0]
    assert (stored.review_id, stored.verdict, stored.auto_verdict, stored.reviewer, stored.comment) == (
        body["review_id"], flipped, auto, "lee", "asks who uses it")
    assert stored.checklist_version == before.version
    page = client.get("/calls/D030").text
    assert f'data-review-id="{stored.review_id}"' in page
    assert f'data-item="usage_scenario" data-verdict="{flipped}"' in page
    assert_home_is_the_scorecard(client, db)  # the override moves the scorecard and the home page alike
    assert "usage_scenario" not in {i for c, i in re.findall(
        r'data-call="(D030)" data-item="([^"]+)"', client.get(f"/queue?week={call.week}").text)}


BIG = "x" * (64 * 1024 + 10)


@pytest.mark.parametrize(("body", "ctype", "status", "message"), [
    (b'{"call": "D001", "item": "greeting", "verdict": "pass",', "application/json", 400, "malformed JSON"),
    (b'["D001", "greeting"]', "application/json", 400, "JSON object"),
    (b"\xff\xfe not utf-8", "application/json", 400, "malformed JSON"),
    (json.dumps({"call": "D999", "item": "greeting", "verdict": "pass", "reviewer": "lee"}), "application/json",
     404, "no call or recording"),
    (json.dumps({"call": "D001", "item": "politeness", "verdict": "pass", "reviewer": "lee"}), "application/json",
     404, "no verdict for item 'politeness'"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": "maybe", "reviewer": "lee"}), "application/json",
     422, "verdict must be one of pass, fail, na"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": "pass"}), "application/json", 422, "missing"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "  "}), "application/json",
     422, "must not be empty"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": 1, "reviewer": "lee"}), "application/json", 422,
     "must be a string"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "lee", "x": 1}),
     "application/json", 422, "unknown field"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "lee", "comment": BIG}),
     "application/json", 413, "64 KB"),
    ("call=D001&item=greeting&verdict=pass&reviewer=lee", "application/x-www-form-urlencoded", 415, "JSON"),
    (json.dumps({"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "lee"}), "text/plain", 415,
     "JSON"),
])
def test_bad_review_input_is_refused_and_changes_nothing(client, db, body, ctype, status, message):
    n = review_count(db)
    r = client.post("/api/reviews", content=body, headers={**SAME, "Content-Type": ctype})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert review_count(db) == n


def test_a_body_over_64kb_is_refused_without_content_length(client, db):
    n = review_count(db)

    def chunks():
        yield b'{"call": "D001", "comment": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    r = client.post("/api/reviews", content=chunks(), headers={**SAME, "Content-Type": "application/json"})
    assert r.status_code == 413 and review_count(db) == n


# --- appeals -----------------------------------------------------------------------------------------


def test_appeal_lifecycle_upheld_and_overturned(client, db):
    n_reviews = review_count(db)
    r = client.post("/api/appeals", headers=SAME, json={"call": "D002", "item": "selling_point",
                                                        "appellant": "A01", "reason": "I named the 13 place settings"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["status"] == "open" and first["disputed_verdict"] in ("pass", "fail", "na")
    dup = client.post("/api/appeals", headers=SAME, json={"call": "D002", "item": "selling_point",
                                                          "appellant": "A01", "reason": "again"})
    assert dup.status_code == 409
    assert f'data-appeal="{first["appeal_id"]}" data-status="open"' in client.get("/appeals?status=open").text
    up = client.post(f"/api/appeals/{first['appeal_id']}/close", headers=SAME,
                     json={"outcome": "upheld", "reviewer": "kim", "comment": "the machine was right"})
    assert up.status_code == 200 and up.json()["status"] == "upheld"
    assert up.json()["final_verdict"] == first["disputed_verdict"] and up.json()["review_id"] is None
    assert review_count(db) == n_reviews  # upheld writes no review
    again = client.post(f"/api/appeals/{first['appeal_id']}/close", headers=SAME,
                        json={"outcome": "overturned", "reviewer": "kim"})
    assert again.status_code == 409

    with ro(db) as con:
        disputed = load_dataset(con).calls
    greeting = next(c for c in disputed if c.call_id == "D003").verdicts["greeting"].verdict
    second = client.post("/api/appeals", headers=SAME, json={"call": "D003", "item": "greeting",
                                                             "appellant": "A02", "reason": "I said my name"}).json()
    assert client.post(f"/api/appeals/{second['appeal_id']}/close", headers=SAME,
                       json={"outcome": "dismissed", "reviewer": "kim"}).status_code == 422
    over = client.post(f"/api/appeals/{second['appeal_id']}/close", headers=SAME,
                       json={"outcome": "overturned", "reviewer": "kim", "comment": "name at 0:03"})
    assert over.status_code == 200, over.text
    final = {"pass": "fail", "fail": "pass"}[greeting]
    assert over.json()["final_verdict"] == final and over.json()["review_id"] is not None
    with ro(db) as con:
        rv = list_reviews(con, call="D003", item_id="greeting")[0]
    assert (rv.review_id, rv.verdict, rv.reviewer) == (over.json()["review_id"], final, "kim")
    assert "appeal" in rv.comment
    assert f'data-item="greeting" data-verdict="{final}"' in client.get("/calls/D003").text
    listing = client.get("/appeals").text
    assert 'data-status="upheld"' in listing and 'data-status="overturned"' in listing
    assert f'data-appeal="{second["appeal_id"]}"' in client.get("/appeals?status=overturned").text
    assert client.get("/appeals?status=bogus").status_code == 400
    n = appeal_count(db)
    for bad in ({"call": "D003", "item": "greeting", "appellant": "A02"},
                {"call": "NOPE", "item": "greeting", "appellant": "A02", "reason": "x"},
                {"call": "D003", "item": "nope", "appellant": "A02", "reason": "x"},
                {"call": "D003", "item": "greeting", "appellant": "", "reason": "x"}):
        assert 400 <= client.post("/api/appeals", headers=SAME, json=bad).status_code < 500
    assert client.post("/api/appeals/999/close", headers=SAME, json={"outcome": "upheld",
                                                                     "reviewer": "kim"}).status_code == 404
    assert appeal_count(db) == n


def test_an_older_database_gets_the_appeals_table_on_first_write(tmp_path_factory):
    copy = dev_db_copy(tmp_path_factory, "v5")
    with duckdb.connect(str(copy)) as con:
        con.execute("DROP TABLE verdict_appeals")  # what migrations 6 and later made: a v5 database
        con.execute("DROP TABLE call_routes")
        con.execute("DELETE FROM schema_migrations WHERE version >= 6")
        con.execute("UPDATE schema_info SET value = '5' WHERE key = 'schema_version'")
    c = TestClient(create_app(copy), base_url=BASE)
    assert c.get("/appeals").status_code == 200 and c.get("/").status_code == 200
    r = c.post("/api/appeals", headers=SAME, json={"call": "D001", "item": "greeting", "appellant": "A01",
                                                   "reason": "r"})
    assert r.status_code == 201
    assert appeal_count(copy) == 1


# --- audio -------------------------------------------------------------------------------------------


def test_audio_is_served_for_recordings_only(client, db):
    with ro(db) as con:
        rid, path = con.execute("SELECT recording_id, path FROM recordings WHERE call_id = 'D001'").fetchone()
    r = client.get(f"/audio/{rid}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert r.content[:4] == b"fLaC" and len(r.content) == Path(path).stat().st_size
    part = client.get(f"/audio/{rid}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100  # the player can seek
    clip = client.get(f"/clips/{rid}.wav?start=0.35&end=8.1")
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    assert clip.content[:4] == b"RIFF" and clip.content[8:12] == b"WAVE" and len(clip.content) > 100_000
    for bad in ("0" * 64, rid[:12], "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", f"{rid}%2F..%2F..",
                "D001", "%2E%2E"):
        assert client.get(f"/audio/{bad}").status_code == 404, bad
    assert client.get("/audio/../../etc/passwd").status_code == 404
    assert client.get(f"/clips/{'0' * 64}.wav?start=1&end=2").status_code == 404
    assert client.get(f"/clips/{rid}.wav?start=5&end=2").status_code == 400
    assert client.get(f"/clips/{rid}.wav?start=0&end=999").status_code == 400
    assert client.get(f"/clips/{rid}.wav?start=x&end=2").status_code == 422
    assert client.get("/static/../server.py").status_code == 404


# --- security ----------------------------------------------------------------------------------------


def test_token_is_required_on_every_request(db):
    token = "s3cret-token-123"
    c = TestClient(create_app(db, token=token), base_url=BASE, follow_redirects=False)
    for url in ("/", "/calls/D001", "/static/app.js", "/queue"):
        assert c.get(url).status_code == 401, url
    assert c.get("/?token=wrong-token-xx").status_code == 401
    assert c.post("/api/reviews", headers=SAME, json={}).status_code == 401
    opened = c.get("/calls/D001?token=" + token)
    assert opened.status_code == 303 and opened.headers["location"] == "/calls/D001"
    assert "httponly" in opened.headers["set-cookie"].lower() and "samesite=strict" in opened.headers[
        "set-cookie"].lower()
    assert c.get("/calls/D001").status_code == 200  # the cookie now carries it
    bare = TestClient(create_app(db, token=token), base_url="http://192.168.1.20:8765")
    assert bare.get("/", headers={"X-Callqa-Token": token}).status_code == 200  # any Host, with the token
    n = review_count(db)
    review = {"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "lee"}
    assert bare.post("/api/reviews", json=review, headers={"X-Callqa-Token": token}).status_code == 403  # no Origin
    assert bare.post("/api/reviews", json=review, headers={"X-Callqa-Token": token,
                                                           "Origin": "http://evil.example"}).status_code == 403
    assert review_count(db) == n
    ok = bare.post("/api/reviews", json=review, headers={"X-Callqa-Token": token,
                                                         "Origin": "http://192.168.1.20:8765"})
    assert ok.status_code == 201 and review_count(db) == n + 1


def test_without_a_token_only_loopback_and_same_origin(client, db):
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 421  # DNS rebinding
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    n = review_count(db)
    review = {"call": "D001", "item": "greeting", "verdict": "pass", "reviewer": "lee"}
    assert client.post("/api/reviews", json=review).status_code == 403
    assert client.post("/api/reviews", json=review, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/reviews", json=review, headers={"Referer": "http://evil.example/x"}).status_code == 403
    assert client.post("/api/reviews", json=review, headers={"Origin": "null"}).status_code == 403
    assert review_count(db) == n
    r = client.post("/api/reviews", json=review, headers={"Referer": f"{BASE}/calls/D001"})
    assert r.status_code == 201
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


def test_the_command_refuses_a_public_address_without_a_token(db, capsys):
    from callqa.pipelines.cli.main import main

    assert main(["app", "--db", str(db), "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err
    assert main(["app", "--db", str(db), "--host", "192.168.1.20", "--token", "short"]) == 2


# --- the writer lock ---------------------------------------------------------------------------------

HOLD = """
import sys, time
from callqa.pipelines.store.database import WriterLock
lock = WriterLock(sys.argv[1], what="test batch").acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_review_waits_for_the_batch_or_is_refused_with_503(tmp_path_factory):
    db = dev_db_copy(tmp_path_factory, "locked")
    review = {"call": "D001", "item": "greeting", "verdict": "fail", "reviewer": "lee", "comment": "batch running"}
    # the batch lets go within the wait: the review is stored once it has
    c = TestClient(create_app(db, write_wait=6.0), base_url=BASE)
    proc = hold_lock(db, 1.5)
    t0 = time.monotonic()
    r = c.post("/api/reviews", headers=SAME, json=review)
    waited = time.monotonic() - t0
    proc.wait(timeout=30)
    assert r.status_code == 201, r.text
    assert waited >= 1.0 and review_count(db) == 1
    # the batch holds on: 503 naming the holder, nothing stored, and the same request succeeds afterwards
    c = TestClient(create_app(db, write_wait=1.0), base_url=BASE)
    proc = hold_lock(db, 60)
    try:
        r = c.post("/api/reviews", headers=SAME, json=review)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "test batch" in r.json()["error"] and "Nothing was lost" in r.json()["error"]
        a = c.post("/api/appeals", headers=SAME, json={"call": "D001", "item": "greeting", "appellant": "A01",
                                                       "reason": "r"})
        assert a.status_code == 503
        assert c.get("/calls/D001").status_code == 200  # reading goes on while the batch holds the lock
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert review_count(db) == 1 and appeal_count(db) == 0
    assert c.post("/api/reviews", headers=SAME, json=review).status_code == 201


# --- the rules bench ---------------------------------------------------------------------------------


def test_rules_bench_runs_the_examples_and_a_dialogue(client, tmp_path, capsys):
    from callqa.pipelines.app.rules import run_examples
    from callqa.pipelines.cli.main import main
    from callqa.qa_rules.checklist import load_checklist

    cl = load_checklist("team_follow_up")
    results = run_examples(cl)
    assert len(results) == sum(len(v) for it in cl.items for v in it.examples.values())
    r = client.get("/rules?checklist=team_follow_up")
    assert r.status_code == 200
    assert f"data-examples-ok>{sum(x.ok for x in results)}<" in r.text and f"data-examples>{len(results)}<" in r.text
    assert client.get("/rules?checklist=../../etc/passwd").status_code == 404  # bundled names only
    dialogue = "agent: I'll call you back tomorrow at 10 a.m. with the repair estimate.\ncustomer: OK."
    api = client.post("/api/rules/test", headers=SAME, json={"checklist": "team_follow_up", "dialogue": dialogue})
    assert api.status_code == 200, api.text
    assert [v["item_id"] for v in api.json()["verdicts"]] == [it.id for it in cl.items]
    assert client.post("/api/rules/test", headers=SAME, json={"checklist": "team_follow_up",
                                                              "dialogue": "no speaker here"}).status_code == 422
    path = tmp_path / "d.txt"
    path.write_text(dialogue, encoding="utf-8")
    rc = main(["rules", "test", "--checklist", "team_follow_up", "--dialogue", str(path)])
    out = capsys.readouterr().out
    assert rc == (0 if all(x.ok for x in results) else 1)
    assert f"follow_up_time: {sum(x.ok for x in results)}/{len(results)} examples right" in out
    assert "dialogue:" in out and "follow_up_time" in out.split("dialogue:")[1]
