"""The `callqa report` and `callqa review` subcommands (registered by `cli.build_parser`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from callqa.pipelines.store.database import DEFAULT_DB, Store
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST


def cmd_report(args: argparse.Namespace) -> int:
    from callqa.pipelines.reports.report import make_report

    try:
        report, files = make_report(args.db, args.week, args.out, args.checklist, clips=not args.no_clips,
                                    semantic=not args.no_semantic, lang=args.lang)
    except LookupError as e:
        print(f"callqa report: {e}", file=sys.stderr)
        return 1
    s = report.summary
    print(f"report {s.week}: {sum(a.calls for a in s.agents)} calls, {len(s.agents)} agents, "
          f"{len(report.followups)} follow-ups, {len(files.clips)} clips")
    for a in s.agents:
        change = "new" if a.change is None else f"{a.change:+.1f}"
        print(f"  {a.agent_id:<10} calls {a.calls:>3}  score {a.score:5.1f}  change {change:>6}  "
              f"critical fails {a.critical_fails}")
    print(f"team median score: {s.team_median_score}")
    print(f"html: {files.index.resolve()}")
    print(f"exports: {len(files.exports)} files (CSV + Parquet) in {files.out_dir.resolve()}")
    return 0



def cmd_review(args: argparse.Namespace) -> int:
    from callqa.pipelines.store import review as rv

    problem = _check_review(args)
    if problem:
        print(f"callqa review: {problem}", file=sys.stderr)
        return 2
    if not Path(args.db).exists():
        raise FileNotFoundError(f"no database at {args.db}; run `callqa run` first")
    writes = args.action in ("set", "import-labels")
    # a review is a write like any other: it takes the writer lock (and waits for a running batch a while)
    with Store(args.db, read_only=not writes, wait=30.0 if writes else 5.0) as store:
        con = store.con
        if args.action == "set":
            r = rv.add_review(con, args.call, args.item, args.verdict, args.reviewer, args.comment or "",
                              args.checklist)
            print(f"review {r.review_id}: {r.call_id or r.recording_id[:12]} {r.item_id}: {r.auto_verdict} -> "
                  f"{r.verdict} by {r.reviewer}")
        elif args.action == "list":
            reviews = rv.list_reviews(con, args.call, args.item, current_only=args.current)
            if args.json:
                print(json.dumps([r.__dict__ for r in reviews], ensure_ascii=False, default=str, indent=2))
            for r in [] if args.json else reviews:
                print(f"{r.review_id:>5} {r.created_at:%Y-%m-%d %H:%M} {r.call_id or r.recording_id[:12]:<10} "
                      f"{r.item_id:<18} {r.auto_verdict or '?':>4} -> {r.verdict:<4} {r.reviewer}: {r.comment or ''}")
            if not reviews and not args.json:
                print("no reviews")
        elif args.action == "stats":
            stats = rv.agreement(con, args.checklist, week=args.week)
            if args.json:
                print(json.dumps([s.__dict__ for s in stats], ensure_ascii=False, indent=2))
            else:
                print(rv.format_agreement(stats))
        elif args.action == "import-labels":
            n = rv.import_labels(con, args.manifest, args.reviewer, args.checklist)
            print(f"recorded {n} labels from {args.manifest} as reviews by {args.reviewer}")
    return 0


def add_report_commands(sub: argparse._SubParsersAction) -> None:
    db_help = f"DuckDB file (default: ./{DEFAULT_DB})"
    rp = sub.add_parser("report", help="weekly HTML report with coaching examples, clips, CSV and Parquet",
                        description="Write one ISO week's report: scorecard (change vs previous week, team median), "
                        "charts, coaching examples with audio clips, focus per agent, follow-ups, call metrics, "
                        "review agreement; drill-down pages per agent and call; CSV + Parquet exports.")
    rp.add_argument("--week", help="ISO week YYYY-Www (default: the latest week with calls)")
    rp.add_argument("--out", type=Path, help="output folder (default: ./reports/<week>)")
    rp.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=db_help)
    rp.add_argument("--checklist", default=DEFAULT_CHECKLIST, help=f"checklist id (default: {DEFAULT_CHECKLIST})")
    rp.add_argument("--lang", default="en", choices=["en", "zh"], help="language of item titles")
    rp.add_argument("--no-clips", action="store_true", help="do not cut audio clips")
    rp.add_argument("--no-semantic", action="store_true",
                    help="find follow-ups by patterns only (no text encoder; faster)")
    rp.set_defaults(func=cmd_report)

    rv = sub.add_parser("review", help="override verdicts by hand; list reviews; agreement statistics",
                        description="Human review: `set` records a QA lead's verdict for one item of one call "
                        "(kept as history; the latest counts in reports), `list` shows reviews, `stats` the "
                        "per-item raw agreement and Cohen's kappa between automatic and human verdicts, "
                        "`import-labels` records a labelled manifest's labels as reviews.")
    rv.add_argument("action", choices=["set", "list", "stats", "import-labels"])
    rv.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=db_help)
    rv.add_argument("--call", help="call id, recording id or its first 8+ characters")
    rv.add_argument("--item", help="checklist item id (e.g. greeting)")
    rv.add_argument("--verdict", choices=["pass", "fail", "na"], help="the human verdict (set)")
    rv.add_argument("--reviewer", help="who reviews (set; import-labels default: labels)")
    rv.add_argument("--comment", help="why (set)")
    rv.add_argument("--checklist", default=DEFAULT_CHECKLIST, help=f"checklist id (default: {DEFAULT_CHECKLIST})")
    rv.add_argument("--week", help="stats: only calls of this ISO week")
    rv.add_argument("--current", action="store_true", help="list: only the review that counts per verdict")
    rv.add_argument("--manifest", type=Path, help="import-labels: JSONL/CSV manifest with call_id and labels")
    rv.add_argument("--json", action="store_true", help="list/stats: print JSON")
    rv.set_defaults(func=cmd_review)


def _check_review(args: argparse.Namespace) -> str | None:
    if args.action == "set" and not (args.call and args.item and args.verdict and args.reviewer):
        return "review set needs --call, --item, --verdict and --reviewer"
    if args.action == "import-labels" and not args.manifest:
        return "review import-labels needs --manifest"
    if args.action == "import-labels" and not args.reviewer:
        args.reviewer = "labels"
    return None
