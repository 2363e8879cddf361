"""The `callqa app` and `callqa rules test` commands: their options here, their work in `callqa.pipelines.app`
(`cmd_app` serves the review workstation, `app.rules.cmd_rules` runs the checklist test bench)."""

from __future__ import annotations

import argparse
from pathlib import Path

import click
from callqa.pipelines.cli.options import (
    CONTEXT_SETTINGS,
    CallqaGroup,
    PathType,
    checklist_option,
    db_option,
    json_option,
    lang_option,
)


@click.command("app", cls=CallqaGroup.command_class,
               short_help="the review workstation: a local web app to check, override and appeal verdicts",
               help="Serve the review workstation over one database: the week's scorecard, agents, calls with "
               "transcript, evidence and audio, the review queue (j/k/p/f), overrides and appeals. Binds 127.0.0.1; "
               "any other address needs --token or --users.",
               epilog="\b\nexamples:\n"
               "  callqa app --db /data/callqa.duckdb                               this machine only\n"
               "  callqa app --db /data/callqa.duckdb --host 0.0.0.0 --token auto   the team's network")
@db_option()
@click.option("--host", default="127.0.0.1", metavar="ADDRESS",
              help="address to bind (default 127.0.0.1: this machine only)")
@click.option("--port", type=int, default=8765, metavar="PORT", help="port (default 8765)")
@click.option("--token", metavar="SECRET", help="secret every request must carry (required to bind a non-loopback "
              "address); 'auto' makes a random one")
@click.option("--users", type=PathType, metavar="FILE",
              help="reviewer accounts (names and scrypt hashes: python -m callqa.pipelines.app.users add FILE NAME): "
              "everyone signs in and reviews are stored under that name; allows a non-loopback address")
@checklist_option("checklist id or YAML file (its items' review: gates apply)")
@lang_option()
@click.option("--write-wait", type=float, default=5.0, metavar="SECONDS",
              help="how long a review waits for a running batch to let go of the database before the page says 503 "
              "(default 5)")
def app(db: Path, host: str, port: int, token: str | None, users: Path | None, checklist: str, lang: str,
        write_wait: float) -> int:
    from callqa.pipelines.app import cmd_app

    return cmd_app(argparse.Namespace(db=db, host=host, port=port, token=token, users=users, checklist=checklist,
                                      lang=lang, write_wait=write_wait))


@click.group("rules", cls=CallqaGroup, context_settings=CONTEXT_SETTINGS,
             short_help="test a checklist: its items' examples (and a dialogue) through the engine",
             help="The checklist test bench (the same as the app's /rules page).")
def rules() -> None:
    pass


@rules.command("test", short_help="run a checklist's examples (and a dialogue) through the engine",
               help="Run every item's examples (must-pass / must-fail snippets) and optionally a dialogue through the "
               "checklist engine and print the verdicts; nothing is stored. Exits 1 when an example comes out wrong.",
               epilog="\b\nexamples:\n"
               "  callqa rules test --checklist team_follow_up\n"
               "  callqa rules test --checklist my_team.yaml --dialogue call.txt --json")
@checklist_option(required=True, help="bundled checklist name or YAML path")
@click.option("--dialogue", type=PathType, metavar="FILE",
              help="a dialogue: JSON turns, or lines 'agent: …' / 'customer: …'")
@json_option()
def rules_test(checklist: str, dialogue: Path | None, as_json: bool) -> int:
    from callqa.pipelines.app.rules import cmd_rules

    return cmd_rules(argparse.Namespace(action="test", checklist=checklist, dialogue=dialogue, json=as_json))
