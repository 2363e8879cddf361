"""Checklist engine speed, ASR excluded: calls/s and ms/call on the dev reference transcripts.

    .venv/bin/python scripts/bench_engine.py [--manifest ../shared/data/dev/calls.jsonl] [--repeat 5]

"cold": a fresh encoder memo cache, so the sentences and replies rules judge are embedded (a new call),
call by call as the pipeline scores them, or all calls at once (`ChecklistEngine.verdicts_many`, as eval does);
"warm": the same calls again, embeddings from the memo cache (rules, similarity, verdicts only).
Torch threads: the encoder's default (half the CPUs, 1-4); `--threads` overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=ROOT.parent / "shared" / "data" / "dev" / "calls.jsonl")
    ap.add_argument("--checklist", default="sales_core")
    ap.add_argument("--repeat", type=int, default=5, help="warm passes over the calls")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the encoder")
    args = ap.parse_args()

    from callqa.models.text_encoder import TextEncoder
    from callqa.qa_rules.checklist import load_checklist
    from callqa.qa_rules.engine import ChecklistEngine
    from callqa.qa_rules.tags import tag_needs

    from callqa.records import Transcript

    rows = [json.loads(line) for line in args.manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    calls = [Transcript.from_turns(r["turns"], r.get("language")) for r in rows]
    checklist = load_checklist(args.checklist)
    encoder = TextEncoder(num_threads=args.threads)
    encoder.embed(["warm-up"])  # model load is not per-call work
    n_sent = sum(len(t.segments) for t in calls)

    engine = ChecklistEngine(checklist, encoder)
    engine.verdicts(Transcript.from_turns([{"speaker": "agent", "text": "warm-up"}]))  # exemplars: once per engine
    t0 = time.perf_counter()
    for t in calls:
        engine.verdicts(t)
    cold = time.perf_counter() - t0

    encoder.clear_cache()  # new calls again, now scored as one batch (`verdicts_many`: sentences embedded together)
    t0 = time.perf_counter()
    engine.verdicts_many(calls)
    cold_batch = time.perf_counter() - t0

    t0 = time.perf_counter()
    for _ in range(args.repeat):
        for t in calls:
            engine.verdicts(t)
    warm = (time.perf_counter() - t0) / args.repeat

    for t in calls:  # need tags embed a few customer sentences the checklist did not: warm them too
        tag_needs(t, encoder)
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        for t in calls:
            engine.verdicts(t)
            tag_needs(t, encoder)
    warm_tags = (time.perf_counter() - t0) / args.repeat

    n = len(calls)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"checklist {checklist.id} v{checklist.version}, {n} calls ({n_sent} turns), encoder {encoder.name}, "
          f"{encoder.num_threads} torch thread(s), {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"{'mode':28s} {'calls/s':>8s} {'ms/call':>8s}")
    for name, secs in (("cold, call by call", cold), ("cold, one batch", cold_batch),
                       ("warm (embeddings cached)", warm),
                       ("warm + need tags", warm_tags)):
        print(f"{name:28s} {n / secs:8.1f} {1000 * secs / n:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
