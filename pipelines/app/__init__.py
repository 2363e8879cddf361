"""`callqa app`: the review workstation, a local web app where QA leads check verdicts, play the evidence,
override and appeal (see docs/app.md). The server lives in `server.py`; this module only registers the command."""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from callqa.pipelines.store.database import DEFAULT_DB
from callqa.qa_rules.checklist import DEFAULT_CHECKLIST


def add_app_command(sub: argparse._SubParsersAction) -> None:
    """Register `callqa app` and `callqa rules` (the checklist test bench the app also serves)."""
    ap = sub.add_parser("app", help="the review workstation: a local web app to check, override and appeal verdicts",
                        description="Serve the review workstation over one database: the week's scorecard, agents, "
                        "calls with transcript, evidence and audio, the review queue (j/k/p/f), overrides and "
                        "appeals. Binds 127.0.0.1; any other address needs --token.")
    ap.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=f"DuckDB file (default: ./{DEFAULT_DB})")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    ap.add_argument("--token", help="secret every request must carry (required to bind a non-loopback address); "
                    "'auto' makes a random one")
    ap.add_argument("--users", type=Path, metavar="FILE",
                    help="reviewer accounts (names and scrypt hashes: python -m callqa.pipelines.app.users add FILE "
                    "NAME): everyone signs in and reviews are stored under that name; allows a non-loopback address")
    ap.add_argument("--checklist", default=DEFAULT_CHECKLIST,
                    help=f"checklist id or YAML file (its items' review: gates apply; default: {DEFAULT_CHECKLIST})")
    ap.add_argument("--lang", default="en", choices=["en", "zh"], help="language of item titles")
    ap.add_argument("--write-wait", type=float, default=5.0, metavar="SECONDS",
                    help="how long a review waits for a running batch to let go of the database before the page "
                    "says 503 (default 5)")
    ap.set_defaults(func=cmd_app)
    add_rules_command(sub)  # `callqa rules test`: the same bench as the app's /rules page


def add_rules_command(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("rules", help="test a checklist: its items' examples (and a dialogue) through the engine",
                        description="Run every item's examples (must-pass / must-fail snippets) and optionally a "
                        "dialogue through the checklist engine and print the verdicts; nothing is stored. Exits 1 "
                        "when an example comes out wrong.")
    rp.add_argument("action", choices=["test"])
    rp.add_argument("--checklist", required=True, help="bundled checklist name or YAML path")
    rp.add_argument("--dialogue", type=Path, help="a dialogue: JSON turns, or lines 'agent: …' / 'customer: …'")
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    rp.set_defaults(func=cmd_rules)


def cmd_rules(args: argparse.Namespace) -> int:
    from callqa.pipelines.app.rules import cmd_rules as run

    return run(args)


def cmd_app(args: argparse.Namespace) -> int:
    from callqa.pipelines.app.security import check_bind, is_loopback
    from callqa.pipelines.app.users import Users, UsersFileError

    token = secrets.token_urlsafe(18) if args.token == "auto" else args.token
    users_file = getattr(args, "users", None)
    try:
        users = Users.load(users_file) if users_file is not None else None
        check_bind(args.host, token, users)
    except UsersFileError as e:
        print(f"callqa app: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    if not args.db.is_file():
        print(f"callqa app: no database at {args.db}; run `callqa run` first", file=sys.stderr)
        return 1
    checklist_id, policy = args.checklist, None
    if args.checklist.endswith((".yaml", ".yml")) or Path(args.checklist).is_file():
        from callqa.qa_rules.checklist import ChecklistError, load_checklist

        try:
            checklist_id, policy = load_checklist(args.checklist).id, args.checklist
        except (ChecklistError, OSError) as e:
            print(f"callqa app: {e}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    import uvicorn
    from callqa.pipelines.app.server import create_app

    app = create_app(args.db, token=token, checklist_id=checklist_id, lang=args.lang,
                     extra_hosts=set() if is_loopback(args.host) or args.host in ("0.0.0.0", "::") else {args.host},
                     write_wait=args.write_wait, users=users, review_policy=policy)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{args.port}/"
    print(f"callqa app: {args.db} (ready in {time.perf_counter() - started:.1f} s)")
    print(f"open {url}" + (f"?token={token}" if token else "")
          + (f" (sign in: {len(users.accounts)} accounts in {users_file})" if users else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
