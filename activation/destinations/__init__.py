"""Destinations behind one small interface: send a batch of row operations, say which rows failed
(transient: retried next run) or were rejected (refused, with the destination's reason). Everything
else (diff, consent, ledger, state, retries across runs) is the engine's."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, Protocol

from activation.errors import ActivationError
from activation.spec import SyncSpec

DEFAULT_BATCH_SIZE = 10_000


class RowOperation(NamedTuple):
    key: str
    idempotency_key: str  # same operation on the same row version -> same key, across reruns
    row_json: str  # the mapped row: the new version for upserts, the version last sent for deletes

    @property
    def row(self) -> dict:
        return json.loads(self.row_json)


@dataclass(frozen=True)
class Batch:
    """One batch of row operations. The engine builds it from a slice of the diff (`frame`, a pyarrow
    table with record_key, change_kind, idempotency_key, row_json and, for PostgreSQL, row_text): the
    per-row RowOperation lists are only built when a destination asks for them."""

    sync_name: str
    run_id: str
    number: int
    key_field: str  # destination field holding the record key
    frame: object = None  # pyarrow.Table, or None when the operations are given as lists
    given_upserts: list[RowOperation] | None = None
    given_deletes: list[RowOperation] | None = None

    @cached_property
    def _split(self) -> tuple[list[RowOperation], list[RowOperation]]:
        if self.frame is None:
            return list(self.given_upserts or []), list(self.given_deletes or [])
        columns = self.frame.select(["record_key", "change_kind", "idempotency_key", "row_json"]).to_pydict()
        upserts, deletes = [], []
        for key, kind, idempotency_key, row in zip(
            columns["record_key"], columns["change_kind"], columns["idempotency_key"], columns["row_json"], strict=True
        ):
            (deletes if kind == "removed" else upserts).append(RowOperation(key, idempotency_key, row))
        return upserts, deletes

    @property
    def upsert_operations(self) -> list[RowOperation]:
        return self._split[0]

    @property
    def delete_operations(self) -> list[RowOperation]:
        return self._split[1]

    @property
    def upserts(self) -> list[dict]:
        return [operation.row for operation in self.upsert_operations]

    @property
    def deletes(self) -> list[dict]:
        return [operation.row for operation in self.delete_operations]

    @property
    def operations(self) -> list[RowOperation]:
        return self.upsert_operations + self.delete_operations


@dataclass(frozen=True)
class BatchResult:
    """Every key of the batch not in failed or rejected succeeded."""

    failed: dict[str, str] = field(default_factory=dict)  # key -> error; retried on the next run
    rejected: dict[str, str] = field(default_factory=dict)  # key -> the destination's reason
    http_status: dict[str, int] = field(default_factory=dict)  # key -> last HTTP status seen for its row
    default_http_status: int | None = None  # the status of rows not in http_status (None: not HTTP)
    attempts: int = 1  # requests the batch took
    retries: int = 0  # of those, repeats of a request (429, 5xx, timeouts, rows the receiver failed)


class Destination(Protocol):
    def send(self, batch: Batch) -> BatchResult: ...

    def finish(self, held_rows: Iterable[dict]) -> list[str]:
        """Called after the run's state is committed with every row the destination now holds
        (only for destinations with `wants_held_rows = True`); returns paths of files written."""
        ...


def build_destination(spec: SyncSpec, base_dir: Path) -> Destination:
    kind = spec.destination.type
    if kind == "file":
        from activation.destinations.file import FileDestination

        return FileDestination.from_settings(spec, base_dir)
    if kind == "webhook":
        from activation.destinations.webhook import WebhookDestination

        return WebhookDestination.from_settings(spec, base_dir)
    if kind == "postgres":
        from activation.destinations.postgres import PostgresDestination

        return PostgresDestination.from_settings(spec)
    if kind == "ad_audience":
        from activation.destinations.ad_audience import AdAudienceDestination

        return AdAudienceDestination.from_settings(spec)
    if kind == "email":
        from activation.destinations.email_tool import EmailToolDestination

        return EmailToolDestination.from_settings(spec)
    raise ActivationError(f"sync {spec.name}: no destination of type {kind!r}.")
