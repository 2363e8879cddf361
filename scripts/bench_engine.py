"""Checklist engine speed, ASR excluded: calls/s and ms/call on labelled reference transcripts.

    .venv/bin/python scripts/bench_engine.py [--manifest ../shared/data/dev/calls.jsonl] [--repeat 3]
        [--checklist sales_core --checklist sales_core_rules]

Every mode scores the same calls with the same checklist; rows are side by side in one run, so compare ratios.
"new calls": the encoder's memo cache is emptied first, so every sentence the rules read is embedded
(exemplars are embedded once per engine and are not per-call work);
  - "one batch" scores all calls together (`ChecklistEngine.verdicts_many`, as `eval --text` and the flows'
    re-scoring do), with 1 encoder worker and with `--workers` (default: the CPUs, 1-4) side by side.
    The first pass in a process also pays for oneDNN building its kernels for new shapes; the figure is
    the median of `--repeat` passes after one warm-up pass, the first pass is shown apart;
  - "call by call" scores one call at a time (`verdicts`), as a single new recording is scored.
"embeddings cached": the same calls again, embeddings from the memo cache (rules, similarity, verdicts only).
A checklist with a cross-encoder (`model.cross`, v14) has its memo emptied with the encoder's for "new calls".
A checklist is a bundled name or a YAML file (e.g. an older version: `git show <rev>:qa_rules/checklists/...`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=ROOT.parent / "shared" / "data" / "dev" / "calls.jsonl")
    ap.add_argument("--checklist", action="append",
                    help="checklist to time (repeatable; default: sales_core and sales_core_rules side by side)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per mode (median reported)")
    ap.add_argument("--workers", type=int, default=None, help="encoder workers to compare with 1")
    args = ap.parse_args()

    from callqa.models.text_encoder import TextEncoder
    from callqa.qa_rules.checklist import load_checklist
    from callqa.qa_rules.engine import ChecklistEngine
    from callqa.qa_rules.tags import tag_needs

    from callqa.records import Transcript

    rows = [json.loads(line) for line in args.manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    calls = [Transcript.from_turns(r["turns"], r.get("language")) for r in rows if r.get("turns")]
    many = TextEncoder(workers=args.workers)
    one = TextEncoder(workers=1)  # same model (one per process), its own memo cache

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def new_calls(engine: ChecklistEngine, fn) -> float:
        engine.embedder.clear_cache()
        if engine.cross is not None:  # the fine-tuned cross-encoder's memo too
            engine.cross.clear_cache()
        return timed(fn)

    def bench(checklist) -> list[tuple[str, float]]:
        engines = {1: ChecklistEngine(checklist, one), many.workers: ChecklistEngine(checklist, many)}
        for engine in engines.values():
            engine.warm_up()  # exemplars: once per engine
        results: list[tuple[str, float]] = []
        first = new_calls(engines[many.workers], lambda: engines[many.workers].verdicts_many(calls))
        for engine in engines.values():  # one warm-up pass each (first shapes), then the timed ones
            new_calls(engine, lambda e=engine: e.verdicts_many(calls))
        batch = {w: [] for w in engines}
        for _ in range(args.repeat):  # interleaved, so load changes hit both alike
            for w, engine in engines.items():
                batch[w].append(new_calls(engine, lambda e=engine: e.verdicts_many(calls)))
        for w in engines:
            results.append((f"new calls, one batch, {w} worker{'s' if w > 1 else ''}", statistics.median(batch[w])))
        results.append((f"  (first pass in this process, {many.workers} workers)", first))
        engine = engines[many.workers]
        by_call = [new_calls(engine, lambda: [engine.verdicts(t) for t in calls]) for _ in range(args.repeat)]
        results.append((f"new calls, call by call, {many.workers} workers", statistics.median(by_call)))
        warm = [timed(lambda: [engine.verdicts(t) for t in calls]) for _ in range(args.repeat)]
        results.append(("embeddings cached", statistics.median(warm)))
        for t in calls:  # need tags embed a few customer sentences the checklist did not: warm them too
            tag_needs(t, many)
        tags = [timed(lambda: [(engine.verdicts(t), tag_needs(t, many)) for t in calls]) for _ in range(args.repeat)]
        results.append(("embeddings cached + need tags", statistics.median(tags)))
        return results

    checklists = [load_checklist(name) for name in (args.checklist or ["sales_core", "sales_core_rules"])]
    runs = {f"{c.id} v{c.version}": bench(c) for c in checklists}
    n, n_sent = len(calls), sum(len(t.segments) for t in calls)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n} calls ({n_sent} turns), encoder {many.name} ({many.precision}), {os.cpu_count()} CPUs, "
          f"load average {load:.1f}, median of {args.repeat}; calls/s (ms/call) per checklist, side by side")
    names = list(runs)
    print(f"{'mode':50s}" + "".join(f"{name:>26s}" for name in names)
          + (f"{'ratio':>8s}" if len(names) == 2 else ""))
    for k, (mode, _) in enumerate(runs[names[0]]):
        cells = [f"{n / runs[name][k][1]:8.1f} ({1000 * runs[name][k][1] / n:6.1f} ms)" for name in names]
        ratio = f"{runs[names[1]][k][1] / runs[names[0]][k][1]:7.2f}x" if len(names) == 2 else ""
        print(f"{mode:50s}" + "".join(f"{c:>26s}" for c in cells) + ratio)
    if len(names) == 2:
        print(f"ratio: {names[1]} time / {names[0]} time (above 1: {names[0]} is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
