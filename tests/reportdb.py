"""A DuckDB of the shared dev set for the report tests, built once per test session.

The reference `turns` are scored by the real engine (no audio decoding, so it takes seconds) and
written through the real `Store`; each recording points at its real dev audio file, so coaching
clips are cut from real recordings.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from tests.conftest import DEV

_lock = threading.Lock()
_built: dict[str, Path] = {}


def build_dev_db(path: Path) -> Path:
    from callqa.pipelines.app.bench import build_dev_db as build

    return build(path, DEV, status="new")


def dev_db(tmp_path_factory) -> Path:
    """The session's dev DB (built on first use); callers that write must copy it (`dev_db_copy`)."""
    with _lock:
        if "dev" not in _built:
            _built["dev"] = build_dev_db(tmp_path_factory.mktemp("devdb") / "dev.duckdb")
        return _built["dev"]


def dev_db_copy(tmp_path_factory, name: str = "copy") -> Path:
    src = dev_db(tmp_path_factory)
    dst = tmp_path_factory.mktemp(name) / "dev.duckdb"
    shutil.copy(src, dst)
    return dst
