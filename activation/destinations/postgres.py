"""PostgreSQL table: each batch's upserts (COPY into a temp table, then INSERT ... ON CONFLICT DO
UPDATE) and deletes in one transaction. A batch the server refuses (bad value, constraint) is replayed
row by row under savepoints so only the offending rows are rejected, with PostgreSQL's message.

The table is created (text columns, primary key on the key field) when missing; a table you create
yourself may use any column types: values are cast by json_populate_record into them."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from activation.destinations import Batch, BatchResult, RowOperation
from activation.errors import ActivationError
from activation.spec import SyncSpec

DEFAULT_BATCH_SIZE = 50_000
TRANSIENT = (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


@dataclass
class PostgresDestination:
    sync_name: str
    dsn: str
    schema: str
    table: str
    key_field: str
    fields: list[str]
    batch_size: int = DEFAULT_BATCH_SIZE
    connection: psycopg.Connection | None = None
    key_type: str = "text"
    statements: dict[str, sql.Composed] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, spec: SyncSpec) -> PostgresDestination:
        schema, _, table = str(spec.setting("table")).rpartition(".")
        return cls(spec.name, spec.secret("dsn_env"), schema or "public", table, spec.key_field,
                   [*spec.fields, *spec.identifiers], int(spec.setting("batch_size") or DEFAULT_BATCH_SIZE))

    def _connect(self) -> psycopg.Connection:
        if self.connection is not None and not self.connection.closed:
            return self.connection
        try:
            self.connection = psycopg.connect(self.dsn, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise ActivationError(f"sync {self.sync_name}: cannot connect to PostgreSQL ({error}).") from error
        self._prepare(self.connection)
        return self.connection

    def _prepare(self, con: psycopg.Connection) -> None:
        target = sql.Identifier(self.schema, self.table)
        with con.transaction():
            con.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(self.schema)))
            con.execute(sql.SQL("create table if not exists {} ({}, primary key ({}))").format(
                target, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f)) for f in self.fields),
                sql.Identifier(self.key_field)))
            types = dict(con.execute(
                "select attname, format_type(atttypid, atttypmod) from pg_attribute "
                "where attrelid = %s::regclass and attnum > 0 and not attisdropped",
                [f'"{self.schema}"."{self.table}"']).fetchall())
            missing = [f for f in self.fields if f not in types]
            if missing:
                raise ActivationError(f"sync {self.sync_name}: PostgreSQL table {self.schema}.{self.table} has no "
                                      f"column(s) {', '.join(missing)}; it has {', '.join(types)}. Add them or "
                                      "change the field mapping.")
            self.key_type = types[self.key_field]
            # Rows arrive as the engine's JSON text: one COPY of a json column, cast server-side.
            con.execute("create temp table if not exists cdp_incoming (doc json) on commit delete rows")
        columns = sql.SQL(", ").join(sql.Identifier(f) for f in self.fields)
        self.statements = {
            "upsert": sql.SQL(
                "insert into {target} ({columns}) select {source} from cdp_incoming, "
                "json_populate_record(null::{target}, doc) as r on conflict ({key}) do update set {updates}"
            ).format(
                target=target, columns=columns, key=sql.Identifier(self.key_field),
                source=sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(f)) for f in self.fields),
                updates=sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(f))
                                           for f in self.fields if f != self.key_field) or sql.SQL("{0} = excluded.{0}").format(sql.Identifier(self.key_field)),
            ),
            "delete": sql.SQL("delete from {target} where {key} = any(%s::{key_type}[])").format(
                target=target, key=sql.Identifier(self.key_field), key_type=sql.SQL(self.key_type)),
        }

    def _apply(self, con: psycopg.Connection, upserts: list[RowOperation], deletes: list[RowOperation]) -> None:
        with con.cursor() as cursor:
            if upserts:
                with cursor.copy("copy cdp_incoming (doc) from stdin") as copy:
                    for op in upserts:
                        copy.write_row((op.row_json,))
                cursor.execute(self.statements["upsert"])
                cursor.execute("truncate cdp_incoming")
            if deletes:
                cursor.execute(self.statements["delete"], [[op.key for op in deletes]])

    def send(self, batch: Batch) -> BatchResult:
        try:
            con = self._connect()
            with con.transaction():
                self._apply(con, batch.upsert_operations, batch.delete_operations)
            return BatchResult()
        except TRANSIENT as error:
            self.close()  # reconnect on the next batch
            return BatchResult(failed={op.key: f"PostgreSQL: {error}".strip() for op in batch.operations})
        except psycopg.Error:
            return self._send_row_by_row(batch)

    def _send_row_by_row(self, batch: Batch) -> BatchResult:
        """Find the rows the server refuses: each row under its own savepoint, one transaction."""
        rejected, con = {}, self._connect()
        try:
            with con.transaction():
                for op in batch.upsert_operations + batch.delete_operations:
                    is_delete = op in batch.delete_operations
                    try:
                        with con.transaction():
                            self._apply(con, [] if is_delete else [op], [op] if is_delete else [])
                    except TRANSIENT:
                        raise
                    except psycopg.Error as error:
                        rejected[op.key] = f"PostgreSQL {error.sqlstate}: {str(error).splitlines()[0]}"
        except TRANSIENT as error:
            self.close()
            return BatchResult(failed={op.key: f"PostgreSQL: {error}" for op in batch.operations})
        return BatchResult(rejected=rejected)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
