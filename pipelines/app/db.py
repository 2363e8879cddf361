"""How the review workstation reaches the DuckDB file without getting in the batch's way.

DuckDB lets one process write a file, and a process that writes it keeps others from opening it at all. A batch run
(`callqa run`) holds the file's `WriterLock` for its whole run and opens the database in short steps. So the app
keeps no connection open between requests:

- reads open a read-only connection per request, retried for a few seconds while another process has the file;
- writes (reviews, appeals) take the `WriterLock` with a short wait, open the database for writing (which applies
  any missing migration), write, and let go at once.

Within this process one lock serialises every connection: DuckDB refuses a read-only and a read-write connection
to the same file side by side in one process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from callqa.pipelines.store.database import DatabaseBusy, Store, WriterLock, connect


class AppDB:
    def __init__(self, path: str | Path, read_wait: float = 3.0, write_wait: float = 5.0):
        self.path = Path(path)
        self.read_wait = read_wait
        self.write_wait = write_wait
        self._local = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-only connection; `DatabaseBusy` when a writer keeps the file past `read_wait`."""
        if not self.path.is_file():
            raise FileNotFoundError(f"no database at {self.path}")
        with self._local:
            con = connect(self.path, read_only=True, wait=self.read_wait)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def write(self, what: str = "callqa app") -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, holding the `WriterLock` (waits up to `write_wait`
        seconds for a batch to let go, then raises `DatabaseBusy` with the holder's name)."""
        with WriterLock(self.path, wait=self.write_wait, what=what), self._local:
            with Store(self.path, lock=False, wait=self.write_wait) as store, store.transaction() as con:
                yield con


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0] > 0


__all__ = ["AppDB", "DatabaseBusy", "has_table"]
