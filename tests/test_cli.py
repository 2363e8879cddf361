"""The CLI contract: `--help` everywhere (and informative), exit codes, `eval --text --json`, `scorecard --json`,
`run --no-prefect`."""

from __future__ import annotations

import json
import re
import shutil

import click
import pytest
from callqa.pipelines.cli.main import cli, main
from callqa.pipelines.learn.evaluate import LABELS

from tests.conftest import DEV, ROOT, SAMPLES


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command of the CLI, nested ones included, as (words after `callqa`, command)."""
    out = [(path, group)]
    for name, cmd in group.commands.items():
        out += _commands(cmd, (*path, name)) if isinstance(cmd, click.Group) else [((*path, name), cmd)]
    return out


COMMANDS = _commands(cli)


@pytest.mark.parametrize("words", [w for w, _ in COMMANDS], ids=lambda w: " ".join(w) or "callqa")
def test_help_on_every_command(words, capsys):
    assert main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: {' '.join(('callqa', *words))} ")
    assert main([*words, "-h"]) == 0 and capsys.readouterr().out == out


def test_every_command_and_option_says_what_it_does():
    """`--help` stays informative: a description and a one-line summary for every command, help on every option
    and argument, and examples in the epilog of the commands a new user starts with."""
    for words, cmd in COMMANDS:
        name = " ".join(("callqa", *words))
        assert cmd.help and len(cmd.help) > 40, name
        if words:
            assert cmd.short_help, name
        for p in cmd.params:
            assert getattr(p, "help", None), (name, p.name)
    for words in [(), ("train",), ("review",), ("rules", "test"), ("report",)]:
        cmd = dict(COMMANDS)[words]
        assert "callqa " in (cmd.epilog or ""), words


def test_usage_errors_exit_2_and_name_the_problem(tmp_path, capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert main(["scorecard", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err
    assert main(["run", str(tmp_path), "--no-prefect", "--dask"]) == 2
    assert "--dask needs Prefect" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert "--manifest" in capsys.readouterr().err


def test_the_default_checklist_is_named_once():
    """Every command that takes --checklist defaults to qa_rules' DEFAULT_CHECKLIST (none spells it out)."""
    from callqa.qa_rules.checklist import DEFAULT_CHECKLIST

    defaults = {" ".join(w): p.default for w, c in COMMANDS for p in c.params if p.name == "checklist"}
    assert len(defaults) >= 8
    assert {d for d in defaults.values() if isinstance(d, str)} == {DEFAULT_CHECKLIST}, defaults  # else: required
    source = "".join(f.read_text(encoding="utf-8") for f in (ROOT / "pipelines" / "cli").glob("*.py"))
    assert f'"{DEFAULT_CHECKLIST}"' not in source


def test_eval_text_json_contract(shared_data, capsys):
    assert main(["-q", "eval", "--manifest", str(DEV / "calls.jsonl"), "--text", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["items"]) == set(LABELS)
    for m in out["items"].values():
        assert set(m) >= {"precision", "recall", "f1", "support"}
        assert 0 <= m["f1"] <= 1
    assert out["macro_f1"] == pytest.approx(sum(m["f1"] for m in out["items"].values()) / len(LABELS), abs=1e-3)
    assert out["macro_f1"] > 0.7  # a floor, not the target: a broken engine drops far below it


def test_eval_reports_items_the_checklist_lacks_as_missing(shared_data, tmp_path, capsys):
    from callqa.qa_rules.checklist import CHECKLIST_DIR

    text = (CHECKLIST_DIR / "sales_core.yaml").read_text(encoding="utf-8")
    cut = text[: re.search(r"^\s*- id: objection_resolved", text, re.MULTILINE).start()]  # the last item removed
    (tmp_path / "team.yaml").write_text(cut, encoding="utf-8")
    assert main(["-q", "eval", "--manifest", str(DEV / "calls.jsonl"), "--text", "--json",
                 "--checklist", str(tmp_path / "team.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["missing"] == ["objection_resolved"] and "objection_resolved" not in out["items"]


def test_run_without_prefect_then_scorecard_json(tmp_path, capsys):
    batch = tmp_path / "batch"
    shutil.copytree(SAMPLES, batch)
    rows = [json.loads(x) for x in (batch / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if x]
    en = next(r for r in rows if r["language"] == "en")
    (batch / "one.jsonl").write_text(json.dumps(en, ensure_ascii=False) + "\n", encoding="utf-8")
    db = tmp_path / "cli.duckdb"
    assert main(["-q", "run", str(batch), "--manifest", str(batch / "one.jsonl"), "--db", str(db), "--no-prefect"]) == 0
    out = capsys.readouterr().out
    assert "1 scored" in out and str(db) in out
    assert main(["scorecard", "--db", str(db), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["agents"][0]["agent_id"] == en["agent_id"] and card["agents"][0]["calls"] == 1
    assert {it["id"] for it in card["items"]} >= {"usage_scenario", "selling_point", "objection_resolved"}


def test_scorecard_on_missing_db_is_a_clear_error(tmp_path, capsys):
    assert main(["scorecard", "--db", str(tmp_path / "nope.duckdb")]) == 2
    assert "no database" in capsys.readouterr().err


def test_eval_joins_labels_kept_apart_from_the_corpus(shared_data, tmp_path, capsys):
    """Real chats may not be copied next to their labels: `--labels` joins them on source_id."""
    real = shared_data / "real" / "dialogues.jsonl"
    labels = ROOT / "tests" / "data" / "heldout" / "real_labels.jsonl"
    assert main(["-q", "eval", "--manifest", str(real), "--labels", str(labels), "--text", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(out["confusion"]["objection"].values()) == 40  # every chat evaluated, none twice
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps({"source_id": "no-such-chat", "labels": {"greeting": True}}) + "\n", encoding="utf-8")
    assert main(["-q", "eval", "--manifest", str(real), "--labels", str(bad), "--text"]) == 1
    assert "no-such-chat" in capsys.readouterr().err
