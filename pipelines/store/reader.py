"""What the store's read functions accept: an open `Store` (the CLI, reports, the notebook: usually
`Store.open_readonly`), or a bare DuckDB connection from the pool that keeps its connections open
between requests (the review web app, `pipelines/store/pool.py`). Callers outside `store/` never touch
the connection themselves: they hand over what they hold and get typed records back."""

from __future__ import annotations

from typing import TypeAlias

import duckdb
from callqa.pipelines.store.database import Store

Reader: TypeAlias = Store | duckdb.DuckDBPyConnection


def connection(db: Reader) -> duckdb.DuckDBPyConnection:
    """The DuckDB connection behind `db`."""
    return db.con if isinstance(db, Store) else db


def has_table(db: Reader, name: str) -> bool:
    """Whether the database has table `name` (a file read without upgrading may predate it)."""
    return connection(db).execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0] > 0
