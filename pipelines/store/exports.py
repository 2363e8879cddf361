"""Tables written as files by DuckDB's COPY, from an in-memory database (the store itself is not touched):
the report's CSV and Parquet exports (`pipelines/reports/report_export.py`) and the transcript partitions
of scale-out (`pipelines/run/scale.py`). Callers give columns as (name, DuckDB type) and rows as tuples."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

Column = tuple[str, str]  # (name, DuckDB type: VARCHAR, DOUBLE, INTEGER, BOOLEAN, TIMESTAMP, ...)

FORMATS = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet"}


@dataclass(frozen=True)
class Table:
    name: str
    columns: Sequence[Column]
    rows: Sequence[tuple]


def column_name(name: str) -> str:
    """A column name DuckDB takes unquoted (non-word characters become '_')."""
    return re.sub(r"\W", "_", name)


def _create(con: duckdb.DuckDBPyConnection, name: str, columns: Sequence[Column], rows: Iterable[tuple]) -> None:
    con.execute(f"CREATE TABLE {name} ({', '.join(f'{column_name(c)} {t}' for c, t in columns)})")
    rows = list(rows)
    if rows:
        con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' for _ in columns)})", rows)


def write_tables(tables: Sequence[Table], out_dir: Path, suffix: str,
                 formats: Sequence[str] = ("csv", "parquet")) -> list[Path]:
    """Write each table as `<out_dir>/<name>_<suffix>.<format>` for every format (CSV with a header row,
    Parquet); returns the paths in table order, formats in the order given."""
    con = duckdb.connect()
    try:
        for t in tables:
            _create(con, t.name, t.columns, t.rows)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for t in tables:
            for fmt in formats:
                path = out_dir / f"{t.name}_{suffix}.{fmt}"
                con.execute(f"COPY {t.name} TO '{sql_path(path)}' ({FORMATS[fmt]})")
                paths.append(path)
        return paths
    finally:
        con.close()


def write_parquet(path: Path, columns: Sequence[Column], rows: Iterable[tuple]) -> Path:
    """Write rows as one Parquet file at `path` (exactly that name: callers write a temporary name and rename)."""
    con = duckdb.connect(":memory:")
    try:
        _create(con, "p", columns, rows)
        con.execute(f"COPY p TO '{sql_path(path)}' (FORMAT parquet)")
    finally:
        con.close()
    return path


def sql_path(p: Path) -> str:
    """A path as the inside of a single-quoted DuckDB string literal."""
    return str(p).replace("'", "''")
