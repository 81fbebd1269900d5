"""Read a landing file into text columns, keeping every row, well-formed or not.

Values stay text here; the contract decides their types (validate.py). Each row carries
`_row_number`: the physical line in the file where the row starts (csv header = line 1; jsonl line),
for a JSON array the element's position, for parquet the 1-based row index. Rows that cannot be
parsed come back separately, with their raw text. A file whose rows cannot be read at all (corrupt,
empty parquet, another format than its name says) raises UnreadableFile with the reason; the loader
moves it aside.

Rows read are the rows the file holds: a byte-order mark (UTF-8, UTF-16, UTF-32) is honoured, an
unbalanced CSV quote costs its own line only, and a JSON array counts its elements.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from data_contracts.errors import ContractError, UnreadableFile

ROW_NUMBER = "_row_number"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)


@dataclass(frozen=True)
class FileRows:
    rows: pl.DataFrame  # text columns as in the file, plus _row_number
    malformed: pl.DataFrame  # _row_number, _raw_line, _error
    columns: list[str]  # column names the file declares
    # Parquet columns of nested values (list, struct), by name -> type: kept as JSON text in `rows`.
    nested: dict[str, str] = field(default_factory=dict)


def file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "parquet": "parquet"}.get(suffix, "")


def _malformed_frame(rows: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={ROW_NUMBER: pl.Int64, "_raw_line": pl.String, "_error": pl.String}, orient="row")


def _empty() -> FileRows:
    return FileRows(pl.DataFrame(schema={ROW_NUMBER: pl.Int64}), _malformed_frame([]), [])


def _bom_encoding(raw: bytes) -> str | None:
    return next((encoding for bom, encoding in _BOMS if raw.startswith(bom)), None)


def _decode(raw: bytes) -> str:
    """The file's text: UTF-8 unless a byte-order mark says UTF-16 or UTF-32 (the mark itself dropped).
    Invalid bytes are replaced (U+FFFD) rather than failing the file; the row keeps its position and
    its other values, and validation quarantines it as invalid_encoding."""
    return raw.decode(_bom_encoding(raw) or "utf-8", errors="replace")


def _first_line(text: str, limit: int = 60) -> str:
    line = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[:limit] + "..."


def _looks_like_csv(line: str) -> bool:
    return not line.startswith(("{", "[")) and any(separator in line for separator in (",", ";", "\t", "|"))


def read_csv(path: Path) -> FileRows:
    raw = path.read_bytes()
    if _bom_encoding(raw) in ("utf-16", "utf-32"):
        raw = _decode(raw).encode("utf-8")
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
    text = _decode(raw)
    if '"' not in text and "\r" not in text:
        return _read_unquoted_csv(text)
    return _read_quoted_csv(text)


def _read_unquoted_csv(text: str) -> FileRows:
    return _read_unquoted_lines(pl.Series("line", text.split("\n")))


def _read_unquoted_lines(lines: pl.Series) -> FileRows:
    """Fast path for CSV without quoting (most exports): one line is one row, so fields are counted
    and split with vectorized string operations, and a line with the wrong field count is malformed."""
    if lines.len() == 0 or not (lines[0] or "").strip():
        return _empty()
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
    """Quote-aware path (Python's csv module): quoted separators and line breaks inside fields.

    A record that spans several lines and still has the wrong number of fields is a quote that never
    closed: only its first line is malformed, and reading starts again on the next line, so one stray
    quote does not fold the rest of the file into a single bad row."""
    lines = io.StringIO(text, newline="").readlines()  # split at \n, \r\n and \r only, as csv does
    if not lines:
        return _empty()
    header = [name.strip().lstrip("\ufeff") for name in next(csv.reader(lines[:1]), [])]
    if not header:
        return _empty()
    width = len(header)
    good: list[list[str]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    position = 1  # index of the line the reader starts from
    while position < len(lines):
        start = position
        reader = csv.reader(lines[i] for i in range(start, len(lines)))
        consumed = 0
        position = len(lines)
        for fields in reader:
            first = start + consumed  # index of the record's first line
            span = reader.line_num - consumed
            consumed = reader.line_num
            if not fields:  # blank line
                continue
            if len(fields) == width:
                good.append(fields)
                numbers.append(first + 1)
                continue
            if span == 1:
                malformed.append(
                    (first + 1, lines[first].rstrip("\r\n"), f"expected {width} fields, found {len(fields)}")
                )
                continue
            malformed.append(
                (
                    first + 1,
                    lines[first].rstrip("\r\n"),
                    f"a quote opened on this line does not close on it (read on, the record would have "
                    f"{len(fields)} fields over {span} lines; expected {width} fields)",
                )
            )
            position = first + 1
            break
    columns = {name: [row[i] for row in good] for i, name in enumerate(header)}
    frame = pl.DataFrame(
        {**columns, ROW_NUMBER: numbers}, schema={**{n: pl.String for n in header}, ROW_NUMBER: pl.Int64}
    )
    return FileRows(frame, _malformed_frame(malformed), header)


def read_jsonl(path: Path) -> FileRows:
    """JSON Lines (one object per line); also a JSON array of objects, or a single JSON object."""
    text = _decode(path.read_bytes())
    if text.lstrip().startswith("["):
        return _read_json_array(text)
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
    read = _read_jsonl_lines(text)
    if read.rows.height == 0 and read.malformed.height:
        whole = _whole_json_object(text)
        if whole is not None:
            return whole
        first = _first_line(text)
        hint = (
            f"it looks like CSV (first line: {first!r}): give it a .csv name"
            if _looks_like_csv(first)
            else f"no line of it is a JSON object (first line: {first!r})"
        )
        raise UnreadableFile(path, f"not a JSON Lines file: {hint}.")
    return read


def _whole_json_object(text: str) -> FileRows | None:
    """A file holding one pretty-printed JSON object is one row."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    return _records_frame([_record_text(record)], [1], [])


def _json_text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A JSON value as the text the line-by-line reader would give (json.dumps of non-strings)."""
    if dtype == pl.Boolean:
        return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false")).otherwise(None)
    return column.cast(pl.String)


def _record_text(record: dict) -> dict[str, str | None]:
    return {k: None if v is None else (v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()}


def _records_frame(
    records: list[dict[str, str | None]], numbers: list[int], malformed: list[tuple[int, str, str]]
) -> FileRows:
    header = list(dict.fromkeys(name for record in records for name in record))
    columns = {name: [r.get(name) for r in records] for name in header}
    frame = pl.DataFrame(
        {**columns, ROW_NUMBER: numbers}, schema={**{n: pl.String for n in header}, ROW_NUMBER: pl.Int64}
    )
    return FileRows(frame, _malformed_frame(malformed), header)


def _read_jsonl_lines(text: str) -> FileRows:
    records: list[dict[str, str | None]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    # Split at line feeds only: a JSON string may hold other line separators (U+2028, \x1c).
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, found {type(record).__name__}")
        except ValueError as error:
            malformed.append((line_number, line, f"not a JSON object: {error}"))
            continue
        records.append(_record_text(record))
        numbers.append(line_number)
    return _records_frame(records, numbers, malformed)


def _read_json_array(text: str) -> FileRows:
    """A JSON array of objects: one row per element, numbered by position. An element that is not an
    object is malformed; a syntax error (a truncated file) makes the rest of the text one malformed
    row, after the complete elements before it."""
    decoder = json.JSONDecoder()
    records: list[dict[str, str | None]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    index, length, position = text.index("[") + 1, len(text), 0

    def skip_space(i: int) -> int:
        while i < length and text[i] in " \t\r\n":
            i += 1
        return i

    index = skip_space(index)
    if index < length and text[index] == "]":
        return _records_frame([], [], [])
    while index < length:
        position += 1
        try:
            value, end = decoder.raw_decode(text, index)
        except ValueError as error:
            malformed.append((position, text[index:], f"not a complete JSON value: {error}"))
            break
        if isinstance(value, dict):
            records.append(_record_text(value))
            numbers.append(position)
        else:
            malformed.append((position, text[index:end], f"expected a JSON object, found {type(value).__name__}"))
        index = skip_space(end)
        if index < length and text[index] == ",":
            index = skip_space(index + 1)
            continue
        if index < length and text[index] == "]" and not text[index + 1 :].strip():
            break
        position += 1
        tail = text[index:]
        malformed.append(
            (position, tail, "expected ',' or the closing ']' of the array" if tail else "the array does not close")
        )
        break
    return _records_frame(records, numbers, malformed)


def _sniff_parquet(path: Path, error: BaseException) -> str:
    head = path.read_bytes()[:200]
    if head.startswith(b"PAR1"):
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"not a readable Parquet file: truncated or corrupt ({detail}). Deliver the export again"
    text = head.decode("utf-8", errors="replace")
    first = _first_line(text)
    if first.startswith(("{", "[")):
        return f"not a Parquet file: it looks like JSON (it starts with {first!r}); give it a .jsonl name"
    if _looks_like_csv(first):
        return f"not a Parquet file: it looks like CSV (first line: {first!r}); give it a .csv name"
    return f"not a readable Parquet file: it does not start with the Parquet signature 'PAR1' (found {head[:8]!r})"


def _nested_json(name: str) -> pl.Expr:
    """A list or struct column as JSON text per row (null stays null)."""
    encoded = pl.struct(pl.col(name).alias("v")).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")
    return pl.when(pl.col(name).is_null()).then(None).otherwise(encoded).alias(name)


def read_parquet(path: Path) -> FileRows:
    if path.stat().st_size == 0:
        raise UnreadableFile(
            path, "the file is empty (0 bytes); a Parquet file has a header and a footer. Deliver the export again."
        )
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, pl.exceptions.PanicException) as error:
        raise UnreadableFile(path, _sniff_parquet(path, error) + ".") from error
    header = frame.columns
    nested = {name: str(dtype) for name, dtype in frame.schema.items() if dtype.is_nested()}
    binary = [name for name, dtype in frame.schema.items() if dtype == pl.Binary]
    try:
        text = frame.select(
            [
                _nested_json(name)
                if name in nested
                else (pl.col(name) if name in binary else pl.col(name).cast(pl.String))
                for name in header
            ]
        )
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as error:
        raise UnreadableFile(path, f"a column cannot be read as text ({error}). Export plain column types.") from error
    if binary:
        # Bytes that are not UTF-8 are replaced (U+FFFD) and quarantined per row, as in CSV files.
        text = text.with_columns(
            pl.Series(
                name, [v.decode("utf-8", errors="replace") if v is not None else None for v in frame[name]], pl.String
            )
            for name in binary
        )
    text = text.with_row_index(ROW_NUMBER, offset=1).with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    return FileRows(text, _malformed_frame([]), header, nested)


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
