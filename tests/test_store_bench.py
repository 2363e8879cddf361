"""pipeline-bench: the stage split and the 1-vs-2-worker comparison on real calls, and the scorecard query on a
generated database. Numbers are printed, never asserted (the machine is shared)."""

from __future__ import annotations

from callqa.pipelines.bench.pipeline_bench import (
    STAGES,
    format_bench,
    generate_verdicts,
    run_bench,
    scorecard_query_bench,
)


def test_generated_verdicts_feed_the_real_scorecard_query(tmp_path):
    db = tmp_path / "big.duckdb"
    counts = generate_verdicts(db, 60_000, agents=12, weeks=4)
    assert counts["item_verdicts"] >= 60_000 and counts["call_scores"] == counts["recordings"]
    r = scorecard_query_bench(db, repeats=2)
    assert r["verdict_rows"] == counts["item_verdicts"] and r["agents"] == 12 and r["calls_in_week"] > 0
    print(r)


def test_bench_compares_one_and_two_workers_by_stage(tmp_path):
    r = run_bench(2, (1, 2), keep=tmp_path)
    for w in (1, 2):
        run = r["runs"][w]
        assert run["scored"] == 2 and set(run["per_call_s"]) == set(STAGES)
        assert run["per_call_s"]["asr"] > 0 and run["calls_per_min"] > 0
    assert r["overhead_vs_asr"] is not None
    text = format_bench(r)
    assert "1 worker" in text and "2 workers" in text and "% of ASR time" in text
    print(text)
