"""CSV and Parquet exports of a weekly report, written by DuckDB's COPY from an in-memory database
(`pipelines/store/exports.py`; the store itself is only read). One pair of files per table, named
`<table>_<week>.{csv,parquet}`:

- `scorecard`: one row per agent: rank, calls, score, previous score, change, team median score,
  critical fails, then one `pass_rate_<item>` column per scored item.
- `item_pass_rates`: one row per agent and item: passed, applicable, pass rate, team median.
- `call_verdicts`: one row per call and item: effective verdict, automatic verdict, human review, and
  `audio_flag` (why its evidence rests on low-confidence audio; empty when it does not).
- `followups`, `call_metrics`: as shown in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from callqa.pipelines.store.exports import Table, write_tables

if TYPE_CHECKING:
    from callqa.pipelines.reports.report import WeekReport


def export_tables(report: WeekReport, out_dir: Path) -> list[Path]:
    s, ds = report.summary, report.dataset
    week = s.week
    items = ds.scored_items
    by_rec = {c.recording_id: c for c in ds.week_calls(week)}
    tables = [
        Table("scorecard",
              [("week", "VARCHAR"), ("rank", "INTEGER"), ("agent_id", "VARCHAR"), ("calls", "INTEGER"),
               ("score", "DOUBLE"), ("previous_score", "DOUBLE"), ("change", "DOUBLE"),
               ("team_median_score", "DOUBLE"), ("critical_fails", "INTEGER")]
              + [(f"pass_rate_{it['id']}", "DOUBLE") for it in items],
              [(week, i, a.agent_id, a.calls, a.score, a.prev_score, a.change, s.team_median_score, a.critical_fails,
                *(a.pass_rate(it["id"]) for it in items)) for i, a in enumerate(s.agents, 1)]),
        Table("item_pass_rates",
              [("week", "VARCHAR"), ("agent_id", "VARCHAR"), ("item_id", "VARCHAR"), ("passed", "INTEGER"),
               ("applicable", "INTEGER"), ("pass_rate", "DOUBLE"), ("team_median_pass_rate", "DOUBLE")],
              [(week, a.agent_id, it["id"], a.passed.get(it["id"], 0), a.applicable.get(it["id"], 0),
                a.pass_rate(it["id"]), s.team_median_pass_rate.get(it["id"])) for a in s.agents for it in ds.items]),
        Table("call_verdicts",
              [("week", "VARCHAR"), ("agent_id", "VARCHAR"), ("call_id", "VARCHAR"), ("recording_id", "VARCHAR"),
               ("started_local", "TIMESTAMP"), ("call_score", "DOUBLE"), ("critical_fail", "BOOLEAN"),
               ("item_id", "VARCHAR"), ("verdict", "VARCHAR"), ("auto_verdict", "VARCHAR"),
               ("human_verdict", "VARCHAR"), ("reviewer", "VARCHAR"), ("comment", "VARCHAR"),
               ("audio_flag", "VARCHAR")],
              [(week, c.agent_id, c.call_id, c.recording_id, c.started_local, c.score, c.critical_fail, v.item_id,
                v.verdict, v.auto_verdict, v.human_verdict, v.reviewer, v.comment, v.audio_flag)
               for c in ds.week_calls(week) for v in c.verdicts.values()]),
        Table("followups",
              [("week", "VARCHAR"), ("agent_id", "VARCHAR"), ("call_id", "VARCHAR"), ("started_local", "TIMESTAMP"),
               ("kind", "VARCHAR"), ("due", "VARCHAR"), ("quote", "VARCHAR"), ("start_s", "DOUBLE"),
               ("end_s", "DOUBLE"), ("detector", "VARCHAR")],
              [(week, f.agent_id, f.call_id, f.started_local, f.kind, f.due, f.quote, f.start, f.end, f.detector)
               for f in report.followups]),
        Table("call_metrics",
              [("week", "VARCHAR"), ("agent_id", "VARCHAR"), ("call_id", "VARCHAR"), ("duration_s", "DOUBLE"),
               ("agent_talk_s", "DOUBLE"), ("customer_talk_s", "DOUBLE"), ("talk_ratio", "DOUBLE"),
               ("longest_customer_monologue_s", "DOUBLE"), ("silence_share", "DOUBLE"),
               ("interruptions_by_agent", "INTEGER"), ("interruptions_by_customer", "INTEGER"),
               ("agent_words", "INTEGER"), ("agent_words_per_min", "DOUBLE")],
              [(week, by_rec[rid].agent_id, by_rec[rid].call_id, m.duration_s, m.agent_talk_s, m.customer_talk_s,
                m.talk_ratio, m.longest_customer_monologue_s, m.silence_share, m.interruptions_by_agent,
                m.interruptions_by_customer, m.agent_words, m.agent_words_per_min)
               for rid, m in report.call_metrics.items()]),
    ]
    return write_tables(tables, out_dir, week)
