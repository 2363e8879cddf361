"""How a long-lived reader (the review workstation, `pipelines/app/`) reaches the DuckDB file without getting in the
batch's way.

DuckDB lets one process write a file, and a process that writes it keeps others from opening it at all. A batch run
(`callqa run`) holds the file's `WriterLock` for its whole run and opens the database in short steps. So the pool
keeps no connection open between requests:

- reads open a read-only connection per request, retried for a few seconds while another process has the file;
- writes (reviews, appeals) take the `WriterLock` with a short wait, open the database for writing (which applies
  any missing migration), write, and let go at once.

Within this process one lock serialises every connection: DuckDB refuses a read-only and a read-write connection
to the same file side by side in one process.

Opening the file costs tens of milliseconds (more than most pages' own work on 10,000 calls), so a read-only
connection is kept for `linger` seconds after the last request and reused by the requests in between. While it is
open no other process can write the file (DuckDB's file lock), so nothing changes under it: `generation` counts
the connections opened, and whatever was read on the same generation is still true. It is closed
- `linger` seconds after the last request (a batch step waiting to open the file, retrying, gets in then);
- at once when the file's `WriterLock` is held by someone (a batch has started): from then on every request opens
  and closes its own connection, as if `linger` were 0, so the batch gets the file between requests;
- before this process writes (a review), which opens the file for writing itself.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from callqa.pipelines.store.database import DatabaseBusy, Store, WriterLock, connect


class _File:
    """What every Pool of this process shares for one database file: DuckDB refuses a second connection to a file
    with another configuration (read-only beside read-write) within one process, so two apps on the same file
    (tests, the bench) must take turns on one lock and one kept connection."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_file = WriterLock(path).path
        self.lock = threading.Lock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.generation = 0  # connections opened so far: reads on one generation saw the same data
        self.last = 0.0
        self.linger = 1.0
        self.closer: threading.Thread | None = None


_FILES: dict[Path, _File] = {}
_FILES_LOCK = threading.Lock()


def _file(path: Path) -> _File:
    key = path.resolve()
    with _FILES_LOCK:
        return _FILES.setdefault(key, _File(key))


class Pool:
    """Read-only connections kept between close requests, and short writes through a `Store` holding the
    `WriterLock` (see the module docstring). Hand what `read()` and `write()` yield to the store's functions."""

    def __init__(self, path: str | Path, read_wait: float = 3.0, write_wait: float = 5.0, linger: float = 1.0):
        self.path = Path(path)
        self.read_wait = read_wait
        self.write_wait = write_wait
        self.linger = linger
        self._f = _file(self.path)

    @property
    def generation(self) -> int:
        return self._f.generation

    def _writer_waiting(self) -> bool:
        """Some process holds the WriterLock: a shared `flock` on the lock file is refused. (Tried without
        waiting and let go at once; a batch that asks in that instant retries half a second later, as it does
        for any holder.)"""
        try:
            fd = os.open(self._f.lock_file, os.O_RDONLY)
        except OSError:
            return False  # no lock file: nobody ever wrote this database
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = connect(self.path, read_only=True, wait=self.read_wait)
        self._f.generation += 1
        return con

    def _close(self) -> None:
        if self._f.con is not None:
            self._f.con.close()
            self._f.con = None

    def _closer_loop(self) -> None:
        f = self._f
        while True:
            time.sleep(max(0.05, f.linger / 4))
            with f.lock:
                if f.con is None:
                    f.closer = None
                    return
                if time.monotonic() - f.last >= f.linger or self._writer_waiting():
                    self._close()
                    f.closer = None
                    return

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (kept open between close requests, see above); `DatabaseBusy` when a writer
        keeps the file past `read_wait`."""
        if not self.path.is_file():
            raise FileNotFoundError(f"no database at {self.path}")
        f = self._f
        with f.lock:
            if self.linger <= 0 or self._writer_waiting():
                self._close()
                con = self._open()
                try:
                    yield con
                finally:
                    con.close()
                return
            if f.con is None:
                f.con = self._open()
            f.linger = self.linger
            if f.closer is None:
                f.closer = threading.Thread(target=self._closer_loop, name="callqa-app-db", daemon=True)
                f.closer.start()
            try:
                yield f.con
            finally:
                f.last = time.monotonic()

    @contextmanager
    def write(self, what: str = "callqa app") -> Iterator[Store]:
        """A writing `Store` inside one transaction, holding the `WriterLock` (waits up to `write_wait` seconds for
        a batch to let go, then raises `DatabaseBusy` with the holder's name); opening it applies any missing
        migration. Hand it to the store's write functions (`review.add_review`, `appeals.open_appeal`, ...)."""
        with WriterLock(self.path, wait=self.write_wait, what=what), self._f.lock:
            self._close()
            with Store(self.path, lock=False, wait=self.write_wait) as store, store.transaction():
                yield store

    def close(self) -> None:
        with self._f.lock:
            self._close()


__all__ = ["DatabaseBusy", "Pool"]
