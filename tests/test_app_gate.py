"""The review workstation's auto-accept gate and its cached read model, on a real dev database with real stored
reviews: the gate opens only when the lower bound of the item's measured agreement clears the checklist's bar, the
queue and home page say why, the fast bootstrap gives `review.bootstrap_interval`'s intervals exactly, and every
cached page is the page computed from the tables (also after a review and after a batch-style write from another
process)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import duckdb
import pytest
import yaml
from callqa.pipelines.app.gate import AUTO, QUEUE
from callqa.pipelines.app.server import create_app
from callqa.pipelines.reports.report_data import load_dataset, weeks
from callqa.pipelines.store.database import Store
from callqa.pipelines.store.review import add_review, agreement, bootstrap_interval, bootstrap_intervals, gwet_ac1
from callqa.qa_rules.checklist import load_checklist
from fastapi.testclient import TestClient

from tests.reportdb import dev_db_copy

BASE = "http://127.0.0.1:8765"
SAME = {"Origin": BASE}
ROW = re.compile(r'<tr class="q-row"[^>]*data-call="([^"]+)" data-item="([^"]+)"')


def queue_entries(html: str) -> list[tuple[str, str]]:
    return ROW.findall(html)


def gate_row(html: str, item: str) -> dict[str, str]:
    row = re.search(rf'<tr data-gate="{item}" data-status="([^"]+)">(.*?)</tr>', html, re.S)
    assert row, item
    cells = {k: unescape(v) for k, v in re.findall(r'data-col="([a-z_0-9]+)">([^<]*)<', row.group(2))}
    return {"status": row.group(1), **cells}


# --- the bootstrap -----------------------------------------------------------------------------------


def test_fast_bootstrap_gives_the_review_modules_intervals_exactly():
    cases = []
    for seed in range(40):
        r = random.Random(seed)
        cats = ["pass", "fail", "na"][:r.choice([1, 2, 3])]
        n = r.choice([5, 6, 11, 30, 97, 250])
        agree = r.random()
        cases.append([(a, a if r.random() < agree else r.choice(cats)) for a in (r.choice(cats) for _ in range(n))])
    cases.append([("pass", "pass")] * 40 + [("pass", "fail")])  # nearly all pass: kappa collapses, AC1 does not
    cases.append([("pass", "fail"), ("fail", "pass")] * 5)  # always disagree
    for pairs in cases:
        assert bootstrap_intervals(pairs) == (bootstrap_interval(pairs), bootstrap_interval(pairs, stat=gwet_ac1))
    assert bootstrap_intervals([("pass", "pass")] * 4) == (None, None)  # under 5: no interval, as review.py


# --- the gate on real reviews ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gated(tmp_path_factory, shared_data):
    """A dev database copy and a checklist file: sales_core with gates on greeting (AC1 >= 0.6 over 8+) and
    usage_scenario (kappa >= 0.9 over 5+)."""
    db = dev_db_copy(tmp_path_factory, "gate")
    doc = yaml.safe_load(load_checklist("sales_core").source)
    for it in doc["items"]:
        if it["id"] == "greeting":
            it["review"] = {"auto_accept_min_lower": 0.6, "agreement": "ac1", "min_reviewed": 8}
        if it["id"] == "usage_scenario":
            it["review"] = {"auto_accept_min_lower": 0.9, "min_reviewed": 5}
    policy = tmp_path_factory.mktemp("policy") / "sales_core_gated.yaml"
    policy.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return db, policy


def store_reviews(db: Path, item: str, calls: list[str], flip_every: int | None) -> None:
    """Real reviews through the Store (what `callqa review set` writes): the machine's verdict confirmed, or
    flipped on every `flip_every`-th call."""
    with Store(db) as store:
        for n, call in enumerate(calls):
            auto = store.con.execute(
                "SELECT v.verdict FROM item_verdicts v JOIN recordings r USING (recording_id) "
                "WHERE r.call_id = ? AND v.item_id = ?", [call, item]).fetchone()[0]
            human = auto
            if flip_every and n % flip_every == 0:
                human = {"pass": "fail", "fail": "pass", "na": "pass"}[auto]
            add_review(store.con, call, item, human, "qa-lead", "gate test")


def test_the_gate_opens_only_when_the_lower_bound_clears(gated):
    db, policy = gated
    c = TestClient(create_app(db, review_policy=policy, db_linger=0), base_url=BASE)  # the test writes too
    with duckdb.connect(str(db), read_only=True) as con:
        week = weeks(con)[-1]
        ds = load_dataset(con)
    week_calls = {x.call_id for x in ds.week_calls(week)}

    # no reviews yet: both gated items are closed, every unreviewed verdict of theirs is in the queue
    page = c.get(f"/queue?week={week}").text
    entries = queue_entries(page)
    for item in ("greeting", "usage_scenario"):
        assert gate_row(page, item)["status"] == QUEUE
        assert {call for call, i in entries if i == item} == week_calls
    assert "0 of 8 reviewed verdicts needed" in gate_row(page, "greeting")["why"]
    assert "below agreement bar" in page

    # greeting: reviewers confirm the machine on 12 calls of the other weeks; usage_scenario: every 2nd flipped
    others = sorted(x.call_id for x in ds.calls if x.week != week)
    store_reviews(db, "greeting", others[:12], flip_every=None)
    store_reviews(db, "usage_scenario", others[:12], flip_every=2)
    with duckdb.connect(str(db), read_only=True) as con:
        stats = {s.item_id: s for s in agreement(con)}
        pairs = {item: [tuple(r) for r in con.execute(  # the order the gate reads them in: by recording
            "SELECT v.auto_verdict, v.verdict FROM verdict_reviews v WHERE v.item_id = ? ORDER BY v.recording_id",
            [item]).fetchall()] for item in ("greeting", "usage_scenario")}
    page = c.get(f"/queue?week={week}").text
    g, u = gate_row(page, "greeting"), gate_row(page, "usage_scenario")
    # the page's numbers are `callqa review stats`' numbers
    assert g["reviewed"] == "12" and g["kappa"] == f"{stats['greeting'].kappa:.2f}"
    assert g["ac1"] == f"{stats['greeting'].ac1:.2f}"
    lo, hi = bootstrap_interval(pairs["greeting"], stat=gwet_ac1)
    assert g["ac1_ci"] == f"{lo:.2f}..{hi:.2f}" and lo >= 0.6
    assert u["kappa"] == f"{stats['usage_scenario'].kappa:.2f}"
    assert u["kappa_ci"] == "{:.2f}..{:.2f}".format(*bootstrap_interval(pairs["usage_scenario"]))
    assert g["status"] == AUTO and "ac1 95% lower bound" in g["why"] and ">= 0.60" in g["why"]
    assert u["status"] == QUEUE and "< 0.90" in u["why"]  # half the reviews disagree
    entries = queue_entries(page)
    queued_greeting = {call for call, i in entries if i == "greeting"}
    # auto-accepted: greeting leaves the queue (low confidence included) but for the seeded sample
    assert len(queued_greeting) < len(week_calls)
    assert all(">sample<" in row for row in re.findall(
        r'<tr class="q-row"[^>]*data-item="greeting".*?</tr>', page, re.S))
    assert {call for call, i in entries if i == "usage_scenario"} == week_calls  # still closed: all of them
    home = c.get(f"/?week={week}").text
    assert 'data-gate="greeting" data-status="auto-accept"' in home
    assert 'data-gate="usage_scenario" data-status="to the queue"' in home
    assert f"data-queue-count>{len(entries)}<" in home

    # without the policy file the bundled sales_core (no gates) applies: nothing is gated
    plain = TestClient(create_app(db, db_linger=0), base_url=BASE).get(f"/queue?week={week}").text
    assert gate_row(plain, "greeting")["status"] == "not gated"


# --- the cached read model ---------------------------------------------------------------------------


def pages(c: TestClient, db: Path) -> dict[str, str]:
    with duckdb.connect(str(db), read_only=True) as con:
        all_weeks = weeks(con)
        ds = load_dataset(con)
    out = {}
    for w in all_weeks:
        for path in (f"/?week={w}", f"/queue?week={w}", f"/queue?week={w}&item=greeting"):
            out[path] = c.get(path).text
        for a in sorted({x.agent_id for x in ds.week_calls(w)}):
            out[f"/agents/{a}?week={w}"] = c.get(f"/agents/{a}?week={w}").text
    for call in ds.calls[::4]:
        out[f"/calls/{call.call_id}"] = c.get(f"/calls/{call.call_id}").text
    assert all("<h1>" in html and "data-error" not in html for html in out.values())
    return out


MOVE = """
import sys
from callqa.pipelines.store.database import Store
with Store(sys.argv[1], wait=30) as store:  # takes the WriterLock and waits for the app's connection
    rid = store.con.execute("SELECT recording_id FROM recordings WHERE call_id = 'D002'").fetchone()[0]
    store.upsert_recording(rid, agent_id="A99")
"""


def test_cached_pages_are_the_pages_computed_from_the_tables(tmp_path_factory, shared_data):
    db = dev_db_copy(tmp_path_factory, "readmodel")
    cached_app = create_app(db)
    cached = TestClient(cached_app, base_url=BASE)
    direct = TestClient(create_app(db, read_model=False, db_linger=0), base_url=BASE)
    first = pages(cached, db)
    assert pages(cached, db) == first == pages(direct, db)
    assert cached_app.state.read_model.hits > 0

    # a review through the app moves the cached pages exactly as the tables do
    r = cached.post("/api/reviews", headers=SAME, json={"call": "D003", "item": "greeting", "verdict": "fail",
                                                        "reviewer": "lee"})
    assert r.status_code == 201
    after = pages(cached, db)
    assert after == pages(direct, db) and after != first

    # another process (a batch's Store) moves a call to another agent: the week's fingerprint changes
    subprocess.run([sys.executable, "-c", MOVE, str(db)], check=True, timeout=120)
    moved = pages(cached, db)
    assert moved == pages(direct, db)
    assert any("/agents/A99" in k for k in moved) and moved != after
