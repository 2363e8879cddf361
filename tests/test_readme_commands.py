"""The README's command table and the CLI agree: every subcommand is in the table, every command the table names
exists, and every option the table shows is one that command accepts (so neither drifts from the other)."""

from __future__ import annotations

import argparse
import re

from callqa.pipelines.cli.main import build_parser

from tests.conftest import ROOT

ROWS = re.findall(r"^\| `callqa ([^`]+)` \|", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _command_of(row: str, known: dict[str, argparse.ArgumentParser]) -> tuple[str, argparse.ArgumentParser]:
    name = row.split()[0]
    parser = known[name]
    words = row.split()
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if nested and len(words) > 1 and words[1] in nested[0].choices:  # e.g. `rules test`
        return f"{name} {words[1]}", nested[0].choices[words[1]]
    return name, parser


def test_every_subcommand_is_in_the_readme_table_and_back():
    known = _subcommands(build_parser())
    named = {row.split()[0] for row in ROWS}
    assert named == set(known), {"missing from README": set(known) - named, "not a command": named - set(known)}


def test_every_option_the_table_shows_exists():
    known = _subcommands(build_parser())
    for row in ROWS:
        name, parser = _command_of(row, known)
        accepted = {s for a in parser._actions for s in a.option_strings}
        shown = set(re.findall(r"(--[a-z][a-z0-9-]*)", row))
        assert shown <= accepted, (name, shown - accepted)
