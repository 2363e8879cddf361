"""Page times of the review workstation on a big database (docs/app.md, "Measured").

    python -m callqa.pipelines.app.bench --out /tmp/appbench            # builds the databases, then times pages

1. A dev database: the 30 shared dev calls (`$CALLQA_SHARED_DATA/dev`), their reference turns scored by the real
   engine and stored through the real `Store` (what tests/reportdb.py builds for the tests).
2. A big one: every dev call copied `--copies` times (333: 10,020 calls) under new recording ids, call ids, agents
   (54) and start times (shifted back 0-7 weeks: 10 weeks), with its segments, verdicts and score, in SQL
   (`store.synthetic.copy_calls`). The rows are real in number and shape; the text repeats.
3. Each page fetched `--repeats` times over HTTP from uvicorn serving `create_app` on that database, once per
   variant, side by side in the same run: `before` (every request opens the file and recomputes its weeks from the
   tables, as the app did until the read model landed), `cache` (the cached read model, still a new connection
   per request) and `after` (the app as shipped: the read model and a connection kept between close requests).
   Reported: the first fetch and the median of the rest, wall time at the client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def shared_dev() -> Path:
    return Path(os.environ.get("CALLQA_SHARED_DATA", REPO.parent / "shared" / "data")) / "dev"


def build_dev_db(path: Path, dev: Path | None = None, status: str = "scored") -> Path:
    """The shared dev calls' reference turns, scored by the real engine into a new database at `path`, each
    recording stored with `status` and pointing at its real dev audio (tests/reportdb.py builds the tests' one here)."""
    from callqa.pipelines.run.batch import file_sha256
    from callqa.pipelines.run.flows import make_engine
    from callqa.pipelines.store.database import Store, parse_started_at
    from callqa.qa_rules.checklist import load_checklist

    from callqa.records import Transcript

    dev = dev or shared_dev()
    rows = [json.loads(line) for line in (dev / "calls.jsonl").read_text(encoding="utf-8").splitlines() if line]
    checklist = load_checklist("sales_core")
    engine = make_engine(checklist)
    with Store(path) as store:
        store.save_checklist(checklist)
        for row in rows:
            audio = dev / row["file"]
            rid = file_sha256(audio)
            aware, local = parse_started_at(row["started_at"])
            store.upsert_recording(
                rid, path=str(audio), file_name=audio.name, size_bytes=audio.stat().st_size, call_id=row["call_id"],
                agent_id=row["agent_id"], customer_id=row["customer_id"], started_at=aware, started_local=local,
                language=row["language"], direction=row["direction"], agent_channel=0, duration_s=row["duration_s"],
                channels=2, sample_rate=16000, status=status, metadata={"product": row.get("product")})
            transcript = Transcript.from_turns(row["turns"], row["language"])
            store.save_transcript(rid, transcript)
            store.save_score(rid, engine.score(transcript))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """uvicorn serving one app on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def fetch_ms(url: str) -> tuple[float, int, float | None]:
    """Client wall time (ms), status, and the app's own Server-Timing (ms)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        r.read()
        status, timing = r.status, r.headers.get("Server-Timing", "")
    ms = (time.perf_counter() - t0) * 1000
    app = float(timing.split("dur=")[1]) if "dur=" in timing else None
    return ms, status, app


def pages_of(db: Path) -> dict[str, str]:
    """The pages to time on `db`: its latest week, its busiest agent that week, one call of that week."""
    from callqa.pipelines.reports.report_data import weeks
    from callqa.pipelines.store.app_reads import busiest_agent
    from callqa.pipelines.store.database import Store

    with Store.open_readonly(db) as store:
        wk = weeks(store)[-1]
        agent, call = busiest_agent(store, wk)
    return {"home": f"/?week={wk}", "agent": f"/agents/{agent}?week={wk}", "call": f"/calls/{call}",
            "queue": f"/queue?week={wk}", "appeals": "/appeals"}


def post_review(base: str, call: str, n: int) -> float:
    """POST one review through the API (as the page does); client ms."""
    body = json.dumps({"call": call, "item": "greeting", "verdict": "pass" if n % 2 else "fail",
                       "reviewer": "bench", "comment": f"bench write {n}"}).encode()
    req = urllib.request.Request(base + "/api/reviews", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Origin": base})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        if r.status != 201:
            raise RuntimeError(f"review answered {r.status}")
    return (time.perf_counter() - t0) * 1000


def time_pages(db: Path, variants: dict[str, dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Per variant, served in turn on the same file: seconds until the read model is warm, then per page the
    first fetch, the median of the other repeats, and one fetch right after a review was posted (which changes
    the week shown, so the read model computes that week again)."""
    from callqa.pipelines.app.server import create_app

    pages = pages_of(db)
    call = pages["call"].rsplit("/", 1)[1]
    out: dict[str, Any] = {"warm_s": {}, "review_ms": {}, "pages": {p: {} for p in pages}}
    for n, (name, kwargs) in enumerate(variants.items()):
        app = create_app(db, **kwargs)
        t0 = time.perf_counter()
        with Served(app) as base:
            app.state.warmed.wait(600)
            out["warm_s"][name] = round(time.perf_counter() - t0, 2)
            for page, path in pages.items():
                runs = [fetch_ms(base + path) for _ in range(repeats)]
                bad = [st for _, st, _ in runs if st != 200]
                if bad:
                    raise RuntimeError(f"{page} ({path}) answered {bad[0]} under {name}")
                rest = runs[1:] or runs
                out["pages"][page][name] = {"first_ms": round(runs[0][0], 1),
                                            "median_ms": round(statistics.median(r[0] for r in rest), 1)}
            out["review_ms"][name] = round(post_review(base, call, n), 1)
            for page, path in pages.items():
                out["pages"][page][name]["after_review_ms"] = round(fetch_ms(base + path)[0], 1)
    return out


VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"read_model": False, "db_linger": 0},  # what the app did: every page from the tables, new connection
    "cache": {"db_linger": 0},  # the cached read model, a new connection per request
    "after": {},  # the app as shipped: the read model and a connection kept between close requests
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m callqa.pipelines.app.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the databases (kept for reuse)")
    ap.add_argument("--copies", type=int, default=333, help="copies of each dev call (333: 10,020 calls)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--variants", default="before,cache,after", help="comma-separated: before, cache, after")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dev, big = args.out / "dev.duckdb", args.out / f"dev_x{args.copies}.duckdb"
    if not dev.is_file():
        build_dev_db(dev)
    counts = None
    if not big.is_file():
        from callqa.pipelines.store.synthetic import copy_calls

        counts = copy_calls(dev, big, args.copies)
    variants = {v: VARIANTS[v] for v in args.variants.split(",")}
    run_db = args.out / "bench_run.duckdb"  # the reviews the bench posts go to a copy
    shutil.copy(big, run_db)
    result = {"db": str(big), "counts": counts, "paths": pages_of(run_db),
              **time_pages(run_db, variants, args.repeats)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if counts:
        print("built", big, counts)
    names = list(variants)
    print(f"{'ms':<8}" + "".join(f" | {n:^26}" for n in names) + " | path")
    print(f"{'page':<8}" + " | first  median  after review" * len(names))
    for page, by in result["pages"].items():
        cells = [f" | {by[n]['first_ms']:>5.0f} {by[n]['median_ms']:>7.0f} {by[n]['after_review_ms']:>13.0f}"
                 for n in names]
        print(f"{page:<8}" + "".join(cells) + f" | {result['paths'][page]}")
    print("warm-up s  " + "  ".join(f"{n} {result['warm_s'][n]}" for n in names))
    print("review POST ms  " + "  ".join(f"{n} {result['review_ms'][n]:.0f}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
