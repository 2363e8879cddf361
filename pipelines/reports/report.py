"""The weekly report: `build_week_report` gathers everything a QA lead and a trainer read about one
ISO week (scorecard with the change against the previous week and the team median, trends,
coaching examples, focus per agent, follow-ups, call metrics, review agreement); `write_report`
writes it as HTML pages with audio clips plus CSV and Parquet exports; `publish_artifact` posts
its summary as a Prefect markdown artifact for the weekly flow.

    with Store.open_readonly("callqa.duckdb") as store:
        report = build_week_report(store, "2026-W46")
    files = write_report(report, Path("reports/2026-W46"))
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from callqa.pipelines.reports.call_metrics import AgentMetrics, CallMetrics, agent_metrics, call_metrics, load_segments
from callqa.pipelines.reports.coaching import Example, Focus, agent_focus, item_examples, with_clips
from callqa.pipelines.reports.followups import PromiseDetector
from callqa.pipelines.reports.report_data import (
    Dataset,
    WeekSummary,
    agent_weeks,
    item_title,
    load_dataset,
    week_summary,
)
from callqa.pipelines.store.database import Store
from callqa.pipelines.store.reader import Reader
from callqa.pipelines.store.review import ItemAgreement, agreement
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

from callqa.records import Segment, TextEmbedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowUp:
    agent_id: str
    call_id: str
    call_slug: str
    recording_id: str
    started_local: datetime
    kind: str
    quote: str
    start: float
    end: float
    due: str | None
    detector: str


@dataclass
class WeekReport:
    dataset: Dataset
    summary: WeekSummary
    segments: dict[str, list[Segment]]  # the week's calls
    examples: dict[str, dict[str, list[Example]]]
    focus: dict[str, list[Focus]]
    followups: list[FollowUp]
    call_metrics: dict[str, CallMetrics]
    agent_metrics: list[AgentMetrics]
    agreement: list[ItemAgreement]
    team_median_trend: list[float | None]
    lang: str = "en"
    generated_at: datetime = field(default_factory=datetime.now)


def build_week_report(db: Reader, week: str | None = None, checklist_id: str = DEFAULT_CHECKLIST,
                      version: int | None = None, encoder: TextEmbedder | None = None, lang: str = "en",
                      ) -> WeekReport:
    """Everything the report shows for one ISO week (default: the latest week with calls)."""
    ds = load_dataset(db, checklist_id, version)
    if not ds.weeks:
        raise LookupError("no scored calls with a start time")
    week = week or ds.weeks[-1]
    summary = week_summary(ds, week)
    calls = ds.week_calls(week)
    segments = {c.recording_id: load_segments(db, c.recording_id) for c in calls}
    examples = item_examples(ds, week, segments.__getitem__)
    focus = agent_focus(ds, summary, segments.__getitem__, examples)
    detector = PromiseDetector(encoder)
    followups = [FollowUp(c.agent_id, c.call_id, c.slug, c.recording_id, c.started_local, p.kind, p.quote, p.start,
                          p.end, p.due, p.detector)
                 for c in calls for p in detector.find(segments[c.recording_id])]
    metrics = {c.recording_id: call_metrics(segments[c.recording_id], c.duration_s) for c in calls}
    per_agent = agent_metrics([(c.agent_id, c.language, metrics[c.recording_id]) for c in calls])
    median_trend = []
    for w in summary.trend_weeks:
        scores = [a.score for a in agent_weeks(ds, w).values()]
        median_trend.append(round(statistics.median(scores), 1) if scores else None)
    return WeekReport(ds, summary, segments, examples, focus, followups, metrics, per_agent,
                      agreement(db, ds.checklist_id, ds.version), median_trend, lang)


@dataclass(frozen=True)
class ReportFiles:
    out_dir: Path
    index: Path
    pages: list[Path]
    exports: list[Path]
    clips: list[Path]


def attach_clips(report: WeekReport, out_dir: Path, pad: float = 2.0) -> None:
    """Cut an audio clip for every coaching example (in place)."""
    paths = {c.recording_id: c.path for c in report.dataset.week_calls(report.summary.week)}
    cache: dict = {}
    for ex in report.examples.values():
        for kind in ex:
            ex[kind] = with_clips(ex[kind], paths, out_dir, pad, cache)
    for agent, focus in report.focus.items():
        report.focus[agent] = [
            Focus(f.item_id, f.failed, f.applicable, f.pass_rate, f.team_pass_rate,
                  with_clips([f.example], paths, out_dir, pad, cache)[0] if f.example else None,
                  with_clips([f.model], paths, out_dir, pad, cache)[0] if f.model else None)
            for f in focus
        ]


def write_report(report: WeekReport, out_dir: str | Path, clips: bool = True, pad: float = 2.0) -> ReportFiles:
    """Write index.html, agents/*.html, calls/*.html, clips/*.wav and the CSV + Parquet exports."""
    from callqa.pipelines.reports.report_export import export_tables
    from callqa.pipelines.reports.report_html import render_agent, render_call, render_index

    out = Path(out_dir)
    (out / "agents").mkdir(parents=True, exist_ok=True)
    (out / "calls").mkdir(parents=True, exist_ok=True)
    if clips:
        attach_clips(report, out, pad)
    pages = []
    for a in report.summary.agents:
        p = out / "agents" / f"{a.agent_id}.html"
        p.write_text(render_agent(report, a.agent_id), encoding="utf-8")
        pages.append(p)
    for c in report.dataset.week_calls(report.summary.week):
        p = out / "calls" / f"{c.slug}.html"
        p.write_text(render_call(report, c), encoding="utf-8")
        pages.append(p)
    index = out / "index.html"
    index.write_text(render_index(report), encoding="utf-8")
    exports = export_tables(report, out)
    clip_files = sorted((out / "clips").glob("*.wav")) if (out / "clips").is_dir() else []
    return ReportFiles(out, index, pages, exports, clip_files)


def make_report(db: str | Path, week: str | None = None, out_dir: str | Path | None = None,
                checklist_id: str = DEFAULT_CHECKLIST, clips: bool = True, semantic: bool = True,
                lang: str = "en") -> tuple[WeekReport, ReportFiles]:
    """Open the database read-only, build one week's report and write it (default folder:
    ./reports/<week>)."""
    if not Path(db).exists():
        raise FileNotFoundError(f"no database at {db}; run `callqa run` first")
    encoder = None
    if semantic:
        from callqa.models.text_encoder import get_encoder

        encoder = get_encoder()
    with Store.open_readonly(db) as store:
        report = build_week_report(store, week, checklist_id, encoder=encoder, lang=lang)
    files = write_report(report, Path(out_dir or Path("reports") / report.summary.week), clips=clips)
    return report, files


def markdown_summary(report: WeekReport, link: str | None = None) -> str:
    """The scorecard, focus and follow-ups as Markdown (for a Prefect artifact or a chat message)."""
    s = report.summary
    items = report.dataset.scored_items
    lines = [f"# Weekly QA report {s.week}", "",
             f"Checklist {report.dataset.checklist_id} v{report.dataset.version}; previous week "
             f"{s.previous_week or 'none'}; team median score {s.team_median_score}.", ""]
    if link:
        lines += [f"Full report: {link}", ""]
    lines.append("| agent | calls | score | change | critical fails | "
                 + " | ".join(item_title(it, report.lang) for it in items) + " |")
    lines.append("|---" * (5 + len(items)) + "|")
    for a in s.agents:
        rates = " | ".join("-" if (v := a.pass_rate(it["id"])) is None else f"{v:.0%}" for it in items)
        change = "new" if a.change is None else f"{a.change:+.1f}"
        lines.append(f"| {a.agent_id} | {a.calls} | {a.score:.1f} | {change} | {a.critical_fails} | {rates} |")
    lines += ["", "## Top things to work on", ""]
    for a in s.agents:
        focus = ", ".join(item_title(report.dataset.item(f.item_id), report.lang)
                          for f in report.focus.get(a.agent_id, []))
        lines.append(f"- **{a.agent_id}**: {focus or 'nothing failed'}")
    lines += ["", f"## Follow-ups ({len(report.followups)})", ""]
    lines += [f"- {f.agent_id} {f.call_id} ({f.kind}{', due ' + f.due if f.due else ''}): {f.quote}"
              for f in report.followups]
    return "\n".join(lines) + "\n"


def publish_artifact(report: WeekReport, key: str | None = None, link: str | None = None) -> object:
    """Create a Prefect markdown artifact of the report's summary (call it inside the weekly flow;
    outside a flow run it is created unattached). Returns the artifact id."""
    from prefect.artifacts import create_markdown_artifact

    key = key or f"qa-report-{report.summary.week.lower()}"
    return create_markdown_artifact(markdown=markdown_summary(report, link), key=key,
                                    description=f"Weekly QA scorecard {report.summary.week}")
