"""The `callqa report` and `callqa review ...` commands (added to the `callqa` group by `main.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from callqa.pipelines.cli.options import (
    CONTEXT_SETTINGS,
    CallqaGroup,
    PathType,
    checklist_id_option,
    db_option,
    json_option,
    lang_option,
    manifest_option,
    week_option,
)
from callqa.pipelines.store.database import Store


@click.command("report", cls=CallqaGroup.command_class,
               short_help="weekly HTML report with coaching examples, clips, CSV and Parquet",
               help="Write one ISO week's report: scorecard (change vs previous week, team median), charts, coaching "
               "examples with audio clips, focus per agent, follow-ups, call metrics, review agreement; drill-down "
               "pages per agent and call; CSV + Parquet exports.",
               epilog="\b\nexample:\n  callqa report --week 2026-W46 --db /data/callqa.duckdb --out reports/2026-W46")
@week_option()
@click.option("--out", type=PathType, metavar="DIR", help="output folder (default: ./reports/<week>)")
@db_option()
@checklist_id_option()
@lang_option()
@click.option("--no-clips", is_flag=True, help="do not cut audio clips")
@click.option("--no-semantic", is_flag=True, help="find follow-ups by patterns only (no text encoder; faster)")
def report(week: str | None, out: Path | None, db: Path, checklist: str, lang: str, no_clips: bool,
           no_semantic: bool) -> int:
    from callqa.pipelines.reports.report import make_report

    made, files = make_report(db, week, out, checklist, clips=not no_clips, semantic=not no_semantic, lang=lang)
    s = made.summary
    print(f"report {s.week}: {sum(a.calls for a in s.agents)} calls, {len(s.agents)} agents, "
          f"{len(made.followups)} follow-ups, {len(files.clips)} clips")
    for a in s.agents:
        change = "new" if a.change is None else f"{a.change:+.1f}"
        print(f"  {a.agent_id:<10} calls {a.calls:>3}  score {a.score:5.1f}  change {change:>6}  "
              f"critical fails {a.critical_fails}")
    print(f"team median score: {s.team_median_score}")
    print(f"html: {files.index.resolve()}")
    print(f"exports: {len(files.exports)} files (CSV + Parquet) in {files.out_dir.resolve()}")
    return 0


@click.group("review", cls=CallqaGroup, context_settings=CONTEXT_SETTINGS,
             short_help="override verdicts by hand; list reviews; agreement statistics",
             help="Human review: `set` records a QA lead's verdict for one item of one call (kept as history; the "
             "latest counts in reports), `list` shows reviews, `stats` the per-item raw agreement, Cohen's kappa and "
             "Gwet's AC1 between automatic and human verdicts, `import-labels` records a labelled manifest's labels "
             "as reviews.",
             epilog="\b\nexamples:\n"
             "  callqa review set --call D030 --item greeting --verdict fail --reviewer lee --comment 'no name'\n"
             "  callqa review list --call D030 --current\n"
             "  callqa review stats --week 2026-W46 --json\n"
             "  callqa review import-labels --manifest ../shared/data/dev/calls.jsonl")
def review() -> None:
    pass


def _open(db: Path, write: bool) -> Store:
    if not Path(db).exists():
        raise FileNotFoundError(f"no database at {db}; run `callqa run` first")
    # a review is a write like any other: it takes the writer lock (and waits for a running batch a while)
    return Store(db, wait=30.0) if write else Store.open_readonly(db)


call_option = click.option("--call", metavar="ID", help="call id, recording id or its first 8+ characters")
item_option = click.option("--item", metavar="ITEM", help="checklist item id (e.g. greeting)")


@review.command("set", short_help="record a human verdict for one item of one call",
                help="Record a QA lead's verdict for one item of one call. Kept as history; the latest review of a "
                "verdict is the one reports, scorecards and the app count.")
@db_option()
@click.option("--call", required=True, metavar="ID", help="call id, recording id or its first 8+ characters")
@click.option("--item", required=True, metavar="ITEM", help="checklist item id (e.g. greeting)")
@click.option("--verdict", required=True, type=click.Choice(["pass", "fail", "na"]), help="the human verdict")
@click.option("--reviewer", required=True, metavar="NAME", help="who reviews")
@click.option("--comment", metavar="TEXT", help="why")
@checklist_id_option()
def review_set(db: Path, call: str, item: str, verdict: str, reviewer: str, comment: str | None, checklist: str) -> int:
    from callqa.pipelines.store import review as rv

    with _open(db, write=True) as store:
        r = rv.add_review(store, call, item, verdict, reviewer, comment or "", checklist)
    print(f"review {r.review_id}: {r.call_id or r.recording_id[:12]} {r.item_id}: {r.auto_verdict} -> "
          f"{r.verdict} by {r.reviewer}")
    return 0


@review.command("list", short_help="show reviews", help="Show the reviews, newest first, optionally of one call "
                "or one item; --current keeps only the review that counts per verdict.")
@db_option()
@call_option
@item_option
@click.option("--current", is_flag=True, help="only the review that counts per verdict")
@json_option("print JSON")
def review_list(db: Path, call: str | None, item: str | None, current: bool, as_json: bool) -> int:
    from callqa.pipelines.store import review as rv

    with _open(db, write=False) as store:
        reviews = rv.list_reviews(store, call, item, current_only=current)
    if as_json:
        print(json.dumps([r.__dict__ for r in reviews], ensure_ascii=False, default=str, indent=2))
        return 0
    for r in reviews:
        print(f"{r.review_id:>5} {r.created_at:%Y-%m-%d %H:%M} {r.call_id or r.recording_id[:12]:<10} "
              f"{r.item_id:<18} {r.auto_verdict or '?':>4} -> {r.verdict:<4} {r.reviewer}: {r.comment or ''}")
    if not reviews:
        print("no reviews")
    return 0


@review.command("stats", short_help="agreement between automatic and human verdicts",
                help="Per item: calls reviewed, raw agreement, Cohen's kappa (with a seeded 95% bootstrap interval) "
                "and Gwet's AC1 between the automatic and the current human verdicts.")
@db_option()
@checklist_id_option()
@week_option("only calls of this ISO week")
@json_option("print JSON")
def review_stats(db: Path, checklist: str, week: str | None, as_json: bool) -> int:
    from callqa.pipelines.store import review as rv

    with _open(db, write=False) as store:
        stats = rv.agreement(store, checklist, week=week)
    print(json.dumps([s.__dict__ for s in stats], ensure_ascii=False, indent=2) if as_json
          else rv.format_agreement(stats))
    return 0


@review.command("import-labels", short_help="record a labelled manifest's labels as reviews",
                help="Record every label of a labelled manifest (matched on call_id) as a review, so agreement "
                "statistics can be computed against hand labels.")
@db_option()
@manifest_option("JSONL/CSV manifest with call_id and labels", required=True)
@click.option("--reviewer", default="labels", metavar="NAME", help="who the reviews are recorded as (default: labels)")
@checklist_id_option()
def review_import_labels(db: Path, manifest: Path, reviewer: str, checklist: str) -> int:
    from callqa.pipelines.run.batch import read_manifest
    from callqa.pipelines.store import review as rv

    rows = read_manifest(manifest)
    with _open(db, write=True) as store:
        n = rv.import_labels(store, rows, reviewer, checklist, source=manifest.name)
    print(f"recorded {n} labels from {manifest} as reviews by {reviewer}")
    return 0
