"""Do two revisions of callqa give the same verdicts? Behaviour check for moves and refactors.

Scores labelled calls in text mode (their reference `turns`) with one checklist file under the code of each
revision, in separate processes (each revision's tree is laid out from `git archive` in a temporary folder and put
first on PYTHONPATH, so the editable install of the working tree is not what runs), then compares every
(call, item) verdict and its confidence (rounded to 3 places):

    .venv/bin/python scripts/verdict_diff.py --rev 976c7b2 --rev HEAD \\
        --checklist /tmp/v13.yaml --manifest ../shared/data/dev/calls.jsonl --manifest tests/data/heldout/calls_e.jsonl

Both revisions must understand the checklist (use one from the older of the two: `git show REV:qa_rules/...`).
Exit 0 when every verdict is the same, 1 when any differs (the differences are printed), 2 on bad input.
Works across the move of pipelines/ into sub-packages (both module layouts are tried).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"models": "models", "qa_rules": "qa_rules", "pipelines": "pipelines"}  # callqa.<key> -> tree folder


def _layout(rev: str, dest: Path) -> Path:
    """The revision's tree as an importable `callqa` package under dest (what package-dir maps, by symlinks)."""
    tree = dest / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True, check=True)
    tar_path = dest / "rev.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(tree, filter="data")
    pkg = dest / "path" / "callqa"
    pkg.mkdir(parents=True)
    for f in (tree / "callqa").iterdir():
        (pkg / f.name).symlink_to(f)
    for name, folder in MAPPING.items():
        (pkg / name).symlink_to(tree / folder)
    return dest / "path"


def dump(checklist: str, manifests: list[str]) -> None:
    """(In the child process) print one JSON line per (call, item): verdict and confidence."""
    try:  # after the move into sub-packages
        from callqa.pipelines.learn.evaluate import classify_text
        from callqa.pipelines.run.batch import read_manifest
        from callqa.pipelines.run.scoring import make_engine
    except ImportError:  # the flat pipelines/ of before
        from callqa.pipelines.batch import read_manifest  # type: ignore[no-redef]
        from callqa.pipelines.evaluate import classify_text  # type: ignore[no-redef]
        from callqa.pipelines.scoring import make_engine  # type: ignore[no-redef]
    from callqa.qa_rules.checklist import load_checklist

    import callqa

    print(json.dumps({"callqa": str(Path(callqa.__file__).resolve().parent)}), flush=True)
    engine = make_engine(load_checklist(checklist))
    for m in manifests:
        rows = [r for r in read_manifest(Path(m), require_file=False) if r.get("labels")]
        for key, _labels, verdicts in classify_text(engine, rows):
            for v in verdicts:
                conf = None if v.confidence is None else round(float(v.confidence), 3)
                print(json.dumps({"set": Path(m).name, "call": key, "item": v.item_id, "verdict": v.verdict,
                                  "confidence": conf}, ensure_ascii=False), flush=True)


def run_rev(rev: str, checklist: str, manifests: list[str], work: Path) -> dict[tuple[str, str, str], tuple]:
    path = _layout(rev, work / rev.replace("/", "_"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--dump", "--checklist", checklist]
    for m in manifests:
        cmd += ["--manifest", m]
    env = {"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
           "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{rev}: scoring failed:\n{out.stderr[-2000:]}")
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    where = lines[0]["callqa"]
    if not where.startswith(str(path.parent.resolve())):
        raise SystemExit(f"{rev}: imported callqa from {where}, not the revision's tree")
    return {(x["set"], x["call"], x["item"]): (x["verdict"], x["confidence"]) for x in lines[1:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", action="append", default=[], help="a git revision (give two)")
    ap.add_argument("--checklist", required=True, help="checklist YAML both revisions can parse")
    ap.add_argument("--manifest", action="append", required=True, help="labelled JSONL with turns (repeatable)")
    ap.add_argument("--dump", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    checklist = str(Path(a.checklist).resolve())
    manifests = [str(Path(m).resolve()) for m in a.manifest]
    if a.dump:
        dump(checklist, manifests)
        return 0
    if len(a.rev) != 2:
        ap.error("give two --rev")
    for p in [checklist, *manifests]:
        if not Path(p).is_file():
            ap.error(f"{p}: no such file")
    with tempfile.TemporaryDirectory(prefix="callqa-vdiff-") as tmp:
        old, new = (run_rev(r, checklist, manifests, Path(tmp)) for r in a.rev)
    keys = sorted(set(old) | set(new))
    diff = [k for k in keys if old.get(k) != new.get(k)]
    for k in diff:
        print(f"{k[0]} {k[1]} {k[2]}: {a.rev[0]} {old.get(k)}  {a.rev[1]} {new.get(k)}")
    calls = len({k[:2] for k in keys})
    print(f"{len(keys)} verdicts of {calls} calls: {len(keys) - len(diff)} the same, {len(diff)} different")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
