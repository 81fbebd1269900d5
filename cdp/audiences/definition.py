"""Audience definitions (YAML) read into typed objects, every value checked against a whitelist.

Nothing of a definition reaches SQL unchecked: names and fields must be plain identifiers (a field
must also name a column of the table it reads, when the warehouse catalog is at hand, and always
at build time: see `audience_require_columns`), operators come from a fixed list, and literals are
strings, numbers, booleans or dates that the renderer quotes. Strings may not hold dbt template
markers, so a value cannot reach Jinja either.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdp.audiences.errors import AudienceDefinitionError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,55}$")
COLUMN_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
EVENT_TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+$")
DATA_TYPE_PATTERN = re.compile(
    r"^(varchar|text|bigint|integer|smallint|double|float|boolean|date|timestamp|decimal\(\d{1,2}, ?\d{1,2}\))$"
)
TEMPLATE_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
MAX_STRING_LENGTH = 500
MAX_DAYS = 36_500

# Profile-level fields are namespaced by the public table they come from.
FIELD_NAMESPACES = {"profile": "profiles", "traits": "profile_traits", "predictions": "profile_predictions"}
# Event conditions read one of these tables; their filters name the table's columns.
EVENT_SOURCES = {"event": "profile_events", "purchased_item": "profile_purchase_items"}

SCALAR_OPERATORS = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
LIST_OPERATORS = ("in", "not_in")
NULL_OPERATORS = ("is_null", "is_not_null")
WINDOW_OPERATORS = ("within_last_days", "older_than_days")
OPERATORS = (*SCALAR_OPERATORS, *LIST_OPERATORS, "between", *NULL_OPERATORS, *WINDOW_OPERATORS)
ORDERED_OPERATORS = ("lt", "lte", "gt", "gte", "between")
CONDITION_KINDS = ("field", "all", "any", "not", "event", "purchased_item", "consent", "in_audience")
TOP_LEVEL_KEYS = ("name", "description", "conditions", "rank", "splits", "columns")


@dataclass(frozen=True)
class Var:
    """A dbt project variable (dbt_project.yml `vars:`), e.g. {var: high_value_min_revenue}."""

    name: str


Scalar = str | int | float | bool | dt.date | dt.datetime | Var


@dataclass(frozen=True)
class FieldRef:
    table: str  # profiles, profile_traits, profile_predictions, profile_events, profile_purchase_items
    column: str
    path: str  # where the field is named in the definition, for error messages

    @property
    def label(self) -> str:
        namespace = {v: k for k, v in FIELD_NAMESPACES.items()}.get(self.table)
        return f"{namespace}.{self.column}" if namespace else self.column


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    operator: str
    value: Scalar | tuple[Scalar, ...] | None
    path: str


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    condition: Condition


@dataclass(frozen=True)
class EventCondition:
    table: str
    event_type: str | None
    filters: tuple[Comparison, ...]
    within_last_days: int | Var | None
    measure: str  # count | sum
    measure_field: FieldRef | None
    operator: str
    value: int | float | Var
    path: str


@dataclass(frozen=True)
class ConsentCondition:
    purpose: str
    decided_within_days: int | Var | None


@dataclass(frozen=True)
class AudienceCondition:
    audience: str
    path: str


Condition = Comparison | AllOf | AnyOf | Not | EventCondition | ConsentCondition | AudienceCondition


@dataclass(frozen=True)
class Rank:
    by: FieldRef
    descending: bool
    limit: int


@dataclass(frozen=True)
class Split:
    name: str
    percent: int
    is_holdout: bool


@dataclass(frozen=True)
class OutputColumn:
    field: FieldRef
    data_type: str | None


@dataclass(frozen=True)
class AudienceDefinition:
    name: str
    file: str
    description: str
    condition: AllOf
    rank: Rank | None = None
    splits: tuple[Split, ...] = ()
    columns: tuple[OutputColumn, ...] = ()
    referenced_audiences: tuple[str, ...] = field(default=())

    @property
    def model_name(self) -> str:
        return f"seg_{self.name}"


class _Reader:
    """Walks one definition; every failure names the file and the path inside it."""

    def __init__(self, file: str, consent_purposes: tuple[str, ...]) -> None:
        self.file = file
        self.consent_purposes = consent_purposes
        self.audiences: list[str] = []

    def fail(self, path: str, found: str, allowed: str, hint: str = "") -> AudienceDefinitionError:
        return AudienceDefinitionError(self.file, path, found, allowed, hint)

    # -- values ---------------------------------------------------------------------------------
    def mapping(self, value: Any, path: str, allowed_keys: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"found {_show(value)}", f"a mapping with keys {', '.join(allowed_keys)}")
        unknown = [key for key in value if key not in allowed_keys]
        if unknown:
            raise self.fail(
                f"{path}.{unknown[0]}" if path else str(unknown[0]),
                f"unknown key {unknown[0]!r}",
                ", ".join(allowed_keys),
            )
        return value

    def string(self, value: Any, path: str, what: str = "a string", multiline: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"found {_show(value)}", what)
        if len(value) > MAX_STRING_LENGTH:
            raise self.fail(path, f"a string of {len(value)} characters", f"at most {MAX_STRING_LENGTH}")
        marker = next((m for m in TEMPLATE_MARKERS if m in value), None)
        if marker:
            raise self.fail(
                path,
                f"{_show(value)} holds the template marker {marker!r}",
                "text without dbt/Jinja template markers ({{ }}, {% %}, {# #})",
            )
        if any(ord(char) < 32 and char not in ("\t\n" if multiline else "\t") for char in value):
            raise self.fail(path, f"{_show(value)} holds a control character", "printable text")
        return value

    def name(self, value: Any, path: str, what: str = "an audience name") -> str:
        if not isinstance(value, str) or not NAME_PATTERN.match(value):
            raise self.fail(
                path,
                f"found {_show(value)}",
                f"{what}: lower-case letters, digits and _, starting with a letter, at most 56 characters",
            )
        return value

    def column(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not COLUMN_PATTERN.match(value):
            raise self.fail(path, f"found {_show(value)}", "a column name: lower-case letters, digits and _")
        return value

    def profile_field(self, value: Any, path: str) -> FieldRef:
        namespaces = ", ".join(f"{n}.<column>" for n in FIELD_NAMESPACES)
        if not isinstance(value, str) or value.count(".") != 1:
            raise self.fail(path, f"found {_show(value)}", f"a field {namespaces} (e.g. traits.lifetime_revenue)")
        namespace, column = value.split(".")
        if namespace not in FIELD_NAMESPACES:
            raise self.fail(path, f"unknown namespace {namespace!r} in {value!r}", namespaces)
        return FieldRef(FIELD_NAMESPACES[namespace], self.column(column, path), path)

    def days(self, value: Any, path: str) -> int | Var:
        if isinstance(value, Mapping):
            return self.var(value, path)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
            raise self.fail(
                path, f"found {_show(value)}", f"a whole number of days from 0 to {MAX_DAYS}, or {{var: <name>}}"
            )
        return value

    def var(self, value: Mapping[str, Any], path: str) -> Var:
        self.mapping(value, path, ("var",))
        return Var(self.name(value.get("var"), f"{path}.var", "a dbt var name"))

    def scalar(self, value: Any, path: str) -> Scalar:
        if isinstance(value, Mapping):
            return self.var(value, path)
        if isinstance(value, bool | int | dt.date):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(path, f"found {value!r}", "a finite number")
            return value
        if isinstance(value, str):
            return self.string(value, path)
        raise self.fail(path, f"found {_show(value)}", "a string, number, boolean, date (YYYY-MM-DD) or {var: <name>}")

    # -- conditions -----------------------------------------------------------------------------
    def conditions(self, value: Any, path: str) -> tuple[Condition, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"found {_show(value)}", "a non-empty list of conditions")
        return tuple(self.condition(item, f"{path}[{index}]") for index, item in enumerate(value))

    def condition(self, value: Any, path: str) -> Condition:
        if not isinstance(value, Mapping):
            raise self.fail(
                path, f"found {_show(value)}", f"a condition: a mapping with one of {', '.join(CONDITION_KINDS)}"
            )
        kinds = [key for key in CONDITION_KINDS if key in value]
        if len(kinds) != 1:
            found = f"keys {', '.join(map(str, value))}" if value else "an empty mapping"
            raise self.fail(path, found, f"exactly one of {', '.join(CONDITION_KINDS)} per condition")
        kind = kinds[0]
        if kind == "field":
            return self.comparison(value, path, self.profile_field(value["field"], f"{path}.field"))
        if kind in ("all", "any"):
            self.mapping(value, path, (kind,))
            items = self.conditions(value[kind], f"{path}.{kind}")
            return AllOf(items) if kind == "all" else AnyOf(items)
        if kind == "not":
            self.mapping(value, path, ("not",))
            return Not(self.condition(value["not"], f"{path}.not"))
        if kind in EVENT_SOURCES:
            self.mapping(value, path, (kind,))
            return self.event(value[kind], f"{path}.{kind}", kind)
        if kind == "consent":
            self.mapping(value, path, ("consent", "decided_within_days"))
            purpose = value["consent"]
            if purpose not in self.consent_purposes:
                raise self.fail(f"{path}.consent", f"found {_show(purpose)}", ", ".join(self.consent_purposes))
            within = value.get("decided_within_days")
            return ConsentCondition(
                purpose, None if within is None else self.days(within, f"{path}.decided_within_days")
            )
        self.mapping(value, path, ("in_audience",))
        audience = self.name(value["in_audience"], f"{path}.in_audience")
        self.audiences.append(audience)
        return AudienceCondition(audience, f"{path}.in_audience")

    def comparison(self, value: Mapping[str, Any], path: str, field_ref: FieldRef) -> Comparison:
        self.mapping(value, path, ("field", "op", "value"))
        operator = value.get("op")
        if operator not in OPERATORS:
            raise self.fail(f"{path}.op", f"found {_show(operator)}", ", ".join(OPERATORS))
        raw, value_path = value.get("value"), f"{path}.value"
        if operator in NULL_OPERATORS:
            if "value" in value:
                raise self.fail(value_path, f"{operator} with a value", f"{operator} without a value")
            return Comparison(field_ref, operator, None, path)
        if "value" not in value:
            raise self.fail(path, f"{operator} without a value", f"{operator} with a value")
        if operator in WINDOW_OPERATORS:
            return Comparison(field_ref, operator, self.days(raw, value_path), path)
        if operator in LIST_OPERATORS or operator == "between":
            size_rule = "exactly 2 values [low, high]" if operator == "between" else "a list of 1 to 1000 values"
            if not isinstance(raw, list) or (len(raw) != 2 if operator == "between" else not 1 <= len(raw) <= 1000):
                raise self.fail(value_path, f"found {_show(raw)}", size_rule)
            return Comparison(
                field_ref, operator, tuple(self.scalar(item, f"{value_path}[{i}]") for i, item in enumerate(raw)), path
            )
        if raw is None:
            raise self.fail(value_path, "found null", "a value (use op: is_null to match missing values)")
        return Comparison(field_ref, operator, self.scalar(raw, value_path), path)

    def event(self, value: Any, path: str, kind: str) -> EventCondition:
        keys = (
            ("type", "where", "within_last_days", "count", "sum")
            if kind == "event"
            else ("where", "within_last_days", "count", "sum")
        )
        self.mapping(value, path, keys)
        table = EVENT_SOURCES[kind]
        event_type = None
        if kind == "event":
            event_type = value.get("type")
            if not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(event_type):
                raise self.fail(
                    f"{path}.type",
                    f"found {_show(event_type)}",
                    "an XDM event type such as commerce.purchases or directMarketing.emailOpened",
                )
        filters: list[Comparison] = []
        where = value.get("where", [])
        if not isinstance(where, list):
            raise self.fail(f"{path}.where", f"found {_show(where)}", "a list of {field, op, value} filters")
        for index, item in enumerate(where):
            item_path = f"{path}.where[{index}]"
            mapping = self.mapping(item, item_path, ("field", "op", "value"))
            column = FieldRef(table, self.column(mapping.get("field"), f"{item_path}.field"), f"{item_path}.field")
            filters.append(self.comparison(mapping, item_path, column))
        within = value.get("within_last_days")
        if "count" in value and "sum" in value:
            raise self.fail(path, "both count and sum", "one of count: {op, value} or sum: {field, op, value}")
        measure, measure_field = ("sum", None) if "sum" in value else ("count", None)
        threshold = value.get(measure, {"op": "gte", "value": 1})
        measure_path = f"{path}.{measure}"
        threshold = self.mapping(
            threshold, measure_path, ("field", "op", "value") if measure == "sum" else ("op", "value")
        )
        if measure == "sum":
            measure_field = FieldRef(
                table, self.column(threshold.get("field"), f"{measure_path}.field"), f"{measure_path}.field"
            )
        operator = threshold.get("op")
        if operator not in SCALAR_OPERATORS:
            raise self.fail(f"{measure_path}.op", f"found {_show(operator)}", ", ".join(SCALAR_OPERATORS))
        amount = threshold.get("value")
        if isinstance(amount, Mapping):
            amount = self.var(amount, f"{measure_path}.value")
        elif (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or (isinstance(amount, float) and not math.isfinite(amount))
        ):
            raise self.fail(f"{measure_path}.value", f"found {_show(amount)}", "a number or {var: <name>}")
        return EventCondition(
            table,
            event_type,
            tuple(filters),
            None if within is None else self.days(within, f"{path}.within_last_days"),
            measure,
            measure_field,
            operator,
            amount,
            path,
        )

    # -- the definition ----------------------------------------------------------------------------
    def definition(self, document: Any, stem: str) -> AudienceDefinition:
        document = self.mapping(document, "", TOP_LEVEL_KEYS)
        name = self.name(document.get("name"), "name")
        if name != stem:
            raise self.fail(
                "name",
                f"name {name!r} in a file named {stem}.yml",
                f"the file's name without .yml ({stem!r})",
                "Rename the file or the audience.",
            )
        description = " ".join(self.string(document.get("description", ""), "description", multiline=True).split())
        condition = AllOf(self.conditions(document.get("conditions"), "conditions"))
        rank = None
        if "rank" in document:
            spec = self.mapping(document["rank"], "rank", ("by", "order", "limit"))
            order = spec.get("order", "desc")
            if order not in ("asc", "desc"):
                raise self.fail("rank.order", f"found {_show(order)}", "asc, desc")
            limit = spec.get("limit")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise self.fail("rank.limit", f"found {_show(limit)}", "a whole number of members, at least 1")
            rank = Rank(self.profile_field(spec.get("by"), "rank.by"), order == "desc", limit)
        splits = self.splits(document.get("splits"))
        columns = []
        for index, item in enumerate(document.get("columns") or []):
            path = f"columns[{index}]"
            if isinstance(item, str):
                item = {"field": item}
            spec = self.mapping(item, path, ("field", "data_type"))
            data_type = spec.get("data_type")
            if data_type is not None and (not isinstance(data_type, str) or not DATA_TYPE_PATTERN.match(data_type)):
                raise self.fail(
                    f"{path}.data_type",
                    f"found {_show(data_type)}",
                    "varchar, bigint, integer, double, decimal(p, s), boolean, date, timestamp",
                )
            columns.append(OutputColumn(self.profile_field(spec.get("field"), f"{path}.field"), data_type))
        seen = {"profile_id", "email", "phone", "first_name", "last_name", "split_name", "is_holdout"}
        for index, column in enumerate(columns):
            if column.field.column in seen:
                raise self.fail(
                    f"columns[{index}].field",
                    f"column {column.field.column!r} twice in the output",
                    "fields other than the audience columns and each other",
                )
            seen.add(column.field.column)
        return AudienceDefinition(
            name, self.file, description, condition, rank, splits, tuple(columns), tuple(dict.fromkeys(self.audiences))
        )

    def splits(self, value: Any) -> tuple[Split, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) < 2:
            raise self.fail("splits", f"found {_show(value)}", "a list of at least 2 splits {name, percent, holdout}")
        splits = []
        for index, item in enumerate(value):
            path = f"splits[{index}]"
            spec = self.mapping(item, path, ("name", "percent", "holdout"))
            percent = spec.get("percent")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
                raise self.fail(f"{path}.percent", f"found {_show(percent)}", "a whole percentage from 1 to 99")
            holdout = spec.get("holdout", False)
            if not isinstance(holdout, bool):
                raise self.fail(f"{path}.holdout", f"found {_show(holdout)}", "true or false")
            splits.append(Split(self.name(spec.get("name"), f"{path}.name", "a split name"), percent, holdout))
        if len({s.name for s in splits}) != len(splits):
            raise self.fail("splits", "a split name twice", "distinct split names")
        total = sum(s.percent for s in splits)
        if total != 100:
            raise self.fail("splits", f"percentages adding up to {total}", "percentages adding up to 100")
        return tuple(splits)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_definition(text: str, file: str, consent_purposes: tuple[str, ...]) -> AudienceDefinition:
    """Read one audience from YAML text; `file` names it in errors (e.g. audiences/vip.yml)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AudienceDefinitionError(
            file,
            where,
            f"not valid YAML ({getattr(error, 'problem', error)})",
            "a YAML mapping (see README, Audiences)",
        ) from None
    return _Reader(file, consent_purposes).definition(document, Path(file).stem)
