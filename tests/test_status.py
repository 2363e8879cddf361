"""`callqa status` and the batch boundary: bad files end with a recorded reason and kind; manifest paths and
symlinks cannot lead out of the batch folder; permanent failures are not retried, transient ones are."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from callqa.pipelines.cli.main import main
from callqa.pipelines.run.batch import discover
from callqa.pipelines.run.flows import process_batch

from tests.conftest import BAD, SAMPLES


@pytest.fixture()
def mixed_batch(tmp_path, shared_data):
    root = tmp_path / "batch"
    root.mkdir()
    for name in ("empty_0byte.wav", "text_not_audio.wav", "truncated_header.wav", "silence_30s.wav"):
        shutil.copy(BAD / name, root / name)
    shutil.copy(SAMPLES / "calls" / "S-004.opus", root / "A01_20261110T1000_ok.opus")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(SAMPLES / "calls" / "S-005.opus", outside / "secret.opus")
    (root / "link.opus").symlink_to(outside / "secret.opus")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    return root


def test_symlinks_and_manifest_paths_cannot_leave_the_batch(mixed_batch, tmp_path):
    found = {e.path.name: e.reason for e in discover(mixed_batch)}
    assert found["link.opus"] == "symlink_outside"
    assert found.get("secret.opus", "not followed") in ("symlink_outside", "not followed")  # linked folder
    assert found["A01_20261110T1000_ok.opus"] is None
    rows = [{"file": "../outside/secret.opus"}, {"file": "link.opus"}, {"file": "/etc/hostname"},
            {"file": "./A01_20261110T1000_ok.opus"}, {"file": "nope.wav"}]
    m = mixed_batch / "m.jsonl"
    m.write_text("".join(json.dumps(r | {"agent_id": "A", "started_at": "2026-11-10T10:00:00"}) + "\n"
                         for r in rows))
    got = [e.reason for e in discover(mixed_batch, m)]
    assert got == ["outside_batch", "symlink_outside", "outside_batch", None, "not_found"]


def test_bad_files_get_reasons_kinds_and_status_lists_them(mixed_batch, tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    first = process_batch(mixed_batch, db=db, progress=False)
    assert first.counts["scored"] == 1 and first.counts["no_speech"] == 1
    assert first.kinds["empty_0byte.wav"] == "permanent" and first.kinds["link.opus"] == "permanent"
    con = duckdb.connect(str(db))
    got = {f: (s, r, k, a) for f, s, r, k, a in con.execute(
        "SELECT file_name, status, error_reason, failure_kind, attempts FROM recordings").fetchall()}
    assert got["empty_0byte.wav"] == ("failed", "empty", "permanent", 1)
    assert got["text_not_audio.wav"] == ("failed", "not_audio", "permanent", 1)
    assert got["truncated_header.wav"] == ("failed", "corrupt", "permanent", 1)
    assert got["silence_30s.wav"] == ("no_speech", "no_speech", "permanent", 1)
    # pretend the corrupt file had failed for a passing reason (say, a full disk): it is retried once more
    con.execute("UPDATE recordings SET failure_kind = 'transient', error_reason = 'exception' "
                "WHERE file_name = 'truncated_header.wav'")
    con.close()
    second = process_batch(mixed_batch, db=db, progress=False, max_attempts=3)
    retried = {name for name, _, _ in second.failures}
    assert "truncated_header.wav" in retried and "empty_0byte.wav" not in retried  # permanent: never again
    assert second.counts["scored"] == 0

    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "writing now: nothing" in out and out.count("finished") == 2
    assert "empty_0byte.wav: empty (permanent, will not retry)" in out
    assert "link.opus: symlink_outside" in out
    assert main(["status", "--db", str(db), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["schema_version"] >= 3 and len(st["runs"]) == 2
    assert {f["file"] for f in st["failures"]} >= {"empty_0byte.wav", "silence_30s.wav"}
    con = duckdb.connect(str(db), read_only=True)
    hist = con.execute("SELECT count(*) FROM run_failures WHERE file = 'truncated_header.wav'").fetchone()[0]
    con.close()
    assert hist == 2  # each failure is kept per run for audits


def test_status_on_missing_db_is_a_clear_error(tmp_path, capsys):
    assert main(["status", "--db", str(tmp_path / "nope.duckdb")]) == 2
    assert "no database" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["status"], ["serve"], ["pipeline-bench"]])
def test_help_on_operations_commands(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: callqa {cmd[0]} ")
