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

A table whose fingerprint (definition and content: serving.table_fingerprints) is the one the current
store recorded is not copied again: the new file starts as a byte copy of the store, only changed tables
are dropped and copied, and the read model is reused (stamped with the new run id) when none of its tables
changed. The result is the same as a publication written from scratch (`reuse=False`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
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
from cdp.serving.readmodel import READ_MODEL_INPUTS, read_model_path, reuse_read_model, write_read_model
from cdp.warehouse import attach, connect

PUBLICATIONS_TABLE = "serving.publications"
# Per published table: a fingerprint of its content and definition, so the next publication keeps a table
# that did not change instead of copying, sorting and indexing it again.
FINGERPRINTS_TABLE = "serving.table_fingerprints"
MAX_FREE_SHARE = 0.25  # of a store's blocks free (dropped tables' pages) beyond which it is written anew
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
    # tables kept as the previous publication left them (unchanged content and definition)
    kept_tables: tuple[str, ...] = ()
    read_model_reused: bool = False

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
    reuse: bool = True,
) -> Publication:
    """Copy the published tables of `warehouse` into a new file and rename it over `store`. With `reuse`,
    the new file starts as a copy of the previous publication whose tables that did not change (same
    fingerprint) stay as they are, and the read model is reused when none of its tables changed."""
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

    key = masking_key(store, create=True)
    previous = _previous_fingerprints(store) if reuse and history else {}
    if previous:
        shutil.copyfile(store, staging_file)  # the previous publication, whose unchanged tables stay as they are
    try:
        con = connect(staging_file)
    except duckdb.Error:  # a copy this process cannot open (another encryption key): publish anew
        staging_file.unlink(missing_ok=True)
        previous = {}
        con = connect(staging_file)
    kept: list[str] = []
    read_model_reused = False
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
        fingerprints = {table.relation: _fingerprint(con, table, key) for table in tables}
        step_done("fingerprint")
        if previous:
            kept = [t.relation for t in tables if previous.get(t.relation, ("", 0))[0] == fingerprints[t.relation]]
            _drop_all_but(con, kept)
        for table in tables:
            if table.relation in kept:
                row_counts[table.relation] = previous[table.relation][1]
                continue
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
        con.execute("create schema if not exists bi")
        # Keyed pseudonyms need the key, which must not be in the store: relations with one are tables
        # computed here (the key is a session variable, gone with this connection); the rest are views.
        con.execute(f"set variable {MASKING_KEY_VARIABLE} = ?", [key])
        for table in tables:
            if table.relation in kept:
                continue
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
        con.execute(
            f"create table {FINGERPRINTS_TABLE} (relation varchar primary key, fingerprint varchar, row_count bigint)"
        )
        con.executemany(
            f"insert into {FINGERPRINTS_TABLE} values (?, ?, ?)",
            [(relation, fingerprint, row_counts[relation]) for relation, fingerprint in fingerprints.items()],
        )
        published_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        # The profile read model: the API's lookups (identifier -> documents), same run id as this store;
        # the previous one, stamped with this run id, when none of the tables it is made of changed.
        counts = None
        published = {table.relation for table in tables}
        if previous and not (READ_MODEL_INPUTS & published) - set(kept):
            counts = reuse_read_model(read_model, staging_read_model, history[-1][0], run_id, published_at.isoformat())
            read_model_reused = counts is not None
        if counts is None:
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
        kept_tables=tuple(kept),
        read_model_reused=read_model_reused,
    )


def _fingerprint(con: duckdb.DuckDBPyConnection, table: PublishedTable, key: str) -> str:
    """What a published table is made of: its columns and types, how it is published (order, indexes,
    maskings, descriptions), the masking key (keyed pseudonyms), and its content (row count and the sum of
    its rows' hashes: any order, a duplicated row counts twice). One scan of the build table, a fraction
    of copying, sorting and indexing it."""
    definition = con.execute(
        "select list([column_name, data_type] order by ordinal_position) from information_schema.columns "
        "where table_catalog = 'build' and table_schema = ? and table_name = ?",
        [table.schema, table.name],
    ).fetchone()[0]
    rows, content = con.execute(
        f"select count(*), coalesce(sum(hash(t)::hugeint), 0) from build.{table.relation} as t"
    ).fetchone()
    text = json.dumps([repr(table), definition, hashlib.sha256(key.encode()).hexdigest(), rows, str(content)])
    return hashlib.sha256(text.encode()).hexdigest()


def _previous_fingerprints(store: Path) -> dict[str, tuple[str, int]]:
    """relation -> (fingerprint, row count) of the store's publication; empty when it has none (a store
    published before fingerprints, or unreadable) or when a quarter of its file is free blocks (the pages
    of tables dropped by earlier publications: a DuckDB file does not shrink): then everything is copied
    into a new file, which compacts it."""
    try:
        with duckdb.connect(":memory:") as con:
            attach(con, store, "previous", read_only=True)
            free, total = con.execute(
                "select free_blocks, total_blocks from pragma_database_size() where database_name = 'previous'"
            ).fetchone()
            if total and free > MAX_FREE_SHARE * total:
                return {}
            rows = con.execute(f"select relation, fingerprint, row_count from previous.{FINGERPRINTS_TABLE}").fetchall()
    except duckdb.Error:
        return {}
    return {relation: (fingerprint, row_count) for relation, fingerprint, row_count in rows}


def _drop_all_but(con: duckdb.DuckDBPyConnection, kept: list[str]) -> None:
    """In the copy of the previous publication: drop every table (and its BI-safe relation) but those
    kept, and the serving schema (rewritten by every publication)."""
    con.execute("drop schema if exists serving cascade")
    relations = con.execute(  # views first: they read the tables
        "select schema_name, view_name, 'view' from duckdb_views() "
        "where database_name = current_database() and not internal "
        "union all select schema_name, table_name, 'table' from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    kept_names = {relation.split(".", 1)[1] for relation in kept}
    for schema, name, kind in relations:
        if schema == "bi" and name in kept_names:
            continue
        if schema != "bi" and f"{schema}.{name}" in kept:
            continue
        con.execute(f"drop {kind} if exists {quote_identifier(schema)}.{quote_identifier(name)}")


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
