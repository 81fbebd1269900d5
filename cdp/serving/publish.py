"""Publish the public tables of a finished run to the serving store, atomically.

The build warehouse is locked by the process that writes it, so BI tools and the profile API read
a separate file: the serving store. A publication copies every model whose dbt meta says
`serving: {publish: true}` into a new DuckDB file next to the store, sorted and indexed for
lookups, adds the BI-safe relations (schema `bi`, identifiers masked as their column meta says; keyed
pseudonyms computed here, with a key kept outside the store: documents.masking_key)
and the record of published runs (`serving.publications`), then renames the new file over the
store. `rename` is atomic: a reader opens either the previous file or the new one, never a mix,
and a reader that already holds the previous file keeps reading it. A run that fails or is killed
before the rename leaves the previous publication untouched (docs/serving.md has the measurements).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cdp.dbt import MANIFEST_PATH
from cdp.errors import CdpError
from cdp.serving.documents import (
    MASKING_KEY_VARIABLE,
    mask_sql,
    masking_key,
    quote_identifier,
    write_masking_rules,
)
from cdp.serving.readmodel import read_model_path, write_read_model
from cdp.warehouse import attach, connect

PUBLICATIONS_TABLE = "serving.publications"
MASKINGS = ("email", "phone", "initial", "hash", "redact")  # see documents.mask_sql


class PublishError(CdpError):
    """The publication could not be written; the serving store still holds the previous run."""


@dataclass(frozen=True)
class PublishedTable:
    schema: str
    name: str
    order_by: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()
    # column name -> masking in the BI-safe view (columns whose meta says pii: direct)
    masked_columns: dict[str, str] = field(default_factory=dict)
    # dbt descriptions, carried into the store as COMMENT ON (what BI tools show next to a column)
    description: str = ""
    column_descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Publication:
    run_id: str
    store: Path
    started_at: dt.datetime
    published_at: dt.datetime
    row_counts: dict[str, int]
    seconds: float
    store_bytes: int
    read_model: Path | None = None
    read_model_bytes: int = 0
    # of `seconds`, per step: copy (tables, sorted and indexed), bi, read_model (documents rendered and
    # written to the profile read model), finish (record, checkpoint, fsync, renames)
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def documents_seconds(self) -> float:
        return self.step_seconds.get("read_model", 0.0)


def published_tables(manifest_path: Path | None = None) -> list[PublishedTable]:
    """The tables to publish, from the dbt manifest: models and seeds with meta `serving.publish`."""
    manifest_path = manifest_path or MANIFEST_PATH
    manifest = json.loads(Path(manifest_path).read_text())
    tables = []
    for node in manifest["nodes"].values():
        serving = (node.get("config", {}).get("meta") or {}).get("serving") or {}
        if node["resource_type"] not in ("model", "seed") or not serving.get("publish"):
            continue
        masked = {}
        for column, props in node.get("columns", {}).items():
            meta = props.get("config", {}).get("meta") or props.get("meta") or {}
            # Direct identifiers (redacted unless told otherwise), and any column with a masking (hashed
            # identifiers, source record ids: pseudonymized with a keyed hash).
            if meta.get("pii") == "direct" or meta.get("masking"):
                masking = meta.get("masking", "redact")
                if masking not in MASKINGS:
                    raise PublishError(
                        f"{node['original_file_path']}: column {node['name']}.{column} has masking "
                        f"{masking!r}; expected one of {', '.join(MASKINGS)}"
                    )
                masked[column] = masking
        tables.append(
            PublishedTable(
                schema=node["schema"],
                name=node.get("alias") or node["name"],
                order_by=tuple(serving.get("order_by", ())),
                indexes=tuple(serving.get("indexes", ())),
                masked_columns=masked,
                description=" ".join((node.get("description") or "").split()),
                column_descriptions={
                    column: " ".join((props.get("description") or "").split())
                    for column, props in node.get("columns", {}).items()
                    if (props.get("description") or "").strip()
                },
            )
        )
    return sorted(tables, key=lambda t: t.relation)


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_catalog = 'build' and table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def _comment(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    relation: str,
    table: PublishedTable,
    columns: list[str],
    masked: bool = False,
) -> None:
    """The dbt descriptions as COMMENT ON the table (or BI-safe view) and its columns."""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    if table.description:
        con.execute(f"comment on {kind} {relation} is {literal(table.description)}")
    for column in columns:
        text = table.column_descriptions.get(column)
        if not text:
            continue
        if masked and column in table.masked_columns:
            text += f" (masked here: {table.masked_columns[column]})"
        con.execute(f"comment on column {relation}.{quote_identifier(column)} is {literal(text)}")


def _previous_publications(store: Path) -> list[tuple]:
    if not store.exists():
        return []
    try:
        with duckdb.connect(":memory:") as con:
            attach(con, store, "previous", read_only=True)
            return con.execute(f"select * from previous.{PUBLICATIONS_TABLE} order by published_at").fetchall()
    except duckdb.Error:
        return []  # an unreadable previous store is replaced, its history with it


def publish(
    warehouse: Path,
    store: Path,
    run_id: str,
    started_at: dt.datetime | None = None,
    checks: dict[str, Any] | None = None,
    tables: list[PublishedTable] | None = None,
    keep_history: int = 1000,
) -> Publication:
    """Copy the published tables of `warehouse` into a new file and rename it over `store`."""
    began = time.perf_counter()
    tables = published_tables() if tables is None else tables
    if not tables:
        raise PublishError("no dbt model has meta serving.publish: true; nothing to publish")
    store.parent.mkdir(parents=True, exist_ok=True)
    staging_file = store.with_name(f".{store.name}.publishing")
    read_model = read_model_path(store)
    staging_read_model = read_model.with_name(f".{read_model.name}.publishing")
    for leftover in (staging_file, staging_file.with_name(staging_file.name + ".wal"), staging_read_model):
        leftover.unlink(missing_ok=True)  # from a publication that was killed midway
    history = _previous_publications(store)
    row_counts: dict[str, int] = {}
    columns: dict[str, list[str]] = {}  # relation -> column names, as copied
    steps: dict[str, float] = {}
    step_started = time.perf_counter()

    def step_done(name: str) -> None:
        nonlocal step_started
        now = time.perf_counter()
        steps[name] = round(now - step_started, 3)
        step_started = now

    con = connect(staging_file)
    try:
        con.execute("set enable_progress_bar = false")
        attach(con, warehouse, "build", read_only=True)
        for table in tables:
            columns[table.relation] = _columns(con, table.schema, table.name)
            if not columns[table.relation]:
                raise PublishError(
                    f"{table.relation} is marked for publishing but does not exist in {warehouse}; "
                    "run the pipeline (or dbt build) before publishing"
                )
            con.execute(f"create schema if not exists {quote_identifier(table.schema)}")
            order = f" order by {', '.join(map(quote_identifier, table.order_by))}" if table.order_by else ""
            con.execute(f"create table {table.relation} as select * from build.{table.relation}{order}")
            for column in table.indexes:
                con.execute(
                    f"create index {quote_identifier(f'{table.name}__{column}')} on {table.relation} ({quote_identifier(column)})"
                )
            row_counts[table.relation] = con.execute(f"select count(*) from {table.relation}").fetchone()[0]
            _comment(con, "table", table.relation, table, columns[table.relation])
        con.execute("detach build")
        step_done("copy")
        con.execute("create schema bi")
        # Keyed pseudonyms need the key, which must not be in the store: relations with one are tables
        # computed here (the key is a session variable, gone with this connection); the rest are views.
        con.execute(f"set variable {MASKING_KEY_VARIABLE} = ?", [masking_key(store, create=True)])
        for table in tables:
            selected = ", ".join(
                f"{mask_sql(column, table.masked_columns[column])} as {quote_identifier(column)}"
                if column in table.masked_columns
                else quote_identifier(column)
                for column in columns[table.relation]
            )
            kind = "table" if "hash" in table.masked_columns.values() else "view"
            relation = f"bi.{quote_identifier(table.name)}"
            con.execute(f"create {kind} {relation} as select {selected} from {table.relation}")
            _comment(con, kind, relation, table, columns[table.relation], masked=True)
        step_done("bi")
        con.execute("create schema serving")
        masked = {table.name: table.masked_columns for table in tables}
        write_masking_rules(con, masked)
        published_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        # The profile read model: the API's lookups (identifier -> documents), same run id as this store.
        counts = write_read_model(con, staging_read_model, run_id, published_at.isoformat(), masked)
        con.execute(f"reset variable {MASKING_KEY_VARIABLE}")
        row_counts["profile_read_model.documents"] = counts.documents
        row_counts["profile_read_model.identifiers"] = counts.identifiers
        step_done("read_model")
        con.execute(f"""
            create table {PUBLICATIONS_TABLE} (
                run_id varchar primary key, started_at timestamp, published_at timestamp,
                row_counts json, checks json, publish_seconds double
            )""")
        history = [row for row in history if row[0] != run_id]  # publishing a run again replaces its record
        kept_history = history[-(keep_history - 1) :] if keep_history > 1 else []
        if kept_history:
            con.executemany(f"insert into {PUBLICATIONS_TABLE} values (?, ?, ?, ?, ?, ?)", kept_history)
        con.execute(
            f"insert into {PUBLICATIONS_TABLE} values (?, ?, ?, ?, ?, ?)",
            [
                run_id,
                started_at,
                published_at,
                json.dumps(row_counts),
                json.dumps(checks or {}),
                round(time.perf_counter() - began, 3),
            ],
        )
        con.execute("checkpoint")
    except BaseException:
        con.close()
        staging_file.unlink(missing_ok=True)
        staging_read_model.unlink(missing_ok=True)
        raise
    con.close()
    _fsync(staging_file)
    _fsync(staging_read_model)
    # The read model first: whoever sees the new store finds the new read model already in place (the API
    # switches to a publication only when both carry its run id: cdp/serving/store.py).
    os.replace(staging_read_model, read_model)
    os.replace(staging_file, store)  # the atomic step: readers see all of this run or none of it
    _fsync(store.parent)
    step_done("finish")
    return Publication(
        run_id=run_id,
        store=store,
        started_at=started_at or published_at,
        published_at=published_at,
        row_counts=row_counts,
        seconds=time.perf_counter() - began,
        store_bytes=store.stat().st_size,
        read_model=read_model,
        read_model_bytes=read_model.stat().st_size,
        step_seconds=steps,
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def latest_publication(store: Path) -> dict[str, Any] | None:
    """The newest row of serving.publications in the store, or None when nothing is published."""
    if not store.exists():
        return None
    with duckdb.connect(":memory:") as con:
        attach(con, store, "published", read_only=True)
        row = con.execute(
            f"select run_id, started_at, published_at, row_counts, checks, publish_seconds "
            f"from published.{PUBLICATIONS_TABLE} order by published_at desc limit 1"
        ).fetchone()
    if row is None:
        return None
    keys = ("run_id", "started_at", "published_at", "row_counts", "checks", "publish_seconds")
    record = dict(zip(keys, row))
    record["row_counts"] = json.loads(record["row_counts"])
    record["checks"] = json.loads(record["checks"])
    return record
