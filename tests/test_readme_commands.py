"""The README's command table and the CLI agree: every command is in the table, every command the table names
exists (subcommands included: `review set|list|...`, `rules test`), every option the table shows is one that
command accepts, and the exit codes the README documents are the CLI's (so neither drifts from the other)."""

from __future__ import annotations

import re

import click
from callqa.pipelines.cli import options
from callqa.pipelines.cli.main import cli, main

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ROWS = re.findall(r"^\| `callqa ([^`]+)` \|", README, re.M)


def _named(row: str) -> list[tuple[str, click.Command]]:
    """The command(s) a row names: `review set|list` names two; an unknown word fails the lookup."""
    words = row.split()
    cmd = cli.commands.get(words[0])
    assert cmd is not None, f"README names `callqa {words[0]}`, which is not a command"
    if not isinstance(cmd, click.Group):
        return [(words[0], cmd)]
    assert len(words) > 1, f"`callqa {words[0]}` has subcommands: the row must name them"
    subs = words[1].replace("\\|", "|").split("|")
    unknown = [s for s in subs if s not in cmd.commands]
    assert not unknown, f"README names `callqa {words[0]} {'|'.join(unknown)}`, not subcommands of {words[0]}"
    return [(f"{words[0]} {s}", cmd.commands[s]) for s in subs]


def _accepted(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}


def test_every_command_is_in_the_readme_table_and_back():
    named = {name for row in ROWS for name, _ in _named(row)}
    commands = set()
    for name, cmd in cli.commands.items():
        commands |= {f"{name} {s}" for s in cmd.commands} if isinstance(cmd, click.Group) else {name}
    assert named == commands, {"missing from README": commands - named, "not a command": named - commands}


def test_every_option_the_table_shows_exists():
    for row in ROWS:
        shown = set(re.findall(r"(--[a-z][a-z0-9-]*)", row))
        for name, cmd in _named(row):
            assert shown <= _accepted(cmd), (name, shown - _accepted(cmd))


def test_the_readme_documents_the_cli_exit_codes(capsys):
    section = README[README.index("Exit codes"):]
    documented = {int(c) for c in re.findall(r"^\| `(\d+)` \|", section, re.M)}
    assert documented == {options.EXIT_OK, options.EXIT_FAILED, options.EXIT_USAGE, options.EXIT_BUSY,
                          options.EXIT_INTERRUPTED}
    assert main(["--help"]) == 0
    shown = re.findall(r"^\s+(\d+)\s{2,}\S", capsys.readouterr().out.split("exit codes:")[1], re.M)
    assert {int(c) for c in shown} == documented
