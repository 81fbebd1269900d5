"""Files as a destination (csv, jsonl, parquet), every file written atomically (temp file in the same
directory, then rename) so readers never see half a file. Incremental (mirror/upsert): one change file
per batch with an _op column, plus the full current audience. Snapshot: only full files, one per run
and the current one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from activation.destinations import Batch, BatchResult
from activation.spec import SyncSpec

OPERATION = "_op"


def write_atomically(frame: pl.DataFrame, path: Path, file_format: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        if file_format == "csv":
            frame.write_csv(temp_name)
        elif file_format == "jsonl":
            frame.write_ndjson(temp_name)
        else:
            frame.write_parquet(temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


@dataclass
class FileDestination:
    directory: Path
    file_format: str
    sync_name: str
    fields: list[str]
    snapshot: bool = False
    run_id: str | None = None
    wants_held_rows = True

    @classmethod
    def from_settings(cls, spec: SyncSpec, base_dir: Path) -> FileDestination:
        directory = Path(spec.destination.settings["path"])
        return cls(
            directory=directory if directory.is_absolute() else Path(base_dir) / directory,
            file_format=spec.destination.settings["format"],
            sync_name=spec.name,
            fields=[*spec.fields, *spec.identifiers],
            snapshot=spec.mode == "snapshot",
        )

    def _frame(self, rows: list[dict], operation: str | None = None) -> pl.DataFrame:
        frame = (
            pl.DataFrame(rows, schema={name: pl.String for name in self.fields}, strict=False)
            if rows
            else pl.DataFrame(schema={name: pl.String for name in self.fields})
        )
        return (
            frame.with_columns(pl.lit(operation).alias(OPERATION)).select([OPERATION, *self.fields])
            if operation
            else frame
        )

    def begin(self, run_id: str) -> None:
        self.run_id = run_id

    def send(self, batch: Batch) -> BatchResult:
        if self.snapshot:  # the whole audience is written once the run's state is committed
            return BatchResult()
        changes = pl.concat(
            [
                self._frame([_text(r) for r in batch.upserts], "upsert"),
                self._frame([_text(r) for r in batch.deletes], "delete"),
            ]
        )
        if changes.height:
            path = self.directory / f"{self.sync_name}__{batch.run_id}__{batch.number:05d}.{self.file_format}"
            write_atomically(changes, path, self.file_format)
        return BatchResult()

    def finish(self, held_rows: Iterable[dict]) -> list[str]:
        current = self._frame([_text(r) for r in held_rows])
        paths = [self.directory / f"{self.sync_name}__current.{self.file_format}"]
        if self.snapshot and self.run_id:
            paths.insert(0, self.directory / f"{self.sync_name}__snapshot__{self.run_id}.{self.file_format}")
        for path in paths:
            write_atomically(current, path, self.file_format)
        return [str(path) for path in paths]

    def erase(self, record_keys: set[str], values: set[str]) -> int:
        """Privacy erasure: rewrite every file this sync wrote (change files and the current audience)
        without the rows of the given keys or holding one of the given values. Returns rows removed."""
        lowered = list({v.lower() for v in values | record_keys})
        removed = 0
        for path in sorted(self.directory.glob(f"{self.sync_name}__*.{self.file_format}")):
            frame = (
                pl.read_csv(path, infer_schema=False)
                if self.file_format == "csv"
                else pl.read_ndjson(path, infer_schema_length=None)
                if self.file_format == "jsonl"
                else pl.read_parquet(path)
            )
            if frame.height == 0:
                continue
            text = frame.select(pl.all().cast(pl.String))
            hit = pl.any_horizontal([pl.col(c).str.to_lowercase().is_in(lowered) for c in text.columns])
            keep = ~text.select(hit.fill_null(False)).to_series()
            if keep.all():
                continue
            removed += int((~keep).sum())
            write_atomically(frame.filter(keep), path, self.file_format)
        return removed


def _text(row: dict) -> dict:
    """File values as text, so every run writes the same schema whatever the values."""
    return {k: None if v is None else str(v) for k, v in row.items()}
