"""Destinations behind one small interface: send a batch of upserts and deletes, report which
keys failed. Everything else (diff, ledger, state, retries across runs) is the engine's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from activation.errors import ActivationError
from activation.spec import SyncSpec


@dataclass(frozen=True)
class Batch:
    sync_name: str
    run_id: str
    number: int
    key_field: str  # destination field holding the record key
    upserts: list[dict]  # mapped rows to add or update
    deletes: list[dict]  # mapped rows (as last sent) to remove


@dataclass(frozen=True)
class BatchResult:
    failed: dict[str, str] = field(default_factory=dict)  # record key -> error; all other keys succeeded


class Destination(Protocol):
    def send(self, batch: Batch) -> BatchResult: ...

    def finish(self, held_rows: Iterable[dict]) -> list[str]:
        """Called after the run's state is committed with every row the destination now holds;
        returns paths of files written, if any."""
        ...


def build_destination(spec: SyncSpec, base_dir: Path) -> Destination:
    if spec.destination.type == "file":
        from activation.destinations.file import FileDestination

        return FileDestination.from_settings(spec, base_dir)
    raise ActivationError(f"sync {spec.name}: no destination of type {spec.destination.type!r}.")
