"""The batch run at lower CPU and I/O priority than the profile API on the same machine.

A pipeline run keeps both cores busy for minutes (DuckDB, dbt, the models); the API needs a few
milliseconds of CPU now and then, but needs them at once. Linux schedules by weight: a run at nice 10
weighs about a tenth of the API at nice 0, so the API's requests get a core as soon as they are ready,
and the run still gets every cycle the API leaves. The I/O scheduler's classes do the same for disk
reads. Every run lowers its own priority as it starts (orchestration's warehouse resource calls
`lower_run_priority`), `cdp run` and Dagster-launched runs alike; `cdp bench-serve --during-run`
measures the effect.

CDP_RUN_PRIORITY chooses:
- `low` (default): nice 10, I/O best-effort level 7 (the lowest level of the normal class);
- `idle`: nice 19, I/O idle class (disk only when nobody else wants it; a busy disk can stall the run);
- `normal`: unchanged (e.g. a machine that runs nothing else).
Lowering needs no privilege; raising it back would, so a process stays lowered once lowered.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass

from cdp.errors import CdpError

PRIORITY_ENV = "CDP_RUN_PRIORITY"
DEFAULT_PRIORITY = "low"
IOPRIO_CLASS_BEST_EFFORT, IOPRIO_CLASS_IDLE = 2, 3
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}


class RunPriorityError(CdpError):
    """CDP_RUN_PRIORITY names no known priority."""


@dataclass(frozen=True)
class RunPriority:
    name: str
    nice: int | None  # None: leave as is
    io_class: int | None
    io_level: int = 0

    def describe(self) -> str:
        if self.nice is None:
            return "normal priority"
        io = {IOPRIO_CLASS_BEST_EFFORT: f"best-effort {self.io_level}", IOPRIO_CLASS_IDLE: "idle"}[self.io_class]
        return f"nice {self.nice}, I/O {io}"


PRIORITIES = {
    "low": RunPriority("low", nice=10, io_class=IOPRIO_CLASS_BEST_EFFORT, io_level=7),
    "idle": RunPriority("idle", nice=19, io_class=IOPRIO_CLASS_IDLE),
    "normal": RunPriority("normal", nice=None, io_class=None),
}


def configured_priority() -> RunPriority:
    name = (os.environ.get(PRIORITY_ENV) or DEFAULT_PRIORITY).strip().lower()
    if name not in PRIORITIES:
        raise RunPriorityError(
            f"{PRIORITY_ENV} is {name!r}; expected one of {', '.join(PRIORITIES)} "
            f"(default {DEFAULT_PRIORITY}: the run yields the CPU and disk to the profile API)"
        )
    return PRIORITIES[name]


def _threads() -> list[int]:
    """Every thread of this process: on Linux, nice and I/O priority are per thread, and threads
    started earlier (DuckDB's pool, for one) keep theirs."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_io_priority(tid: int, io_class: int, level: int) -> bool:
    number = SYS_IOPRIO_SET.get(platform.machine())
    if number is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(number, IOPRIO_WHO_PROCESS, tid, (io_class << IOPRIO_CLASS_SHIFT) | level) == 0


def io_priority(tid: int = 0) -> tuple[int, int] | None:
    """(class, level) of a thread's I/O priority, None where it cannot be read."""
    number = SYS_IOPRIO_GET.get(platform.machine())
    if number is None:
        return None
    value = ctypes.CDLL(None, use_errno=True).syscall(number, IOPRIO_WHO_PROCESS, tid)
    return None if value < 0 else (value >> IOPRIO_CLASS_SHIFT, value & ((1 << IOPRIO_CLASS_SHIFT) - 1))


def lower_run_priority(priority: RunPriority | None = None) -> RunPriority:
    """Lower this process (every thread; children inherit it) to the configured run priority. Only
    lowers: a process already at a lower priority keeps it. Returns what was applied."""
    priority = priority or configured_priority()
    if priority.nice is None:
        return priority
    for tid in _threads():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < priority.nice:
                os.setpriority(os.PRIO_PROCESS, tid, priority.nice)
            current = io_priority(tid)
            if current is None or current[0] != IOPRIO_CLASS_IDLE:
                _set_io_priority(tid, priority.io_class, priority.io_level)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile
    return priority


def process_priority(pid: int) -> dict[str, object]:
    """Nice and I/O priority of a process's main thread (for reports and tests)."""
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    io = io_priority(pid)
    return {"nice": nice, "io_class": io[0] if io else None, "io_level": io[1] if io else None}
