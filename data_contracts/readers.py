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
    raw = path.read_bytes()
    if raw.strip() and b'"' not in raw and b"\r" not in raw:
        try:
            # Lines read natively (no quoting, so a line is a row); invalid UTF-8 takes the decoding path.
            lines = pl.read_csv(
                raw,
                has_header=False,
                separator="\x1f",
                quote_char=None,
                new_columns=["line"],
                infer_schema=False,
                raise_if_empty=False,
            )["line"].fill_null("")
        except (pl.exceptions.ComputeError, UnicodeDecodeError):
            lines = None
        if lines is not None and lines.str.count_matches("\x1f", literal=True).sum() == 0:
            return _read_unquoted_lines(lines)
    text = raw.decode("utf-8", errors="replace")
    if '"' not in text and "\r" not in text:
        return _read_unquoted_csv(text)
    return _read_quoted_csv(text)


def _read_unquoted_csv(text: str) -> FileRows:
    return _read_unquoted_lines(pl.Series("line", text.split("\n")))


def _read_unquoted_lines(lines: pl.Series) -> FileRows:
    """Fast path for CSV without quoting (most exports): one line is one row, so fields are counted
    and split with vectorized string operations, and a line with the wrong field count is malformed."""
    if lines.len() == 0 or not (lines[0] or "").strip():
        return FileRows(pl.DataFrame(schema={ROW_NUMBER: pl.Int64}), _malformed_frame([]), [])
    header = [name.strip().lstrip("\ufeff") for name in lines[0].split(",")]
    width = len(header)
    body = (
        pl.DataFrame({"line": lines})
        .with_row_index(ROW_NUMBER, offset=1)
        .slice(1)
        .filter(pl.col("line").str.len_chars() > 0)
        .with_columns(
            (pl.col("line").str.count_matches(",", literal=True) + 1).alias("_fields"),
            pl.col(ROW_NUMBER).cast(pl.Int64),
        )
    )
    good = body.filter(pl.col("_fields") == width)
    bad = body.filter(pl.col("_fields") != width)
    frame = good.select(
        pl.col("line").str.split_exact(",", width - 1).struct.rename_fields(header).alias("_row"), pl.col(ROW_NUMBER)
    ).unnest("_row")
    malformed = _malformed_frame(
        [
            (number, line, f"expected {width} fields, found {fields}")
            for number, line, fields in bad.select(ROW_NUMBER, "line", "_fields").iter_rows()
        ]
    )
    return FileRows(frame, malformed, header)


def _read_quoted_csv(text: str) -> FileRows:
    """Quote-aware path (Python's csv module): quoted separators and line breaks inside fields."""
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
    frame = pl.DataFrame(
        {**columns, ROW_NUMBER: numbers}, schema={**{n: pl.String for n in header}, ROW_NUMBER: pl.Int64}
    )
    return FileRows(frame, _malformed_frame(malformed), header)


def read_jsonl(path: Path) -> FileRows:
    text = _decode(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and all(lines):  # no blank lines: polars' rows are the file's lines, in order
        try:
            frame = pl.read_ndjson(io.StringIO(text), infer_schema_length=None)
        except Exception:  # a malformed line: the line-by-line path finds and keeps it
            frame = None
        if (
            frame is not None
            and frame.height == len(lines)
            and all(dtype.is_numeric() or dtype in (pl.String, pl.Null, pl.Boolean) for dtype in frame.dtypes)
        ):
            header = frame.columns
            frame = frame.select(
                [_json_text(pl.col(name), frame.schema[name]).alias(name) for name in header]
            ).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER))
            return FileRows(frame, _malformed_frame([]), header)
    return _read_jsonl_lines(text)


def _json_text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A JSON value as the text the line-by-line reader would give (json.dumps of non-strings)."""
    if dtype == pl.Boolean:
        return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false")).otherwise(None)
    return column.cast(pl.String)


def _read_jsonl_lines(text: str) -> FileRows:
    records: list[dict[str, str | None]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    names: dict[str, None] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, found {type(record).__name__}")
        except ValueError as error:
            malformed.append((line_number, line, f"not a JSON object: {error}"))
            continue
        records.append(
            {k: None if v is None else (v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()}
        )
        numbers.append(line_number)
        names.update(dict.fromkeys(record))
    header = list(names)
    columns = {name: [r.get(name) for r in records] for name in header}
    frame = pl.DataFrame(
        {**columns, ROW_NUMBER: numbers}, schema={**{n: pl.String for n in header}, ROW_NUMBER: pl.Int64}
    )
    return FileRows(frame, _malformed_frame(malformed), header)


def read_parquet(path: Path) -> FileRows:
    frame = pl.read_parquet(path)
    header = frame.columns
    frame = (
        frame.select([pl.col(name).cast(pl.String) for name in header])
        .with_row_index(ROW_NUMBER, offset=1)
        .with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    )
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
