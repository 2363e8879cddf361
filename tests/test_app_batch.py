"""The workstation beside a real batch (issue 16, deliverable 6): `callqa run --no-prefect` scores two sample calls
(real Whisper, real engine) into the same DuckDB file the app serves. While it runs, pages keep answering, a
review with a short wait is refused with 503 and stores nothing, a review with a long wait is stored once the
batch lets go, and the batch's own calls are all stored: nothing is lost on either side. The app's kept
read connection must not hold the batch up (it is dropped as soon as the batch takes the WriterLock).
The timings are printed (`-s`) for docs/app.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import duckdb
from callqa.pipelines.app.server import create_app
from callqa.pipelines.store.database import WriterLock
from fastapi.testclient import TestClient

from tests.conftest import SAMPLES
from tests.reportdb import dev_db_copy

BASE = "http://127.0.0.1:8765"
SAME = {"Origin": BASE}


def writer_holds(db) -> bool:
    return bool(WriterLock(db).holder().get("pid"))


def test_reviews_and_pages_during_a_real_batch(tmp_path, tmp_path_factory, shared_data):
    db = dev_db_copy(tmp_path_factory, "beside-batch")
    root = tmp_path / "batch"
    shutil.copytree(SAMPLES / "calls", root / "calls")
    rows = [json.loads(x) for x in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x][:2]
    (root / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    quick = TestClient(create_app(db, write_wait=1.0), base_url=BASE)  # what a reviewer's page talks to
    patient = TestClient(create_app(db, write_wait=600.0), base_url=BASE)
    assert quick.get("/calls/D001").status_code == 200  # the app holds a read connection from here on

    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "callqa.pipelines.cli", "-q", "run", str(root), "--manifest",
                             str(root / "m.jsonl"), "--db", str(db), "--no-prefect"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not writer_holds(db):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        # a review with a 1 s wait: refused, clearly, nothing stored
        refused = quick.post("/api/reviews", headers=SAME, json={"call": "D001", "item": "greeting",
                                                                 "verdict": "fail", "reviewer": "lee"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5", refused.text
        assert "callqa run" in refused.json()["error"] and "Nothing was lost" in refused.json()["error"]
        # a review that waits for the batch, posted now
        waited: dict = {}

        def post_and_wait() -> None:
            t = time.monotonic()
            r = patient.post("/api/reviews", headers=SAME, json={"call": "D002", "item": "greeting",
                                                                 "verdict": "fail", "reviewer": "kim",
                                                                 "comment": "posted during the batch"})
            waited.update(status=r.status_code, body=r.json(), seconds=time.monotonic() - t)

        poster = threading.Thread(target=post_and_wait)
        poster.start()
        # pages while the batch writes: they answer (200), or 503 when a batch step keeps the file past 3 s
        statuses: list[tuple[int, float]] = []
        while proc.poll() is None and time.monotonic() - t0 < 900:
            t = time.monotonic()
            statuses.append((quick.get("/calls/D001").status_code, time.monotonic() - t))
            time.sleep(0.5)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    batch_s = time.monotonic() - t0
    poster.join(timeout=600)
    assert proc.returncode == 0, err
    with duckdb.connect(str(db), read_only=True) as con:
        scored = {r[0] for r in con.execute(
            "SELECT r.call_id FROM recordings r JOIN call_scores s USING (recording_id)").fetchall()}
        stored = con.execute("SELECT reviewer, comment FROM verdict_reviews ORDER BY review_id").fetchall()
        after_batch = con.execute("SELECT min(v.created_at) >= max(r.finished_at) FROM verdict_reviews v, runs r "
                                  "WHERE r.finished_at IS NOT NULL").fetchone()[0]
    assert {"S-001", "S-002"} <= scored  # the batch lost nothing
    assert waited["status"] == 201 and after_batch, waited  # written once the batch had finished writing
    assert stored == [("kim", "posted during the batch")]  # stored once; the refused one not at all
    ok = [s for s, _ in statuses if s == 200]
    assert statuses and len(ok) >= len(statuses) // 2, statuses  # the app kept serving
    assert all(s in (200, 503) for s, _ in statuses)
    retry = quick.post("/api/reviews", headers=SAME, json={"call": "D001", "item": "greeting", "verdict": "fail",
                                                           "reviewer": "lee"})
    assert retry.status_code == 201  # the refused review, submitted again after the batch
    times = sorted(t for s, t in statuses if s == 200)
    print(f"\nbatch {batch_s:.1f} s; pages during it: {len(ok)}/{len(statuses)} answered 200, "
          f"median {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms; "
          f"503s {len(statuses) - len(ok)}; review with 1 s wait: 503 after ~1 s; review with a long wait: "
          f"stored after {waited['seconds']:.1f} s (when the batch let go)")
