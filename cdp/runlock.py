"""The run lock: one writer of the build warehouse at a time, refused at once with who holds it.

DuckDB lets one process write a file; a second writer (or a reader between two steps of a run)
fails late on "Could not set lock on file". So every command that writes the warehouse (`cdp run`,
`cdp load`, `cdp sync`, ...) and every Dagster run takes this lock first: an advisory `flock` on
`<warehouse>.run-lock`, whose content says which process holds it, since when and for what. A
second writer is refused in well under a second with that holder; the lock goes with the process
(the kernel releases a flock when its holder exits or is killed, so a crash never leaves it stale).

The lock is re-entrant within a process: `cdp run` holds it and the Dagster run it executes in
process takes it again without blocking itself.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cdp.warehouse import WarehouseError

LOCK_SUFFIX = ".run-lock"


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    started_at: str | None
    command: str | None
    host: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "another process (it has not written its name yet)"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"{self.command or 'a run'} (pid {self.pid}{where}, started {self.started_at or '?'} UTC)"


class RunLockHeld(WarehouseError):
    """Another process writes the warehouse now."""

    exit_code = 3  # distinct from a bad input (2): "busy, try again later"

    def __init__(self, warehouse: Path, holder: LockHolder, wanted: str) -> None:
        self.warehouse, self.holder, self.wanted = warehouse, holder, wanted
        super().__init__(
            f"{wanted}: the warehouse {warehouse} is in use by {holder.describe()}; "
            "wait for it to finish (BI tools and `cdp serve` read the serving store meanwhile), then try again",
            warehouse,
        )


def lock_path(warehouse: Path | str) -> Path:
    warehouse = Path(warehouse)
    return warehouse.with_name(warehouse.name + LOCK_SUFFIX)


def read_holder(warehouse: Path | str) -> LockHolder:
    """Who holds the lock, as they wrote it (retried briefly: a holder writes just after locking)."""
    path = lock_path(warehouse)
    for _ in range(20):
        try:
            data = json.loads(path.read_text() or "null")
        except (FileNotFoundError, json.JSONDecodeError):
            data = None
        if data:
            return LockHolder(data.get("pid"), data.get("started_at"), data.get("command"), data.get("host"))
        time.sleep(0.01)
    return LockHolder(None, None, None, None)


@dataclass
class _Held:
    fd: int
    depth: int


_HELD: dict[Path, _Held] = {}


def _key(warehouse: Path | str) -> Path:
    return Path(warehouse).resolve()


def held_here(warehouse: Path | str) -> bool:
    return _key(warehouse) in _HELD


def acquire(warehouse: Path | str, command: str) -> None:
    """Take the lock or raise RunLockHeld at once (no waiting: a run takes minutes)."""
    key = _key(warehouse)
    if key in _HELD:
        _HELD[key].depth += 1
        return
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 4:
                os.close(fd)
                raise RunLockHeld(key, read_holder(key), command) from None
            time.sleep(0.01)  # a reader's probe (current_holder) holds it for microseconds
    holder = {
        "pid": os.getpid(),
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "command": command,
        "host": socket.gethostname(),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _HELD[key] = _Held(fd, 1)


def release(warehouse: Path | str) -> None:
    key = _key(warehouse)
    held = _HELD.get(key)
    if held is None:
        return
    held.depth -= 1
    if held.depth:
        return
    del _HELD[key]
    os.ftruncate(held.fd, 0)  # a reader that races the release sees "no holder", not a stale one
    fcntl.flock(held.fd, fcntl.LOCK_UN)
    os.close(held.fd)


@contextmanager
def run_lock(warehouse: Path | str, command: str) -> Iterator[None]:
    acquire(warehouse, command)
    try:
        yield
    finally:
        release(warehouse)


def current_holder(warehouse: Path | str) -> LockHolder | None:
    """The holder when another process holds the lock now, else None (free, or held by this process)."""
    key = _key(warehouse)
    if key in _HELD:
        return None
    path = lock_path(key)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(key)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refuse_if_running(warehouse: Path | str, wanted: str) -> None:
    """For readers: opening the build warehouse while a run writes it would stall or fail that run."""
    holder = current_holder(warehouse)
    if holder is not None:
        raise RunLockHeld(_key(warehouse), holder, wanted)
