"""Read a landing file into text columns, keeping every row, well-formed or not.

Values stay text here; the contract decides their types (validate.py). Each row carries
`_row_number`: the physical line in the file (csv header = line 1; jsonl line) or, for parquet,
the 1-based row index. Lines that cannot be parsed come back separately, with their raw text.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data_contracts.errors import ContractError

ROW_NUMBER = "_row_number"


@dataclass(frozen=True)
class FileRows:
    rows: pl.DataFrame  # text columns as in the file, plus _row_number
    malformed: pl.DataFrame  # _row_number, _raw_line, _error
    columns: list[str]  # column names the file declares


def file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "parquet": "parquet"}.get(suffix, "")


def _malformed_frame(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={ROW_NUMBER: pl.Int64, "_raw_line": pl.String, "_error": pl.String}, orient="row")


def _decode(path: Path) -> str:
    # Non-UTF-8 bytes are replaced (U+FFFD) rather than failing the file; the row keeps its
    # position and its other values, and validation sees the replaced text.
    return path.read_bytes().decode("utf-8", errors="replace")


def read_csv(path: Path) -> FileRows:
    text = _decode(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return FileRows(pl.DataFrame(schema={ROW_NUMBER: pl.Int64}), _malformed_frame([]), [])
    header = [name.strip().lstrip("\ufeff") for name in header]
    width = len(header)
    good: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    lines: list[str] | None = None  # split only when a malformed line needs its raw text
    previous_line = reader.line_num
    for fields in reader:
        line_number = previous_line + 1
        previous_line = reader.line_num
        if not fields:  # blank line
            continue
        if len(fields) != width:
            lines = lines if lines is not None else text.splitlines()
            raw = "\n".join(lines[line_number - 1 : reader.line_num])
            malformed.append((line_number, raw, f"expected {width} fields, found {len(fields)}"))
            continue
        good.append(fields)
        numbers.append(line_number)
    columns = {name: [row[i] for row in good] for i, name in enumerate(header)}
    frame = pl.DataFrame({**columns, ROW_NUMBER: numbers}, schema={**{n: pl.String for n in header}, ROW_NUMBER: pl.Int64})
    return FileRows(frame, _malformed_frame(malformed), header)


def read_jsonl(path: Path) -> FileRows:
    records: list[dict[str, str | None]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    names: dict[str, None] = {}
    for line_number, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, found {type(record).__name__}")
        except ValueError as error:
            malformed.append((line_number, line, f"not a JSON object: {error}"))
            continue
        records.append({k: None if v is None else (v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()})
        numbers.append(line_number)
        names.update(dict.fromkeys(record))
    header = list(names)
    columns = {name: [r.get(name) for r in records] for name in header}
    frame = pl.DataFrame({**columns, ROW_NUMBER: numbers}, schema={**{n: pl.String for n in header}, ROW_NUMBER: pl.Int64})
    return FileRows(frame, _malformed_frame(malformed), header)


def read_parquet(path: Path) -> FileRows:
    frame = pl.read_parquet(path)
    header = frame.columns
    frame = frame.select(
        [pl.col(name).cast(pl.String) for name in header]
    ).with_row_index(ROW_NUMBER, offset=1).with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    return FileRows(frame, _malformed_frame([]), header)


def read_landing_file(path: Path) -> FileRows:
    fmt = file_format(path)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "parquet":
        return read_parquet(path)
    raise ContractError(
        f"{path}: unsupported file type {path.suffix!r}; expected .csv, .jsonl or .parquet. "
        "Convert the export or move it out of the landing folder."
    )
