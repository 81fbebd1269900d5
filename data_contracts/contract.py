"""Data contracts: one YAML file per source table, validated when loaded."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from data_contracts.errors import ContractError

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"

COLUMN_TYPES = ("string", "integer", "decimal", "float", "boolean", "date", "timestamp")
FILE_FORMATS = ("csv", "jsonl", "parquet")
PII_CLASSES = ("direct", "indirect", "none")
PARTIES = ("first", "second", "third")
# Adobe data-usage labels: contract (C1..C12), identity (I1 direct, I2 indirect), sensitive (S1, S2).
STANDARD_LABELS = tuple(f"C{i}" for i in range(1, 13)) + ("I1", "I2", "S1", "S2")
CUSTOM_LABEL_PREFIX = "custom:"

TABLE_KEYS = (
    "source",
    "table",
    "description",
    "format",
    "owner",
    "party",
    "primary_key",
    "event_time",
    "freshness",
    "records",
    "max_reject_rate",
    "defaults",
    "columns",
)
COLUMN_KEYS = (
    "type",
    "required",
    "unique",
    "description",
    "allowed_values",
    "min",
    "max",
    "max_length",
    "format",
    "pattern",
    "pii",
    "labels",
    "on_invalid",
    "allow_line_breaks",
)
# Named formats of string columns (a custom regular expression goes in `pattern`).
STRING_FORMATS = ("email", "phone", "url", "country_code", "currency_code", "iso8601")
# versioned: a later file may carry a newer version of a record (same key); immutable: a key seen
# before (events) is a duplicate, quarantined.
RECORD_KINDS = ("versioned", "immutable")
FRESHNESS_KEYS = ("max_age_hours",)
# What happens to a row with an invalid value in the column: the whole row goes to quarantine (default),
# or the row is kept with that value nulled and the value recorded in quarantine with its reason.
ON_INVALID = ("quarantine_row", "null_value")
# Limits every string column gets unless the contract's `defaults` or the column say otherwise: no value
# longer than this many characters, and no control characters (line breaks and tabs only where allowed).
DEFAULT_MAX_LENGTH = 4096
DEFAULTS_KEYS = ("max_length", "allow_line_breaks")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    description: str = ""
    allowed_values: tuple[str, ...] | None = None
    pii: str = "none"
    labels: tuple[str, ...] = ()
    # Date/timestamp columns: a strptime pattern such as "%Y%m%d". String columns: one of STRING_FORMATS.
    format: str | None = None
    pattern: str | None = None  # custom regular expression a string value must fully match
    unique: bool = False
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    on_invalid: str = "quarantine_row"
    allow_line_breaks: bool = False  # string columns: tabs and line breaks inside a value are allowed


@dataclass(frozen=True)
class Contract:
    source: str
    table: str
    path: Path
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    format: str | None = None
    description: str = ""
    owner: str = ""
    party: str = "first"
    event_time: str | None = None
    max_age_hours: float | None = None  # freshness: the newest event_time may not be older than this
    records: str = "versioned"
    max_reject_rate: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.source}__{self.table}"

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.required]


def _line_of(node: yaml.Node | None) -> str:
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


def _key_nodes(mapping_node: yaml.Node) -> dict[str, yaml.Node]:
    if not isinstance(mapping_node, yaml.MappingNode):
        return {}
    return {key.value: key for key, _ in mapping_node.value}


def _check_choice(path: Path, where: str, value: Any, allowed: tuple[str, ...], node: yaml.Node | None) -> None:
    if value not in allowed:
        raise ContractError(
            f"{path}{_line_of(node)}: {where} is {value!r}; expected one of {', '.join(allowed)}. "
            "Fix the contract file."
        )


def _defaults(path: Path, spec: Any, node: yaml.Node | None) -> dict[str, Any]:
    """The contract's `defaults` (limits of every string column), over the built-in ones."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ContractError(
            f"{path}{_line_of(node)}: defaults must be a mapping like {{max_length: 1000}}; found {spec!r}."
        )
    for key in spec:
        if key not in DEFAULTS_KEYS:
            raise ContractError(
                f"{path}{_line_of(node)}: defaults has unknown key {key!r}; allowed keys are {', '.join(DEFAULTS_KEYS)}."
            )
    max_length = spec.get("max_length", DEFAULT_MAX_LENGTH)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ContractError(
            f"{path}{_line_of(node)}: defaults max_length must be a positive integer; found {max_length!r}."
        )
    allow_line_breaks = spec.get("allow_line_breaks", False)
    if not isinstance(allow_line_breaks, bool):
        raise ContractError(
            f"{path}{_line_of(node)}: defaults allow_line_breaks must be true or false; found {allow_line_breaks!r}."
        )
    return {"max_length": max_length, "allow_line_breaks": allow_line_breaks}


def load_contract(path: str | Path) -> Contract:
    """Read and validate one contract file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContractError(f"{path}: not valid YAML ({error}). Fix the syntax.") from error
    if not isinstance(data, dict):
        raise ContractError(
            f"{path}: expected a mapping with keys {', '.join(TABLE_KEYS)}; found {type(data).__name__}."
        )
    table_nodes = _key_nodes(root)
    for key in data:
        if key not in TABLE_KEYS:
            raise ContractError(
                f"{path}{_line_of(table_nodes.get(key))}: unknown key {key!r}; allowed keys are "
                f"{', '.join(TABLE_KEYS)}. Remove or rename it."
            )
    for key in ("source", "table", "primary_key", "columns"):
        if key not in data:
            raise ContractError(f"{path}: missing required key {key!r}. Add it (see docs/sources.md for examples).")
    if data.get("format") is not None:
        _check_choice(path, "format", data["format"], FILE_FORMATS, table_nodes.get("format"))
    _check_choice(path, "party", data.get("party", "first"), PARTIES, table_nodes.get("party"))

    defaults = _defaults(path, data.get("defaults"), table_nodes.get("defaults"))
    primary_key = tuple(data["primary_key"]) if isinstance(data["primary_key"], list) else (data["primary_key"],)
    columns_node = next((v for k, v in root.value if k.value == "columns"), None)
    column_nodes = _key_nodes(columns_node) if columns_node is not None else {}
    columns: dict[str, Column] = {}
    for name, spec in (data["columns"] or {}).items():
        node = column_nodes.get(name)
        where = f"column {name!r}"
        if not isinstance(spec, dict):
            raise ContractError(
                f"{path}{_line_of(node)}: {where} must be a mapping like {{type: string}}; found {spec!r}."
            )
        for key in spec:
            if key not in COLUMN_KEYS:
                raise ContractError(
                    f"{path}{_line_of(node)}: {where} has unknown key {key!r}; allowed keys are "
                    f"{', '.join(COLUMN_KEYS)}."
                )
        _check_choice(path, f"{where} type", spec.get("type"), COLUMN_TYPES, node)
        _check_choice(path, f"{where} pii", spec.get("pii", "none"), PII_CLASSES, node)
        labels = tuple(spec.get("labels") or ())
        for label in labels:
            if label not in STANDARD_LABELS and not str(label).startswith(CUSTOM_LABEL_PREFIX):
                raise ContractError(
                    f"{path}{_line_of(node)}: {where} has unknown data-usage label {label!r}; expected one of "
                    f"{', '.join(STANDARD_LABELS)} or a custom label written '{CUSTOM_LABEL_PREFIX}<name>'."
                )
        if "format" in spec and spec["type"] == "string":
            _check_choice(path, f"{where} format", spec["format"], STRING_FORMATS, node)
        elif "format" in spec and spec["type"] not in ("date", "timestamp"):
            raise ContractError(
                f"{path}{_line_of(node)}: {where} has a format but is of type {spec['type']!r}; format applies to "
                f"string columns ({', '.join(STRING_FORMATS)}) and date/timestamp columns (a strptime pattern "
                "such as '%Y%m%d')."
            )
        if "pattern" in spec:
            try:
                re.compile(spec["pattern"])
                # The row rules run it in polars (Rust's regex syntax), the suite in Python: both must take it.
                pl.Series([""]).str.contains(f"^(?:{spec['pattern']})$")
            except (re.error, pl.exceptions.PolarsError) as error:
                raise ContractError(
                    f"{path}{_line_of(node)}: {where} pattern {spec['pattern']!r} is not a regular expression "
                    f"both Python and polars accept ({str(error).strip().splitlines()[0]}). Avoid look-around and "
                    "back-references."
                ) from error
        for bound in ("min", "max"):
            if bound in spec and (
                spec["type"] not in ("integer", "decimal", "float") or not isinstance(spec[bound], (int, float))
            ):
                raise ContractError(
                    f"{path}{_line_of(node)}: {where} {bound} must be a number on a numeric column; "
                    f"found {spec[bound]!r} on type {spec['type']!r}."
                )
        if "max_length" in spec and (not isinstance(spec["max_length"], int) or spec["max_length"] < 1):
            raise ContractError(
                f"{path}{_line_of(node)}: {where} max_length must be a positive integer; found {spec['max_length']!r}."
            )
        on_invalid = spec.get("on_invalid", "quarantine_row")
        _check_choice(path, f"{where} on_invalid", on_invalid, ON_INVALID, node)
        if on_invalid == "null_value" and (spec.get("required") or name in primary_key):
            raise ContractError(
                f"{path}{_line_of(node)}: {where} has on_invalid: null_value but is required or part of the "
                "primary key, so a nulled value would make the row invalid anyway. Use quarantine_row (the "
                "default) or make the column optional."
            )
        if "allow_line_breaks" in spec and (
            spec["type"] != "string" or not isinstance(spec["allow_line_breaks"], bool)
        ):
            raise ContractError(
                f"{path}{_line_of(node)}: {where} allow_line_breaks must be true or false on a string column; "
                f"found {spec['allow_line_breaks']!r} on type {spec['type']!r}."
            )
        max_length = spec.get("max_length")
        if max_length is None and spec["type"] == "string":
            max_length = defaults["max_length"]
        allowed = spec.get("allowed_values")
        columns[name] = Column(
            name=name,
            type=spec["type"],
            required=bool(spec.get("required", False)),
            description=spec.get("description", ""),
            allowed_values=tuple(str(v) for v in allowed) if allowed is not None else None,
            pii=spec.get("pii", "none"),
            labels=labels,
            format=spec.get("format"),
            pattern=spec.get("pattern"),
            unique=bool(spec.get("unique", False)),
            min=spec.get("min"),
            max=spec.get("max"),
            max_length=max_length,
            on_invalid=on_invalid,
            allow_line_breaks=bool(spec.get("allow_line_breaks", defaults["allow_line_breaks"]))
            and spec["type"] == "string",
        )

    for key_column in primary_key:
        if key_column not in columns:
            raise ContractError(
                f"{path}{_line_of(table_nodes.get('primary_key'))}: primary key column {key_column!r} is not "
                f"among the columns ({', '.join(columns)}). Declare it under columns."
            )
    event_time = data.get("event_time")
    if event_time is not None and columns.get(event_time, Column("", "")).type not in ("timestamp", "date"):
        raise ContractError(
            f"{path}{_line_of(table_nodes.get('event_time'))}: event_time {event_time!r} must name a timestamp "
            "or date column."
        )
    records = data.get("records", "versioned")
    _check_choice(path, "records", records, RECORD_KINDS, table_nodes.get("records"))
    freshness = data.get("freshness") or {}
    if not isinstance(freshness, dict) or set(freshness) - set(FRESHNESS_KEYS):
        raise ContractError(
            f"{path}{_line_of(table_nodes.get('freshness'))}: freshness takes "
            f"{', '.join(FRESHNESS_KEYS)}; found {freshness!r}."
        )
    if freshness and event_time is None:
        raise ContractError(
            f"{path}{_line_of(table_nodes.get('freshness'))}: freshness needs an event_time column "
            "to measure age against. Add event_time."
        )
    return Contract(
        source=str(data["source"]),
        table=str(data["table"]),
        path=path,
        columns=columns,
        primary_key=primary_key,
        format=data.get("format"),
        description=data.get("description", ""),
        owner=data.get("owner", ""),
        party=data.get("party", "first"),
        event_time=event_time,
        max_age_hours=freshness.get("max_age_hours"),
        records=records,
        max_reject_rate=float(data.get("max_reject_rate", 0.05)),
    )


def load_contracts(directory: str | Path | None = None) -> dict[str, Contract]:
    """Every contract in `directory` (default: $CDP_CONTRACTS_DIR, else the contracts shipped with
    the package), by name."""
    directory = Path(directory or os.environ.get("CDP_CONTRACTS_DIR") or CONTRACTS_DIR)
    contracts = {}
    for path in sorted(directory.glob("*.yml")):
        contract = load_contract(path)
        expected_name = path.stem
        if contract.name != expected_name:
            raise ContractError(
                f"{path}: declares source {contract.source!r} and table {contract.table!r}, so the file must be "
                f"named {contract.name}.yml. Rename the file or fix the keys."
            )
        contracts[contract.name] = contract
    return contracts
