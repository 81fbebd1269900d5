"""Read-only access to the serving store for long-running readers (the profile API).

One pool of read-only cursors per published file. Publishing renames a new file over the store, so
the pool checks the file's identity (device, inode) before handing out a cursor and opens the new
publication when it changed; requests already running finish on the file they started with, so every
answer comes from one publication. The file is ATTACHed to a fresh in-memory database rather than
opened with duckdb.connect(path): DuckDB caches databases by path within a process, which would keep
serving the replaced file.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from cdp.errors import CdpError
from cdp.warehouse import attach

CATALOG = "published"


class StoreUnavailable(CdpError):
    """Nothing is published yet, or the store cannot be opened."""


@dataclass
class _Generation:
    file_id: tuple[int, int]
    connection: duckdb.DuckDBPyConnection
    cursors: queue.Queue = field(default_factory=queue.Queue)
    in_use: int = 0
    retired: bool = False


class PublishedStore:
    def __init__(self, path: Path, pool_size: int = 8, threads: int = 2) -> None:
        self.path = Path(path)
        self.pool_size = pool_size
        self.threads = threads
        self._lock = threading.Lock()
        self._current: _Generation | None = None

    def _file_id(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise StoreUnavailable(f"nothing is published at {self.path} yet; run the pipeline first") from None
        return stat.st_dev, stat.st_ino

    def _open(self, file_id: tuple[int, int]) -> _Generation:
        connection = duckdb.connect(":memory:", config={"threads": self.threads})
        try:
            attach(connection, self.path, CATALOG, read_only=True)  # with the key when the store is encrypted
        except duckdb.Error as error:
            connection.close()
            raise StoreUnavailable(f"the serving store {self.path} cannot be opened: {error}") from error
        generation = _Generation(file_id=file_id, connection=connection)
        for _ in range(self.pool_size):
            cursor = connection.cursor()
            cursor.execute(f"use {CATALOG}")
            generation.cursors.put(cursor)
        return generation

    def _generation(self) -> _Generation:
        file_id = self._file_id()
        with self._lock:
            current = self._current
            if current is None or current.file_id != file_id:
                fresh = self._open(file_id)
                if current is not None:
                    current.retired = True
                    if current.in_use == 0:
                        current.connection.close()
                self._current = current = fresh
            current.in_use += 1
            return current

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the newest publication, held for one request."""
        generation = self._generation()
        try:
            cursor = generation.cursors.get(timeout=30)
        except queue.Empty:
            self._release(generation)
            raise StoreUnavailable("all read connections are busy; retry shortly") from None
        try:
            yield cursor
        finally:
            generation.cursors.put(cursor)
            self._release(generation)

    def _release(self, generation: _Generation) -> None:
        with self._lock:
            generation.in_use -= 1
            if generation.retired and generation.in_use == 0:
                generation.connection.close()  # the replaced file is freed once its last request ends

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.connection.close()
                self._current = None
