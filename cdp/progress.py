"""Live progress of long commands on a terminal: the stage, item n of N, rows, elapsed time.

Work reports through `report(...)` (a no-op unless a command opened `live(...)`), so the library code
and the Dagster assets stay free of terminal logic. Shown with rich on stderr when stderr is a
terminal; nothing at all otherwise (a log file or CI stays clean). CDP_PROGRESS=0 turns it off,
CDP_PROGRESS=1 forces it on.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PROGRESS_ENV = "CDP_PROGRESS"


def wanted() -> bool:
    setting = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


@dataclass
class _State:
    stage: str = ""
    item: str = ""
    done: int | None = None
    total: int | None = None
    rows: int = 0
    step: int = 0
    steps: int | None = None
    started: float = field(default_factory=time.monotonic)


class _Live:
    """Two lines: the command's stage (step n of N) and the current item (model n of N, rows)."""

    def __init__(self, title: str, steps: int | None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = title
        self.state = _State(steps=steps)
        self.console = Console(stderr=True, force_terminal=True)
        self.lock = threading.Lock()
        # Lines the command prints go above the display when stdout is the same terminal.
        self.live = Live(
            self._render(),
            console=self.console,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=False,
        )

    def _render(self):
        from rich.text import Text

        s = self.state
        elapsed = int(time.monotonic() - s.started)
        clock = f"{elapsed // 60:d}:{elapsed % 60:02d}"
        steps = f"step {s.step} of {s.steps}" if s.steps else (f"step {s.step}" if s.step else "")
        head = " · ".join(part for part in (self.title, s.stage, steps, f"elapsed {clock}") if part)
        detail = s.item
        if s.done is not None:
            detail += f"  {s.done:,}" + (f" of {s.total:,}" if s.total else "")
        if s.rows:
            detail += f"  {s.rows:,} rows"
        return Text(f"{head}\n  {detail}" if detail else head)

    def update(self, **changes) -> None:
        with self.lock:
            # A new stage is drawn at once: at 4 refreshes a second, short stages would never show.
            new_stage = any(getattr(self.state, key) != changes[key] for key in ("stage", "step") if key in changes)
            for key, value in changes.items():
                setattr(self.state, key, value)
            self.live.update(self._render(), refresh=new_stage)


_ACTIVE: _Live | None = None


def report(
    stage: str,
    item: str = "",
    *,
    done: int | None = None,
    total: int | None = None,
    rows: int | None = None,
    add_rows: int | None = None,
) -> None:
    """What the work is doing now; shown only while a command's `live` display is open."""
    live = _ACTIVE
    if live is None:
        return
    changes: dict = {"stage": stage, "item": item, "done": done, "total": total}
    if live.state.stage != stage:
        changes["rows"] = 0
    if rows is not None:
        changes["rows"] = int(rows)
    elif add_rows:
        changes["rows"] = (0 if live.state.stage != stage else live.state.rows) + int(add_rows)
    live.update(**changes)


def step_started(name: str) -> None:
    """A new step of a multi-step run (a Dagster step of `cdp run`)."""
    live = _ACTIVE
    if live is not None:
        live.update(step=live.state.step + 1, stage=name, item="", done=None, total=None, rows=0)


@contextmanager
def live(title: str, steps: int | None = None) -> Iterator[bool]:
    """Show progress while the block runs (when wanted); yields whether it is shown."""
    global _ACTIVE
    if not wanted() or _ACTIVE is not None:
        yield False
        return
    display = _Live(title, steps)
    _ACTIVE = display
    display.live.start()
    try:
        yield True
    finally:
        _ACTIVE = None
        display.live.stop()
