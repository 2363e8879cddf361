"""`callqa app`: the review workstation, a local web app where QA leads check verdicts, play the evidence,
override and appeal (see docs/app.md). The server lives in `server.py`; `cmd_app` here starts it (its options:
`pipelines/cli/workstation.py`)."""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path


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
