"""`callqa pipeline-bench`: N calls through the whole pipeline, time per call split by stage, and
throughput with 1 and 2 (or any list of) worker processes side by side in one run (same files, fresh databases).
With `--dask` the workers are real `dask worker` processes on a Dask scheduler (pipelines/run/workers.py),
started fresh for each worker count, and the run says what each worker costs: its start-up (process up and
registered), its model load, its resident memory.

Stages per call: decode (audio → 16 kHz arrays), ASR (VAD, diarization, language id, Whisper), checklist
(engine on the transcript), storage (DuckDB writes for that call, connection open included),
orchestration (everything else in the run's wall time: discovery, hashing, planning, handing work to
workers and back, Prefect task runs when --prefect). One-off model loads are reported apart.

Also `scorecard_query_bench`: the weekly scorecard query on a generated database holding `rows`
verdict rows (`callqa pipeline-bench --scorecard-rows 1000000`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from callqa.pipelines.run.timings import stage_totals
from callqa.pipelines.store import reads, synthetic
from callqa.pipelines.store.database import Store
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

STAGES = ("decode", "asr", "checklist", "storage", "orchestration")


def default_sources() -> list[Path]:
    """The bundled sample calls, then the shared dev calls when present ($CALLQA_SHARED_DATA)."""
    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("CALLQA_SHARED_DATA", repo.parent / "shared" / "data")) / "dev" / "audio"
    return [repo / "samples" / "calls"] + ([shared] if shared.is_dir() else [])


def bench_batch(dest: Path, n: int, sources: list[Path]) -> Path:
    """A folder with `n` distinct recordings (distinct bytes, so none is deduplicated) named for the folder scan."""
    files = []
    for src in sources:
        files += sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in (".flac", ".opus", ".wav", ".mp3"))
    if len(files) < n:
        raise ValueError(f"only {len(files)} recordings under {', '.join(map(str, sources))}; ask for fewer calls")
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files[:n]):
        shutil.copy(f, dest / f"B{i % 3:02d}_202611{10 + i % 5:02d}T1000_{f.stem}{f.suffix}")
    return dest


def _split(summary, wall: float) -> dict[str, Any]:
    calls = summary.timings["calls"]
    n = max(1, len(calls))
    tot = stage_totals(calls, ("decode", "speech", "checklist", "storage", "job", "model_load", "engine_load"))
    loads = tot["model_load"] + tot["engine_load"]
    asr = tot["speech"]  # VAD + diarization + language id + Whisper: all of models/ after decoding
    per_worker_busy = tot["decode"] + asr + tot["checklist"] + tot["storage"] + loads
    workers = summary.timings["workers"]
    # wall time not spent in a stage, per call: with w workers the stages run w at a time
    orchestration = max(0.0, wall - per_worker_busy / workers) if workers > 1 else max(0.0, wall - per_worker_busy)
    audio_s = 0.0
    with Store(summary.db, read_only=True) as store:
        audio_s = reads.scored_audio_seconds(store)
    return {
        "calls": len(calls), "scored": summary.counts["scored"], "wall_s": round(wall, 2),
        "plan_s": round(summary.timings["plan_s"], 3),
        "audio_s": round(audio_s, 1), "model_loads_s": round(loads, 2),
        "per_call_s": {"decode": tot["decode"] / n, "asr": asr / n, "checklist": tot["checklist"] / n,
                       "storage": tot["storage"] / n, "orchestration": orchestration / n},
        "storage_median_s": statistics.median([c.get("storage", 0.0) for c in calls]) if calls else 0.0,
        "calls_per_min": round(60 * len(calls) / wall, 2) if wall else 0.0,
        "x_realtime": round(audio_s / wall, 1) if wall else 0.0,
    }


def _dask_run(batch: Path, db: Path, w: int, root: Path) -> tuple[Any, dict[str, Any]]:
    """One run on `w` fresh `dask worker` processes; returns the summary and what the workers cost."""
    from callqa.pipelines.run.workers import LocalWorkers, score_inbox_with_workers

    t0 = time.perf_counter()
    with LocalWorkers(w, root / f"dask-w{w}") as lw:
        up_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        summary = score_inbox_with_workers(batch, lw.address, w, root / f"stage-w{w}", db=str(db), progress=False)
        flow_s = time.perf_counter() - t1
        rss = lw.rss_mb()
    loads = [c.get("model_load", 0.0) for c in summary.timings["calls"] if c.get("model_load", 0.0) > 0.05]
    return summary, {"cluster_up_s": round(up_s, 2), "flow_call_s": round(flow_s, 2),
                     "worker_start_s": round(statistics.mean(x.ready_s or 0.0 for x in lw.workers), 2),
                     "worker_model_load_s": round(statistics.mean(loads), 2) if loads else 0.0,
                     "worker_rss_mb": round(statistics.mean(rss.values())) if rss else 0}


def run_bench(n: int = 8, workers: tuple[int, ...] = (1, 2), sources: list[Path] | None = None,
              prefect: bool = False, keep: Path | None = None, dask: bool = False) -> dict[str, Any]:
    """Score the same `n` calls once per worker count into fresh databases; returns the comparison.
    `dask`: through the Prefect flow on real `dask worker` processes, started anew for each count."""
    from callqa.pipelines.run import flows

    sources = sources or default_sources()
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="callqa-bench-"))
    batch = bench_batch(root / "batch", n, sources)
    results: dict[str, Any] = {"n": n, "cpus": os.cpu_count(), "prefect": prefect or dask, "dask": dask, "runs": {}}
    for w in workers:
        db = root / f"bench-w{w}.duckdb"
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
        t0 = time.perf_counter()
        if dask:
            summary, cost = _dask_run(batch, db, w, root)
            results.setdefault("flow_call_s", {})[w] = cost.pop("flow_call_s")
            results.setdefault("worker_cost", {})[w] = cost
        elif prefect:
            summary = flows.run_scoring_flow(str(batch), db=str(db), workers=w, progress=False)
            results.setdefault("flow_call_s", {})[w] = round(time.perf_counter() - t0, 2)
        else:
            summary = flows.process_batch(batch, db=db, workers=w, progress=False)
        wall = summary.timings["total_s"]
        results["runs"][w] = _split(summary, wall)
    base = results["runs"][workers[0]]["per_call_s"]
    overhead = base["orchestration"] + base["storage"]
    results["overhead_vs_asr"] = round(overhead / base["asr"], 4) if base["asr"] else None
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return results


def format_bench(r: dict[str, Any]) -> str:
    ws = list(r["runs"])
    head = f"{'':<26}" + "".join(f"{f'{w} worker' + ('s' if w > 1 else ''):>14}" for w in ws)
    how = ("Prefect flow on Dask worker processes" if r.get("dask") else
           "Prefect flow (task runs)" if r["prefect"] else "no Prefect")
    out = [f"pipeline-bench: {r['n']} calls, {r['cpus']} CPUs, {how}", head]
    for st in STAGES:
        out.append(f"{st + ' s/call':<26}" + "".join(f"{r['runs'][w]['per_call_s'][st]:>14.3f}" for w in ws))
    for key, label in (("model_loads_s", "model loads s (once)"), ("wall_s", "wall s"), ("audio_s", "audio s"),
                       ("calls_per_min", "throughput calls/min"), ("x_realtime", "throughput x real time")):
        out.append(f"{label:<26}" + "".join(f"{r['runs'][w][key]:>14}" for w in ws))
    if "flow_call_s" in r:
        out.append(f"{'flow call s (w/ start-up)':<26}" + "".join(f"{r['flow_call_s'][w]:>14}" for w in ws))
    base = r["runs"][ws[0]]["calls_per_min"]
    if len(ws) > 1 and base:
        out.append(f"{'speed-up vs ' + str(ws[0]):<26}" + "".join(
            f"{r['runs'][w]['calls_per_min'] / base:>14.2f}" for w in ws))
    for key, label in (("cluster_up_s", "cluster up s"), ("worker_start_s", "per worker: start s"),
                       ("worker_model_load_s", "per worker: model load s"), ("worker_rss_mb", "per worker: RSS MB")):
        if "worker_cost" in r:
            out.append(f"{label:<26}" + "".join(f"{r['worker_cost'][w][key]:>14}" for w in ws))
    ov = r.get("overhead_vs_asr")
    if ov is not None:
        out.append(f"orchestration + storage = {100 * ov:.2f}% of ASR time per call ({ws[0]} worker; target <= 5%)")
    out.append("with several workers the stages of calls overlap: per-call stage times are what each call took, "
               "throughput is what the machine did")
    return "\n".join(out)


# --- weekly scorecard on a big database --------------------------------------------------------------

def generate_verdicts(db: str | Path, verdict_rows: int = 1_000_000, agents: int = 50, weeks: int = 26,
                      seed: int = 7) -> dict[str, int]:
    """Fill a database with synthetic scored calls (checklist sales_core) until it holds `verdict_rows`
    verdict rows, all in SQL (seconds, not minutes)."""
    from callqa.qa_rules.checklist import load_checklist

    cl = load_checklist(DEFAULT_CHECKLIST)
    n_calls = -(-verdict_rows // len(cl.items))  # at least `verdict_rows`
    with Store(db) as store:
        synthetic.add_synthetic_calls(store, cl, n_calls, agents, weeks, seed)
        return store.counts()


def scorecard_query_bench(db: str | Path, repeats: int = 5) -> dict[str, Any]:
    """Time `weekly_scorecard` (the function `callqa scorecard` runs) on the busiest week."""
    from callqa.pipelines.reports.report_data import weekly_scorecard, weeks

    with Store(db, read_only=True) as store:
        wk = weeks(store)
        times = []
        card = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            card = weekly_scorecard(store, wk[len(wk) // 2])
            times.append(time.perf_counter() - t0)
        verdicts = reads.verdict_rows(store)
    return {"verdict_rows": verdicts, "week": card.week, "agents": len(card.agents),
            "calls_in_week": sum(a.calls for a in card.agents), "first_s": round(times[0], 3),
            "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}


def main_bench(n: int, workers: tuple[int, ...], prefect: bool, as_json: bool, scorecard_rows: int | None,
               sources: list[Path] | None = None, dask: bool = False) -> str:
    out: dict[str, Any] = {}
    if n:
        out["pipeline"] = run_bench(n, workers, sources, prefect, dask=dask)
    if scorecard_rows:
        with tempfile.TemporaryDirectory(prefix="callqa-scorecard-") as d:
            db = Path(d) / "big.duckdb"
            t0 = time.perf_counter()
            generate_verdicts(db, scorecard_rows)
            gen_s = time.perf_counter() - t0
            out["scorecard"] = scorecard_query_bench(db) | {"generate_s": round(gen_s, 1)}
    if as_json:
        return json.dumps(out, indent=2)
    lines = []
    if "pipeline" in out:
        lines.append(format_bench(out["pipeline"]))
    if "scorecard" in out:
        s = out["scorecard"]
        lines.append(f"weekly scorecard query on {s['verdict_rows']:,} verdict rows ({s['calls_in_week']:,} calls "
                     f"in {s['week']}, {s['agents']} agents): first {s['first_s']} s, median {s['median_s']} s, "
                     f"max {s['max_s']} s (target < 1 s; generated in {s['generate_s']} s)")
    return "\n\n".join(lines)
