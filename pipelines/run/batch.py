"""A batch: a folder of recordings plus an optional manifest (CSV or JSONL).

Manifest rows need `file` (relative to the manifest), `agent_id` and `started_at`; optional
`call_id`, `customer_id`, `language`, `direction`, `agent_channel`; unknown columns are kept.
Without a manifest, every file in the folder is a recording (the format is sniffed from content
later) and a filename pattern supplies agent and time.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Side files that are never recordings, skipped when scanning a folder without a manifest.
SIDECAR_SUFFIXES = {".json", ".jsonl", ".csv", ".txt", ".md", ".yaml", ".yml", ".tsv", ".log", ".duckdb", ".wal"}
# `<agent>_<YYYYMMDD>[T_-]<HHMM[SS]>...` e.g. A01_20261103T1015_cust42.wav
DEFAULT_NAME_PATTERN = r"(?P<agent_id>[A-Za-z0-9]+)[_-](?P<date>\d{8})[T_-]?(?P<time>\d{4,6})?"


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and row."""


@dataclass(frozen=True)
class BatchEntry:
    path: Path
    agent_id: str | None = None
    started_at: str | None = None
    call_id: str | None = None
    customer_id: str | None = None
    language: str | None = None
    direction: str | None = None
    agent_channel: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # set when the row cannot be processed (missing file, outside the batch)
    reason: str | None = None  # short code for `problem`: not_found | outside_batch | symlink_outside


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _agent_channel(value: Any, where: str) -> int:
    if value in (None, ""):
        return 0
    v = str(value).strip().lower()
    if v in ("0", "left", "l"):
        return 0
    if v in ("1", "right", "r"):
        return 1
    raise ManifestError(f"{where}: agent_channel must be left/right or 0/1, got {value!r}")


def read_manifest(path: Path, require_file: bool = True) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL manifest (chosen by content: a JSON object per line, else CSV).
    `require_file=False` accepts rows without audio (`turns` only, for text evaluation)."""
    text = path.read_text(encoding="utf-8-sig")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    rows: list[dict[str, Any]] = []
    if first.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg})") from e
    else:
        rows = [dict(r) for r in csv.DictReader(text.splitlines())]
    for n, r in enumerate(rows, start=1):
        if require_file and not r.get("file"):
            raise ManifestError(f"{path}: row {n} has no 'file'")
    return rows


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _inside_by_name(path: Path, root: Path) -> bool:
    """Inside `root` by its name alone (`..` collapsed, links not followed)."""
    p = os.path.normpath(os.path.abspath(path))
    return any(p == r or p.startswith(r.rstrip(os.sep) + os.sep)
               for r in {os.path.normpath(os.path.abspath(root)), str(root.resolve())})


def entries_from_manifest(manifest: Path, batch_dir: Path) -> list[BatchEntry]:
    known = {"file", "agent_id", "started_at", "call_id", "customer_id", "language", "direction", "agent_channel"}
    out = []
    for n, row in enumerate(read_manifest(manifest), start=1):
        where = f"{manifest}: row {n}"
        path = (manifest.parent / str(row["file"])).absolute()
        problem = reason = None
        if not _inside_by_name(path, batch_dir):
            problem, reason = f"outside the batch folder: {row['file']}", "outside_batch"
        elif not _inside(path, batch_dir):  # inside by name, outside once links are followed
            problem, reason = f"symlink points outside the batch folder: {row['file']}", "symlink_outside"
        elif not path.exists():
            problem, reason = f"file not found: {row['file']}", "not_found"
        for need in ("agent_id", "started_at"):
            if not row.get(need):
                log.warning("%s: missing %s", where, need)
        if row.get("started_at"):
            datetime.fromisoformat(str(row["started_at"]).replace("Z", "+00:00"))  # fail early on bad times
        out.append(BatchEntry(
            path=path, agent_id=_str(row.get("agent_id")), started_at=_str(row.get("started_at")),
            call_id=_str(row.get("call_id")), customer_id=_str(row.get("customer_id")),
            language=_str(row.get("language")), direction=_str(row.get("direction")),
            agent_channel=_agent_channel(row.get("agent_channel"), where),
            metadata={k: v for k, v in row.items() if k not in known}, problem=problem, reason=reason,
        ))
    return out


def _str(v: Any) -> str | None:
    return None if v in (None, "") else str(v)


def entries_from_folder(batch_dir: Path, name_pattern: str = DEFAULT_NAME_PATTERN) -> list[BatchEntry]:
    pat = re.compile(name_pattern)
    out = []
    for p in sorted(batch_dir.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.suffix.lower() in SIDECAR_SUFFIXES:
            continue
        if not _inside(p, batch_dir):  # a link (or a file in a linked folder) leading out of the batch
            out.append(BatchEntry(path=p.absolute(), problem="symlink points outside the batch folder",
                                  reason="symlink_outside"))
            continue
        m = pat.search(p.stem)
        agent = started = None
        if m:
            agent = m.groupdict().get("agent_id")
            date, time_ = m.groupdict().get("date"), (m.groupdict().get("time") or "0000").ljust(6, "0")
            if date:
                started = datetime.strptime(date + time_, "%Y%m%d%H%M%S").isoformat()
        if started is None:
            started = datetime.fromtimestamp(p.stat().st_mtime, tz=UTC).isoformat()
        out.append(BatchEntry(path=p.absolute(), agent_id=agent, started_at=started, metadata={}))
    return out


def discover(batch_dir: Path, manifest: Path | None = None, name_pattern: str = DEFAULT_NAME_PATTERN
             ) -> list[BatchEntry]:
    """The recordings of a batch, from its manifest when given, else from the folder."""
    if not batch_dir.is_dir():
        raise FileNotFoundError(f"batch folder not found: {batch_dir}")
    if manifest is not None:
        return entries_from_manifest(manifest, batch_dir)
    return entries_from_folder(batch_dir, name_pattern)
