"""Data-usage labels of every column of every model, derived from the source contracts.

Labels and PII classes start in the contracts; the source declarations (cdp/sources.py: each
staging column's contract column, by name or its declared source_column, and the XDM attributes and
identifiers each staging model fills) say which contract columns each staging and XDM column comes
from. Beyond XDM (identity, profiles, segments) this module follows the dbt
manifest: a column inherits the labels of the same-named column of the models it is built from,
plus an explicit lineage for the columns that are renamed on the way (PUBLIC_LINEAGE). Columns
computed from events (traits) inherit the usage labels of the event sources (C*, S*, custom), but
not their identity labels (I1, I2): an aggregate such as an order count is not itself an
identifier, but a restriction on how the events may be used follows everything computed from them.

Every label keeps its sources (contract.column), so a policy violation can say where it came from; a
column's PII class is the strongest of the contract columns it comes from (computed columns: none).
The result is written to governance.column_labels, where the sync engine's policy gate reads it
(activation stays independent of this package and of dbt).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

import data_contracts
import data_contracts.contract
from cdp.dbt import MANIFEST_PATH, load_manifest
from cdp.sources import PII_STRENGTH, SourceLineage

IDENTITY_LABELS = frozenset({"I1", "I2"})
THIRD_PARTY_LABEL = "custom:third_party"
LABELLED_SCHEMAS = ("staging", "xdm", "identity", "profiles", "segments", "predictions")
AUDIENCE_SCHEMA = "segments"
# Columns renamed between XDM and the public layer: model -> {column: [(parent model, parent column)]}.
_PROFILE_FIELDS = {
    "first_name": "person_name_first_name",
    "last_name": "person_name_last_name",
    "birth_date": "person_birth_date",
    "gender": "person_gender",
    "email": "personal_email_address",
    "phone": "mobile_phone_number",
    "street": "home_address_street1",
    "city": "home_address_city",
    "postcode": "home_address_postal_code",
    "country_code": "home_address_country_code",
    "loyalty_tier": "loyalty_tier",
    "loyalty_points": "loyalty_points",
}
PUBLIC_LINEAGE: dict[str, dict[str, list[tuple[str, str]]]] = {
    "profiles": {column: [("xdm_profile_records", source)] for column, source in _PROFILE_FIELDS.items()},
    "profile_identities": {
        "identity_value": [("xdm_identities", "identity_value")],
        "identity_value_sha256": [("xdm_identities", "identity_value")],
    },
    "profile_attribute_lineage": {"attribute_value": [("xdm_profile_records", c) for c in _PROFILE_FIELDS.values()]},
}
# Models whose columns are computed from events: they inherit the events' usage labels.
EVENT_MODELS = ("xdm_experience_events", "profile_events")


@dataclass
class Labels:
    labels: dict[str, set[str]] = field(default_factory=dict)  # label -> sources (contract.column)
    pii: str = "none"  # the strongest PII class of the contract columns it comes from

    def add(self, other: Labels, drop_identity: bool = False) -> None:
        for label, sources in other.labels.items():
            if drop_identity and label in IDENTITY_LABELS:
                continue
            self.labels.setdefault(label, set()).update(sources)
        if not drop_identity and PII_STRENGTH[other.pii] > PII_STRENGTH[self.pii]:
            self.pii = other.pii

    def as_row(self) -> tuple[list[str], str]:
        return sorted(self.labels), json.dumps({k: sorted(v) for k, v in sorted(self.labels.items())})


def contract_labels(contracts: dict[str, data_contracts.Contract] | None = None) -> dict[tuple[str, str], Labels]:
    result = {}
    for contract in (contracts if contracts is not None else data_contracts.load_contracts()).values():
        for column in contract.columns.values():
            labels = set(column.labels) | ({THIRD_PARTY_LABEL} if contract.party == "third" else set())
            result[(contract.name, column.name)] = Labels(
                {label: {f"{contract.name}.{column.name}"} for label in labels}, pii=column.pii
            )
    return result


class LabelLineage:
    """Labels of (model, column) for every dbt model, memoised."""

    def __init__(self, manifest: dict | None = None, model_columns: dict[str, list[str]] | None = None) -> None:
        self.manifest = manifest if manifest is not None else load_manifest()
        contracts = data_contracts.load_contracts()
        self.contracts = contract_labels(contracts)
        self.parents: dict[str, list[str]] = {}
        self.schema: dict[str, str] = {}
        self.code: dict[str, str] = {}
        self.columns: dict[str, list[str]] = {}
        for node in self.manifest["nodes"].values():
            if node["resource_type"] not in ("model", "seed", "snapshot"):
                continue
            name = node.get("alias") or node["name"]
            self.schema[name] = node["schema"]
            self.parents[name] = [d.split(".")[-1] for d in node.get("depends_on", {}).get("nodes", [])]
            self.code[name] = node.get("raw_code") or ""
            self.columns[name] = list(node.get("columns", {}))
        for source in self.manifest.get("sources", {}).values():  # e.g. predictions.* written by Python
            self.schema.setdefault(source["name"], source["schema"])
        if model_columns:
            self.columns.update(model_columns)
        self.sources = SourceLineage(contracts=contracts)
        self.sources.staging_columns = {m: c for m, c in (model_columns or {}).items() if m in self.sources.models}
        self._memo: dict[tuple[str, str], Labels] = {}

    def event_labels(self) -> Labels:
        """Usage labels of every contract column feeding the event models (identity labels dropped)."""
        result = Labels()
        for model in self.parents.get("xdm_experience_events", []):
            if model in self.sources.models:
                for column in self.sources.columns(model):
                    result.add(self.staging_labels(model, column), drop_identity=True)
        return result

    def staging_labels(self, model: str, column: str) -> Labels:
        """A staging column's labels: those of the contract columns it comes from (SourceError when it
        matches no contract column and declares no source_column)."""
        contract = self.sources.models[model].contract
        result = Labels()
        for source in self.sources.source_columns(model, column):
            result.add(self.contracts.get((contract, source), Labels()))
        return result

    def labels(self, model: str, column: str, _depth: int = 0) -> Labels:
        key = (model, column)
        if key in self._memo:
            return self._memo[key]
        result = Labels()
        self._memo[key] = result  # guards against cycles
        if model in self.sources.models:
            result.add(self.staging_labels(model, column))
        elif model in self.sources.xdm and column in self.sources.xdm[model]:
            for parent, parent_column in self.sources.xdm[model][column]:
                result.add(self.labels(parent, parent_column, _depth + 1))
        elif model in EVENT_MODELS and column not in ("profile_id", "record_id", "event_id"):
            result.add(self.event_labels())
        elif model in PUBLIC_LINEAGE and column in PUBLIC_LINEAGE[model]:
            for parent, parent_column in PUBLIC_LINEAGE[model][column]:
                result.add(self.labels(parent, parent_column, _depth + 1))
        else:
            inherited = False
            for parent in self.parents.get(model, []):
                if column in self.columns_of(parent) or (parent in PUBLIC_LINEAGE and column in PUBLIC_LINEAGE[parent]):
                    result.add(self.labels(parent, column, _depth + 1))
                    inherited = True
            if not inherited and any(
                p in EVENT_MODELS or p == "profile_purchase_items" for p in self.parents.get(model, [])
            ):
                # A column with no same-named parent in a model built on events: computed from them.
                result.add(self.event_labels())
        return result

    def columns_of(self, model: str) -> list[str]:
        columns = list(self.columns.get(model, []))
        if model in self.sources.models:
            columns += self.sources.columns(model)
        if model in self.sources.xdm:
            columns += list(self.sources.xdm[model])
        if model in PUBLIC_LINEAGE:
            columns += list(PUBLIC_LINEAGE[model])
        return columns

    def used_columns(self, model: str) -> list[tuple[str, str]]:
        """(parent, column) pairs a model's SQL refers to by name: the fields an audience uses."""
        code = self.code.get(model, "")
        # The closing `final` projection only passes columns through (the audience's outputs, labelled as
        # such when a sync exports them); what the audience uses is named before it.
        if "final as (" in code:
            code = code[: code.rindex("final as (")]
        used = []
        for parent in self.parents.get(model, []):
            for column in dict.fromkeys(self.columns_of(parent)):
                if re.search(rf"\b{re.escape(column)}\b", code):
                    used.append((parent, column))
        return used


def column_labels(
    model: str, column: str, lineage: LabelLineage | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """(labels, {label: source contract columns}) of one column of a model."""
    labels = (lineage or LabelLineage()).labels(model, column)
    return sorted(labels.labels), {k: sorted(v) for k, v in labels.labels.items()}


def column_pii(model: str, column: str, lineage: LabelLineage | None = None) -> str:
    """The PII class (none, indirect, direct) of one column of a model, from its contract columns."""
    return (lineage or LabelLineage()).labels(model, column).pii


def warehouse_columns(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[str]]:
    rows = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        f"where table_schema in {LABELLED_SCHEMAS} order by table_schema, table_name, ordinal_position"
    ).fetchall()
    result: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in rows:
        result.setdefault((schema, table), []).append(column)
    return result


def labels_fingerprint(tables: dict[tuple[str, str], list[str]]) -> str:
    """What the labels are computed from: the warehouse's labelled tables and columns, the dbt manifest
    (rewritten whenever a model or its YAML changes) and the contract files. Equal fingerprints, equal labels."""
    digest = hashlib.sha256(json.dumps(sorted((s, t, c) for (s, t), c in tables.items())).encode())
    contracts_dir = Path(os.environ.get("CDP_CONTRACTS_DIR") or data_contracts.contract.CONTRACTS_DIR)
    for path in [MANIFEST_PATH, *sorted(contracts_dir.glob("*.yml"))]:
        stat = path.stat() if path.exists() else None
        digest.update(f"{path}:{stat.st_mtime_ns if stat else 0}:{stat.st_size if stat else 0}".encode())
    return digest.hexdigest()


def refresh_column_labels(con: duckdb.DuckDBPyConnection, lineage: LabelLineage | None = None) -> int:
    """Write governance.column_labels: one row per column of every model table in the warehouse
    (usage `output`), and for audiences one row per column of a parent model they use (usage `used`).

    Every sync and policy check calls it (the policy gate reads the labels of this build), but the
    labels change only with the build: unless a `lineage` is given, a warehouse whose labels were
    written from the same fingerprint (labels_fingerprint) keeps them, and the call costs one query."""
    tables = warehouse_columns(con)
    fingerprint = labels_fingerprint(tables) if lineage is None else None
    if fingerprint is not None and _stored_fingerprint(con) == fingerprint:
        return con.execute("select count(*) from governance.column_labels").fetchone()[0]
    lineage = lineage or LabelLineage(model_columns={table: cols for (_, table), cols in tables.items()})
    rows = []
    for (schema, table), columns in tables.items():
        for column in columns:
            found = lineage.labels(table, column)
            rows.append((schema, table, column, "output", *found.as_row(), found.pii))
        if schema == AUDIENCE_SCHEMA:
            for parent, column in lineage.used_columns(table):
                found = lineage.labels(parent, column)
                where = f"{lineage.schema.get(parent, '?')}.{parent}.{column}"
                rows.append((schema, table, where, "used", *found.as_row(), found.pii))
    con.execute("create schema if not exists governance")
    con.execute("drop table if exists governance.column_labels_state")  # written again once the labels are
    con.execute("""create or replace table governance.column_labels (
        model_schema varchar, model varchar, column_name varchar, usage varchar, labels varchar[], sources json,
        pii varchar)""")
    if rows:  # one insert of a frame: executemany inserts row by row (1.5 s for 700 rows, every sync)
        labelled = pl.DataFrame(rows, schema=COLUMN_LABELS_FRAME, orient="row")  # noqa: F841 (read by DuckDB)
        con.execute("insert into governance.column_labels select * from labelled")
    con.execute("create or replace table governance.column_labels_state (fingerprint varchar, refreshed_at timestamp)")
    if fingerprint is not None:
        con.execute("insert into governance.column_labels_state values (?, now())", [fingerprint])
    return len(rows)


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'governance' "
        "and table_name in ('column_labels', 'column_labels_state')"
    ).fetchone()[0]
    if exists < 2:
        return None
    row = con.execute("select fingerprint from governance.column_labels_state limit 1").fetchone()
    return row[0] if row else None


COLUMN_LABELS_FRAME = {
    "model_schema": pl.String,
    "model": pl.String,
    "column_name": pl.String,
    "usage": pl.String,
    "labels": pl.List(pl.String),
    "sources": pl.String,
    "pii": pl.String,
}
