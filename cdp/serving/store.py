"""Read-only access to the serving store for long-running readers (the profile API).

One generation per publication: a pool of read-only DuckDB cursors on the store and the profile read
model beside it (cdp/serving/readmodel.py), opened together and only when both carry the same run id. Publishing renames a new file over the store, so
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from cdp.errors import CdpError
from cdp.serving.readmodel import Found, ReadModel, ReadModelError, read_model_path
from cdp.warehouse import attach

CATALOG = "published"
RETRY_UNREADABLE_S = 1.0  # how often a new store that could not be opened with its read model is tried again


class StoreUnavailable(CdpError):
    """Nothing is published yet, or the store cannot be opened."""


@dataclass
class _Generation:
    file_id: tuple[int, int]
    connection: duckdb.DuckDBPyConnection
    read_model: ReadModel
    run_id: str
    cursors: queue.Queue = field(default_factory=queue.Queue)
    in_use: int = 0
    retired: bool = False


class PublishedStore:
    def __init__(self, path: Path, pool_size: int = 8, threads: int = 2) -> None:
        self.path = Path(path)
        self.read_model_path = read_model_path(self.path)
        self.pool_size = pool_size
        self.threads = threads
        self._lock = threading.Lock()
        self._current: _Generation | None = None
        self._unreadable: tuple[tuple[int, int], float] | None = None  # (file id, when) of a store not opened

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
            run_id = connection.execute(
                f"select run_id from {CATALOG}.serving.publications order by published_at desc limit 1"
            ).fetchone()[0]
        except (duckdb.Error, TypeError) as error:
            connection.close()
            raise StoreUnavailable(f"the serving store {self.path} cannot be opened: {error}") from error
        try:
            read_model = ReadModel(self.read_model_path)
        except ReadModelError as error:
            connection.close()
            raise StoreUnavailable(str(error)) from error
        if read_model.run_id != run_id:
            connection.close()
            read_model.close()
            raise StoreUnavailable(
                f"the profile read model {self.read_model_path} holds run {read_model.run_id} but the serving store "
                f"{self.path} holds run {run_id}; a publication was interrupted between its two renames: publish "
                "again (`cdp run`)"
            )
        generation = _Generation(file_id=file_id, connection=connection, read_model=read_model, run_id=run_id)
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
                recently_failed = (
                    self._unreadable is not None
                    and self._unreadable[0] == file_id
                    and time.monotonic() - self._unreadable[1] < RETRY_UNREADABLE_S
                )
                if current is not None and recently_failed:
                    current.in_use += 1
                    return current
                try:
                    fresh = self._open(file_id)
                except StoreUnavailable:
                    if current is None:
                        raise
                    self._unreadable = (file_id, time.monotonic())
                    # The new store is not readable together with its read model (yet): keep answering
                    # from the publication already open, whole, and try again on the next request.
                    current.in_use += 1
                    return current
                if current is not None:
                    current.retired = True
                    if current.in_use == 0:
                        _close(current)
                self._current = current = fresh
            current.in_use += 1
            return current

    def find_profile(self, namespace: str, normalized_value: str, masked: bool) -> tuple[Found | None, frozenset[str]]:
        """(the document of the profile holding the identifier, or None; the namespaces that exist), from
        the read model of the newest publication: one B-tree probe, no DuckDB query."""
        generation = self._generation()
        try:
            return generation.read_model.find(namespace, normalized_value, masked), generation.read_model.namespaces
        except ReadModelError as error:
            raise StoreUnavailable(str(error)) from error
        finally:
            self._release(generation)

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the newest publication, held for one request."""
        with self.session() as (cursor, _):
            yield cursor

    @contextmanager
    def session(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, ReadModel]]:
        """A cursor on the store and its read model, both of the newest publication, for one request."""
        generation = self._generation()
        try:
            cursor = generation.cursors.get(timeout=30)
        except queue.Empty:
            self._release(generation)
            raise StoreUnavailable("all read connections are busy; retry shortly") from None
        try:
            yield cursor, generation.read_model
        finally:
            generation.cursors.put(cursor)
            self._release(generation)

    def _release(self, generation: _Generation) -> None:
        with self._lock:
            generation.in_use -= 1
            if generation.retired and generation.in_use == 0:
                _close(generation)  # the replaced files are freed once their last request ends

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                _close(self._current)
                self._current = None


def _close(generation: _Generation) -> None:
    generation.connection.close()
    generation.read_model.close()
