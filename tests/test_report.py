"""The weekly report on the shared dev set (real engine, real DuckDB, real recordings for clips)."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime

import duckdb
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import dev_calls
from tests.reportdb import dev_db


def _iso_week(started_at: str) -> str:
    y, w, _ = datetime.fromisoformat(started_at).replace(tzinfo=None).isocalendar()
    return f"{y}-W{w:02d}"


def _label_scores() -> dict[tuple[str, str], list[float]]:
    """Call scores a careful reviewer's labels give, by (agent, week), with the engine's scoring rule."""
    from callqa.pipelines.store.review import label_to_verdict
    from callqa.qa_rules.checklist import load_checklist
    from callqa.qa_rules.engine import call_score

    from callqa.records import ItemVerdict

    cl = load_checklist("sales_core")
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in dev_calls():
        verdicts = [ItemVerdict(i, label_to_verdict(cl.item(i).polarity, v), 1.0) for i, v in row["labels"].items()]
        out[(row["agent_id"], _iso_week(row["started_at"]))].append(call_score(cl, verdicts).score)
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory, shared_data):
    return dev_db(tmp_path_factory)


@pytest.fixture(scope="module")
def written(db, tmp_path_factory, encoder):
    from callqa.pipelines.reports.report import build_week_report, write_report

    out = tmp_path_factory.mktemp("report")
    with duckdb.connect(str(db), read_only=True) as con:
        report = build_week_report(con, "2026-W46", encoder=encoder)
    files = write_report(report, out)
    return report, files


def test_a06_improves_week_over_week_as_the_labels_say(db, written):
    from callqa.pipelines.reports.report_data import load_dataset, week_summary

    report, files = written
    labels = _label_scores()
    label_trend = [float(np.mean(labels[("A06", w)])) for w in ("2026-W44", "2026-W45", "2026-W46")]
    assert label_trend[0] < label_trend[1] < label_trend[2]
    trend = report.summary.trends["A06"]
    assert report.summary.trend_weeks == ["2026-W44", "2026-W45", "2026-W46"]
    # the machine's verdicts: rising (never falling) and close to the labels' scores every week
    assert trend[0] < trend[1] <= trend[2], trend
    assert all(abs(t - lab) <= 25 for t, lab in zip(trend, label_trend, strict=True)), (trend, label_trend)
    a06 = next(a for a in report.summary.agents if a.agent_id == "A06")
    assert a06.change is not None and a06.change >= 0
    with duckdb.connect(str(db), read_only=True) as con:
        w45 = week_summary(load_dataset(con), "2026-W45")
    assert next(a for a in w45.agents if a.agent_id == "A06").change > 0
    # the HTML shows it: the trend chart's A06 points rise and the scorecard row carries an up arrow
    html = files.index.read_text(encoding="utf-8")
    points = re.findall(r'<circle class="point" data-series="A06" data-week="([^"]+)" data-value="([^"]+)"', html)
    assert [w for w, _ in points] == ["2026-W44", "2026-W45", "2026-W46"]
    values = [float(v) for _, v in points]
    assert values == sorted(values) and values[0] < values[-1]
    row = re.search(r'<tr data-agent="A06">.*?</tr>', html).group(0)
    assert 'class="up">▲' in row or a06.change == 0


def test_with_the_labels_as_reviews_the_report_shows_the_labels_trend(tmp_path_factory, shared_data):
    """Human reviews override the machine: with every label recorded as a review, the report's A06
    scores are exactly the labels' (0 -> 80 -> 100)."""
    from callqa.pipelines.reports.report_data import load_dataset, week_summary
    from callqa.pipelines.run.batch import read_manifest
    from callqa.pipelines.store.review import import_labels

    from tests.reportdb import dev_db_copy

    db = dev_db_copy(tmp_path_factory, "labelled")
    labels = _label_scores()
    with duckdb.connect(str(db)) as con:
        assert import_labels(con, read_manifest(shared_data / "dev" / "calls.jsonl"), "qa-lead") == 180
        summary = week_summary(load_dataset(con), "2026-W46")
    expected = [round(float(np.mean(labels[("A06", w)])), 1) for w in summary.trend_weeks]
    assert summary.trends["A06"] == expected and expected[0] < expected[1] < expected[2]


def test_a05_forbidden_phrases_match_the_labels(db, written, tmp_path):
    from callqa.pipelines.reports.report_data import load_dataset, week_summary

    labelled: dict[str, int] = defaultdict(int)
    for row in dev_calls():
        if row["agent_id"] == "A05" and row["labels"]["forbidden_phrase"]:
            labelled[_iso_week(row["started_at"])] += 1
    assert sum(labelled.values()) == 4
    with duckdb.connect(str(db), read_only=True) as con:
        ds = load_dataset(con)
        for week in ds.weeks:
            a05 = next(a for a in week_summary(ds, week).agents if a.agent_id == "A05")
            assert a05.critical_fails == labelled[week], week
    report, files = written
    misses = report.examples["forbidden_phrase"]["miss"]
    assert [(x.agent_id, x.call_id) for x in misses] == [("A05", "D027")]
    assert "not our problem" in misses[0].quote
    a05_focus = report.focus["A05"]
    assert a05_focus[0].item_id == "forbidden_phrase" and a05_focus[0].example.call_id == "D027"
    page = (files.out_dir / "calls" / "D027.html").read_text(encoding="utf-8")
    mark = re.search(r'<mark class="ev-fail" data-item="[^"]*forbidden_phrase[^"]*"[^>]*>([^<]*)</mark>', page)
    assert mark and "not our problem" in mark.group(1)


def test_scorecard_columns_median_and_sorting(written):
    report, _ = written
    agents = report.summary.agents
    scores = [a.score for a in agents]
    assert scores == sorted(scores, reverse=True)
    assert report.summary.team_median_score == pytest.approx(float(np.median(scores)), abs=0.051)
    assert sum(a.calls for a in agents) == sum(1 for r in dev_calls() if _iso_week(r["started_at"]) == "2026-W46")
    a01 = next(a for a in agents if a.agent_id == "A01")
    assert a01.prev_score is not None and a01.pass_rate("greeting") == 1.0


def test_exports_round_trip_through_duckdb(written):
    report, files = written
    names = {p.name for p in files.exports}
    for table in ("scorecard", "item_pass_rates", "call_verdicts", "followups", "call_metrics"):
        assert {f"{table}_2026-W46.csv", f"{table}_2026-W46.parquet"} <= names
    out = files.out_dir
    con = duckdb.connect()
    rows = con.execute(f"SELECT agent_id, score, change, critical_fails FROM '{out}/scorecard_2026-W46.parquet' "
                       "ORDER BY rank").fetchall()
    assert rows == [(a.agent_id, a.score, a.change, a.critical_fails) for a in report.summary.agents]
    csv_rows = con.execute(f"SELECT count(*) FROM read_csv_auto('{out}/call_verdicts_2026-W46.csv')").fetchone()[0]
    assert csv_rows == sum(len(c.verdicts) for c in report.dataset.week_calls("2026-W46"))


def test_coaching_examples_have_real_audio_clips(written):
    report, files = written
    examples = [x for ex in report.examples.values() for kind in ex.values() for x in kind]
    assert len(examples) >= 10
    usage_best = report.examples["usage_scenario"]["best"]
    assert usage_best and all(x.kind == "best" and x.note == "evidence" for x in usage_best)
    by_call = {c.call_id: c for c in report.dataset.calls}
    for x in examples:
        assert x.clip, f"no clip for {x.call_id}"
        clip, sr = sf.read(files.out_dir / x.clip, always_2d=True)
        file_end = sf.info(by_call[x.call_id].path).duration
        assert abs(len(clip) / sr - (min(x.end + 2.0, file_end) - max(0.0, x.start - 2.0))) < 0.05
        assert float(np.sqrt(np.mean(clip ** 2))) > 1e-3  # speech, not silence
        # the very samples of the recording at that time
        src, src_sr = sf.read(by_call[x.call_id].path, start=int(max(0.0, x.start - 2.0) * sr),
                              frames=len(clip), always_2d=True)
        assert src_sr == sr and np.allclose(src, clip, atol=1e-3)


def test_drill_down_pages(written):
    report, files = written
    for a in report.summary.agents:
        page = (files.out_dir / "agents" / f"{a.agent_id}.html").read_text(encoding="utf-8")
        table = re.search(r'<table class="calls">.*?</table>', page, re.S).group(0)
        calls = re.findall(r'<tr data-call="([^"]+)">', table)
        assert sorted(calls) == sorted(c.call_id for c in report.dataset.week_calls("2026-W46", a.agent_id))
    d015 = next(r for r in dev_calls() if r["call_id"] == "D015")
    page = (files.out_dir / "calls" / "D015.html").read_text(encoding="utf-8")
    speakers = re.findall(r'<div class="seg (agent|customer)" id="seg-\d+"', page)
    assert speakers == [t["speaker"] for t in d015["turns"]]
    scenario = d015["turns"][d015["evidence"]["usage_scenario"]]["text"]
    mark = re.search(r'<mark class="ev-pass" data-item="[^"]*usage_scenario[^"]*"[^>]*>([^<]*)</mark>', page)
    assert mark and mark.group(1) in scenario
    assert 'src="http' not in files.index.read_text(encoding="utf-8")


def test_followups_listed_with_the_promise(written):
    report, files = written
    found = {(f.call_id, f.kind) for f in report.followups}
    assert ("D017", "restock_alert") in found
    assert ("D027", "call_back") in found
    assert ("D003", "send_info") in found
    html = files.index.read_text(encoding="utf-8")
    assert "restock alert" in re.search(r'<table class="followups">.*?</table>', html, re.S).group(0)


def test_call_metrics_shown_per_agent(written):
    report, files = written
    assert {m.agent_id for m in report.agent_metrics} == {a.agent_id for a in report.summary.agents}
    for m in report.agent_metrics:
        assert 0.2 < m.talk_ratio < 0.9 and 0 <= m.silence_share < 0.5 and m.longest_customer_monologue_s > 0
        assert m.interruptions_by_agent == 0  # the dev calls have no overlap
    html = files.index.read_text(encoding="utf-8")
    assert html.count('<tr data-agent="') >= 2 * len(report.summary.agents)


def test_markdown_summary_lists_every_agent(written):
    from callqa.pipelines.reports.report import markdown_summary

    report, _ = written
    md = markdown_summary(report, link="file:///reports/index.html")
    for a in report.summary.agents:
        assert re.search(rf"^\| {a.agent_id} \| {a.calls} \| {a.score:.1f} \|", md, re.M)
    assert "D017" in md and "restock_alert" in md


def test_cli_report_writes_the_week(db, tmp_path, capsys):
    from callqa.pipelines.cli.main import main

    assert main(["report", "--db", str(db), "--week", "2026-W45", "--out", str(tmp_path), "--no-clips",
                 "--no-semantic"]) == 0
    out = capsys.readouterr().out
    assert "report 2026-W45" in out and "A06" in out
    assert (tmp_path / "index.html").is_file() and not (tmp_path / "clips").exists()
    assert main(["report", "--db", str(db), "--week", "2031-W01", "--out", str(tmp_path / "x"), "--no-clips",
                 "--no-semantic"]) == 1
