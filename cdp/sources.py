"""A source is declared once: its contract (data_contracts/contracts/<source>__<table>.yml) and its
staging folder (dbt_project/models/staging/<source>/: the stg_ model SQL and its YAML).

The YAML of a staging model says everything downstream needs (docs/sources.md, "Declaring a source"):

- in the model's `config.meta.cdp`: the record key and update time, the identifier columns with their
  namespace, the profile attributes it fills (XDM attribute -> column), the experience event each row
  is (type, time, channel, XDM fields, numeric measures), whether it keeps every version of a record;
- in each column's `config.meta.source_column`: the contract column(s) it comes from when it is
  renamed or derived ([] when computed from none). A column without it comes from the contract column
  of the same name.

This module reads those declarations and checks them against the contracts, the XDM catalogues
(the columns of xdm_profile_records and xdm_experience_events in models/xdm/_xdm__models.yml, with
their types) and the identity namespaces (seed identity_namespaces). Lineage questions (which contract
columns feed a staging or XDM column: governance labels, PII classes, privacy matching) are answered
from the same declarations. The XDM models themselves are generated from the same meta by dbt macros
(macros/xdm_sources.sql) reading the graph. The one thing dbt cannot learn from the graph is which
models an XDM model depends on, since it records dependencies while parsing, before the graph exists:
write_source_refs() keeps the generated macros/xdm_source_models.sql in step, and every `cdp` command
runs it before dbt parses.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

import data_contracts
from cdp.errors import CdpError
from cdp.settings import DBT_PROJECT_DIR

PII_STRENGTH = {"none": 0, "indirect": 1, "direct": 2}
AUTHENTICATED_STATES = ("authenticated", "ambiguous")
# Columns every XDM row gets from the declaration itself, not from a mapped attribute or field.
PROFILE_ENVELOPE = ("record_id", "source_table", "record_updated_at", "loaded_at")
EVENT_ENVELOPE = ("record_id", "source_table", "event_type", "occurred_at", "channel", "event_measures", "loaded_at")
XDM_ROLES = {"xdm_identities": "identifiers", "xdm_profile_records": "profile", "xdm_experience_events": "event"}
MODEL_KEYS = ("contract", "record_key", "updated_at", "versions", "identifiers", "profile", "event")
IDENTIFIER_KEYS = ("column", "namespace", "authenticated_state", "primary")
EVENT_KEYS = ("type", "occurred_at", "channel", "fields", "measures")
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
REFS_MACRO = Path("macros") / "xdm_source_models.sql"


class SourceError(CdpError):
    """A source declaration (staging model YAML) is wrong; the message names the file, the model, what
    was expected and what to write."""


@dataclass(frozen=True)
class Identifier:
    column: str
    namespace: str
    authenticated_state: str
    is_primary: bool


@dataclass(frozen=True)
class Value:
    """A value an XDM column takes from a staging row: a column, or a literal (`{value: ...}`); a
    column may map its values (`values`, with `default` for the rest)."""

    column: str | None = None
    literal: Any = None
    values: dict[str, str] | None = None
    default: str | None = None


@dataclass(frozen=True)
class Event:
    event_type: Value
    occurred_at: str
    channel: Value
    fields: dict[str, Value]  # XDM field -> value
    measures: dict[str, str]  # measure name -> numeric column


@dataclass(frozen=True)
class StagingModel:
    name: str
    path: Path  # the YAML that declares it
    contract: str
    columns: tuple[str, ...]  # listed in the YAML, in order
    column_sources: dict[str, tuple[str, ...]]  # declared source_column (empty: computed from none)
    record_key: str | None = None
    updated_at: str | None = None
    versions: bool = False
    identifiers: tuple[Identifier, ...] = ()
    profile: dict[str, str] = field(default_factory=dict)  # XDM attribute -> column
    event: Event | None = None

    def roles(self) -> list[str]:
        """The XDM models this staging model feeds."""
        return [
            xdm
            for xdm, role in XDM_ROLES.items()
            if (role == "identifiers" and self.identifiers)
            or (role == "profile" and self.profile)
            or (role == "event" and self.event)
        ]

    def named_columns(self) -> dict[str, str]:
        """Every staging column the declaration names -> where (for error messages)."""
        named: dict[str, str] = {}
        for key in ("record_key", "updated_at"):
            if getattr(self, key):
                named.setdefault(getattr(self, key), f"cdp.{key}")
        for identifier in self.identifiers:
            named.setdefault(identifier.column, f"cdp.identifiers ({identifier.namespace})")
        for attribute, column in self.profile.items():
            named.setdefault(column, f"cdp.profile.{attribute}")
        if self.event:
            named.setdefault(self.event.occurred_at, "cdp.event.occurred_at")
            for where, value in [("type", self.event.event_type), ("channel", self.event.channel)] + [
                (f"fields.{name}", value) for name, value in self.event.fields.items()
            ]:
                if value.column:
                    named.setdefault(value.column, f"cdp.event.{where}")
            for measure, column in self.event.measures.items():
                named.setdefault(column, f"cdp.event.measures.{measure}")
        return named


@dataclass(frozen=True)
class XdmCatalogue:
    """The XDM columns a source may fill, with their types: the columns of xdm_profile_records and
    xdm_experience_events declared in models/xdm/_xdm__models.yml, less the envelope."""

    profile_attributes: dict[str, str]
    event_fields: dict[str, str]


def _meta(node: dict) -> dict:
    config = node.get("config") or {}
    return {**(node.get("meta") or {}), **(config.get("meta") or {})}


def _fail(path: Path, model: str, problem: str) -> SourceError:
    return SourceError(f"{path}: model {model}: {problem}")


def load_xdm_catalogue(dbt_dir: Path = DBT_PROJECT_DIR) -> XdmCatalogue:
    path = dbt_dir / "models" / "xdm" / "_xdm__models.yml"
    document = yaml.safe_load(path.read_text()) or {}
    models = {model["name"]: model for model in document.get("models", [])}
    catalogues = []
    for name, envelope in (("xdm_profile_records", PROFILE_ENVELOPE), ("xdm_experience_events", EVENT_ENVELOPE)):
        columns = {}
        for column in models.get(name, {}).get("columns", []):
            if not column.get("data_type"):
                raise SourceError(f"{path}: {name}.{column['name']} has no data_type; every XDM column declares one.")
            if column["name"] not in envelope:
                columns[column["name"]] = column["data_type"]
        catalogues.append(columns)
    return XdmCatalogue(profile_attributes=catalogues[0], event_fields=catalogues[1])


def identity_namespaces(dbt_dir: Path = DBT_PROJECT_DIR) -> list[str]:
    with (dbt_dir / "seeds" / "identity_namespaces.csv").open() as file:
        return [row["namespace"] for row in csv.DictReader(file)]


def _check_keys(path: Path, model: str, where: str, found: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(found) - set(allowed))
    if unknown:
        raise _fail(path, model, f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}.")


def _column_name(path: Path, model: str, where: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise _fail(path, model, f"{where} must name a staging column (lower-case name); found {value!r}.")
    return value


def _value(path: Path, model: str, where: str, spec: Any, literal_by_default: bool) -> Value:
    """A string is a literal (event type, channel) or a column (fields), as `literal_by_default` says;
    `{column: c}` and `{value: v}` say it explicitly; `{column, values, default}` maps a column's values."""
    if isinstance(spec, dict):
        if "value" in spec:
            _check_keys(path, model, where, spec, ("value",))
            return Value(literal=spec["value"])
        _check_keys(path, model, where, spec, ("column", "values", "default"))
        values = spec.get("values")
        if values is not None and not (isinstance(values, dict) and values):
            raise _fail(path, model, f"{where}.values must map source values to XDM values; found {values!r}.")
        return Value(
            column=_column_name(path, model, f"{where}.column", spec.get("column")),
            values={str(k): str(v) for k, v in values.items()} if values else None,
            default=spec.get("default"),
        )
    if isinstance(spec, str) and spec:
        return Value(literal=spec) if literal_by_default else Value(column=_column_name(path, model, where, spec))
    expected = "a literal, {column: <staging column>}" if literal_by_default else "a staging column, {value: <literal>}"
    raise _fail(path, model, f"{where} must be {expected} or {{column, values, default}}; found {spec!r}.")


def _event(path: Path, model: str, spec: Any, catalogue: XdmCatalogue) -> Event:
    if not isinstance(spec, dict):
        raise _fail(path, model, f"cdp.event must be a mapping with {', '.join(EVENT_KEYS)}; found {spec!r}.")
    _check_keys(path, model, "cdp.event", spec, EVENT_KEYS)
    for key in ("type", "occurred_at", "channel"):
        if spec.get(key) is None:
            raise _fail(path, model, f"cdp.event needs `{key}`.")
    fields = {}
    for name, value in (spec.get("fields") or {}).items():
        if name not in catalogue.event_fields:
            raise _fail(
                path,
                model,
                f"cdp.event.fields.{name} is not an XDM event field; allowed: {', '.join(catalogue.event_fields)} "
                "(declared as columns of xdm_experience_events in models/xdm/_xdm__models.yml).",
            )
        fields[name] = _value(path, model, f"cdp.event.fields.{name}", value, literal_by_default=False)
    measures_spec = spec.get("measures") or {}
    if isinstance(measures_spec, list):
        measures_spec = {column: column for column in measures_spec}
    if not isinstance(measures_spec, dict):
        raise _fail(
            path, model, f"cdp.event.measures must be a list of columns or {{name: column}}; found {measures_spec!r}."
        )
    measures = {}
    for name, column in measures_spec.items():
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise _fail(path, model, f"cdp.event.measures: measure name {name!r} must be a lower-case name.")
        measures[name] = _column_name(path, model, f"cdp.event.measures.{name}", column)
    return Event(
        event_type=_value(path, model, "cdp.event.type", spec["type"], literal_by_default=True),
        occurred_at=_column_name(path, model, "cdp.event.occurred_at", spec["occurred_at"]),
        channel=_value(path, model, "cdp.event.channel", spec["channel"], literal_by_default=True),
        fields=fields,
        measures=measures,
    )


def _identifiers(path: Path, model: str, spec: Any, namespaces: list[str]) -> tuple[Identifier, ...]:
    if not isinstance(spec, list) or not spec:
        raise _fail(path, model, f"cdp.identifiers must be a non-empty list of {{column, namespace}}; found {spec!r}.")
    identifiers = []
    for index, item in enumerate(spec):
        where = f"cdp.identifiers[{index}]"
        if not isinstance(item, dict):
            raise _fail(path, model, f"{where} must be a mapping {{column, namespace, authenticated_state, primary}}.")
        _check_keys(path, model, where, item, IDENTIFIER_KEYS)
        column = _column_name(path, model, f"{where}.column", item.get("column"))
        namespace = item.get("namespace")
        if namespace not in namespaces:
            raise _fail(
                path,
                model,
                f"{where} ({column}) has namespace {namespace!r}; known namespaces: {', '.join(namespaces)}. "
                "Use one of them or add a row to dbt_project/seeds/identity_namespaces.csv.",
            )
        state = item.get("authenticated_state", "ambiguous")
        if state not in AUTHENTICATED_STATES:
            raise _fail(
                path,
                model,
                f"{where} ({column}) authenticated_state is {state!r}; allowed: {', '.join(AUTHENTICATED_STATES)}.",
            )
        identifiers.append(Identifier(column, namespace, state, bool(item.get("primary", False))))
    primaries = [i.column for i in identifiers if i.is_primary]
    if len(primaries) != 1:
        raise _fail(
            path,
            model,
            f"cdp.identifiers needs exactly one identifier with `primary: true` (the record's primary identity); "
            f"found {len(primaries)}{': ' + ', '.join(primaries) if primaries else ''}.",
        )
    return tuple(identifiers)


def _staging_model(
    path: Path,
    node: dict,
    contracts: dict[str, data_contracts.Contract],
    catalogue: XdmCatalogue,
    namespaces: list[str],
) -> StagingModel:
    name = node.get("name")
    declaration = _meta(node).get("cdp") or {}
    if not isinstance(declaration, dict):
        raise _fail(path, name, f"meta cdp must be a mapping; found {declaration!r}.")
    _check_keys(path, name, "meta cdp", declaration, MODEL_KEYS)
    default_contract = name[len("stg_") :] if name.startswith("stg_") else name
    contract_name = declaration.get("contract", default_contract)
    contract = contracts.get(contract_name)
    if contract is None:
        raise _fail(
            path,
            name,
            f"reads contract {contract_name!r} ({'declared' if 'contract' in declaration else 'from its name'}), "
            f"which does not exist; contracts: {', '.join(sorted(contracts))}. Name the model "
            "stg_<source>__<table> after its contract or declare `config: {meta: {cdp: {contract: <source>__<table>}}}`.",
        )
    columns, column_sources = [], {}
    for column in node.get("columns") or []:
        column_name = column["name"]
        columns.append(column_name)
        meta = _meta(column)
        if "source_column" not in meta:
            continue
        sources = meta["source_column"]
        sources = () if sources is None else (sources,) if isinstance(sources, str) else tuple(sources)
        for source in sources:
            if source not in contract.columns:
                raise _fail(
                    path,
                    name,
                    f"column {column_name} declares source_column {source!r}, which is not a column of contract "
                    f"{contract_name} ({', '.join(contract.columns)}). Name one of them, a list of them, or "
                    "[] when the column is computed from no source column.",
                )
        column_sources[column_name] = sources
    profile = declaration.get("profile") or {}
    if not isinstance(profile, dict):
        raise _fail(path, name, f"cdp.profile must map XDM attributes to columns; found {profile!r}.")
    for attribute in profile:
        if attribute not in catalogue.profile_attributes:
            raise _fail(
                path,
                name,
                f"cdp.profile.{attribute} is not an XDM profile attribute; allowed: "
                f"{', '.join(catalogue.profile_attributes)} (the columns of xdm_profile_records in "
                "models/xdm/_xdm__models.yml: add one there, with its data_type, to extend XDM).",
            )
    model = StagingModel(
        name=name,
        path=path,
        contract=contract_name,
        columns=tuple(columns),
        column_sources=column_sources,
        record_key=declaration.get("record_key"),
        updated_at=declaration.get("updated_at"),
        versions=bool(declaration.get("versions", False)),
        identifiers=_identifiers(path, name, declaration["identifiers"], namespaces)
        if "identifiers" in declaration
        else (),
        profile={a: _column_name(path, name, f"cdp.profile.{a}", c) for a, c in profile.items()},
        event=_event(path, name, declaration["event"], catalogue) if "event" in declaration else None,
    )
    if model.roles():
        for key in ("record_key", "updated_at") if (model.identifiers or model.profile) else ("record_key",):
            if not getattr(model, key):
                raise _fail(path, name, f"declares {', '.join(model.roles())} but no cdp.{key}.")
    # Every column the declaration names is a column of the model: listed in its YAML, or a contract
    # column passed through under its own name.
    for column, where in model.named_columns().items():
        if column not in model.columns and column not in contract.columns:
            raise _fail(
                path,
                name,
                f"{where} names column {column!r}, which is neither listed under the model's columns nor a "
                f"column of contract {contract_name}. List it under columns (with source_column when renamed).",
            )
    return model


def staging_yaml_files(dbt_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    return sorted((dbt_dir / "models" / "staging").rglob("*.yml"))


def load_staging_models(
    dbt_dir: Path = DBT_PROJECT_DIR, contracts: dict[str, data_contracts.Contract] | None = None
) -> dict[str, StagingModel]:
    """Every staging model declared in the YAML of models/staging/, checked (SourceError otherwise)."""
    contracts = contracts if contracts is not None else data_contracts.load_contracts()
    catalogue = load_xdm_catalogue(dbt_dir)
    namespaces = identity_namespaces(dbt_dir)
    models: dict[str, StagingModel] = {}
    sql_models = {path.stem: path for path in (dbt_dir / "models" / "staging").rglob("*.sql")}
    for path in staging_yaml_files(dbt_dir):
        document = yaml.safe_load(path.read_text()) or {}
        for node in document.get("models") or []:
            model = _staging_model(path, node, contracts, catalogue, namespaces)
            if model.name in models:
                raise _fail(path, model.name, f"is declared twice (also in {models[model.name].path}).")
            models[model.name] = model
    undeclared = sorted(set(sql_models) - set(models))
    if undeclared:
        name = undeclared[0]
        folder = sql_models[name].parent
        raise SourceError(
            f"{sql_models[name]}: staging model {name} has no YAML. Add it to {folder}/_{folder.name}__models.yml "
            "(models: - name: ...) with its columns and, to reach XDM, its cdp meta (docs/sources.md)."
        )
    return models


class SourceLineage:
    """Which contract columns feed each staging and XDM column, from the declarations."""

    def __init__(
        self,
        models: dict[str, StagingModel] | None = None,
        contracts: dict[str, data_contracts.Contract] | None = None,
        staging_columns: dict[str, list[str]] | None = None,
    ) -> None:
        self.contracts = contracts if contracts is not None else data_contracts.load_contracts()
        self.models = models if models is not None else load_staging_models(contracts=self.contracts)
        self.staging_columns = staging_columns or {}  # actual columns (e.g. from the warehouse), when known

    def columns(self, model: str) -> list[str]:
        """The staging model's columns: the warehouse's when known, else those its YAML lists."""
        declared = self.models[model]
        return list(self.staging_columns.get(model) or declared.columns)

    def source_columns(self, model: str, column: str) -> tuple[str, ...]:
        """The contract columns one staging column comes from (its declared source_column, else the
        contract column of the same name); SourceError when it matches nothing and declares nothing."""
        declared = self.models[model]
        if column in declared.column_sources:
            return declared.column_sources[column]
        contract = self.contracts[declared.contract]
        if column in contract.columns:
            return (column,)
        raise SourceError(
            f"{declared.path}: model {model}: column {column} matches no column of contract {declared.contract} "
            f"({', '.join(contract.columns)}) and declares no source_column. Under the model's columns write "
            f"`- name: {column}` with `config: {{meta: {{source_column: <contract column>}}}}` (a list when derived "
            "from several, [] when computed from none)."
        )

    def check_columns(self) -> None:
        """Every column of every staging model resolves (raises the first that does not)."""
        for model in self.models:
            for column in self.columns(model):
                self.source_columns(model, column)

    @cached_property
    def xdm(self) -> dict[str, dict[str, list[tuple[str, str]]]]:
        """XDM model -> {XDM column: [(staging model, staging column), ...]}."""
        profile: dict[str, list[tuple[str, str]]] = {}
        identities: list[tuple[str, str]] = []
        for name, model in self.models.items():
            for attribute, column in model.profile.items():
                profile.setdefault(attribute, []).append((name, column))
            identities += [(name, identifier.column) for identifier in model.identifiers]
        return {"xdm_profile_records": profile, "xdm_identities": {"identity_value": identities}}

    def event_models(self) -> list[str]:
        return [name for name, model in self.models.items() if model.event]

    def identifier_columns(self) -> dict[str, list[str]]:
        """Per contract, the contract columns holding an identifier (those feeding xdm_identities)."""
        result: dict[str, list[str]] = {}
        for model, column in self.xdm["xdm_identities"]["identity_value"]:
            contract = self.models[model].contract
            for source in self.source_columns(model, column):
                if source not in result.setdefault(contract, []):
                    result[contract].append(source)
        return result


def source_refs(models: dict[str, StagingModel]) -> dict[str, list[str]]:
    """XDM model -> the staging models feeding it (what it must ref at parse time)."""
    return {xdm: sorted(name for name, model in models.items() if xdm in model.roles()) for xdm in XDM_ROLES}


def render_source_refs(models: dict[str, StagingModel]) -> str:
    refs = source_refs(models)
    entries = ",\n".join(f"        '{xdm}': [{', '.join(repr(name) for name in names)}]" for xdm, names in refs.items())
    return (
        "{#- GENERATED by cdp/sources.py from the `cdp` meta of the staging models: do not edit. Every `cdp`\n"
        "    command (and `cdp sources check`) rewrites it before dbt parses the project, because dbt records a\n"
        "    model's dependencies while parsing, before the graph that holds the meta exists. The XDM macros\n"
        "    (macros/xdm_sources.sql) ref these models and check the list against the graph. -#}\n"
        "{% macro xdm_source_models(xdm_model) -%}\n"
        "    {{ return({\n"
        f"{entries}\n"
        "    }[xdm_model]) }}\n"
        "{%- endmacro %}\n"
    )


def write_source_refs(dbt_dir: Path = DBT_PROJECT_DIR, models: dict[str, StagingModel] | None = None) -> bool:
    """Rewrite macros/xdm_source_models.sql when the declarations changed it; True if written."""
    models = models if models is not None else load_staging_models(dbt_dir)
    path = dbt_dir / REFS_MACRO
    text = render_source_refs(models)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
