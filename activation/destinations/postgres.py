"""PostgreSQL table: each batch in one transaction. Rows arrive as COPY text lines rendered in the
warehouse (activation/diff.py), written in one piece. A batch of only new rows (ones the state says the
table does not hold) is COPied straight into the table; if some are there after all (a rerun after a
crash between the send and the engine's commit, or another writer), the COPY fails on the key and the
batch goes the upsert way: COPY into a temp table of the table's column types, one INSERT ... ON
CONFLICT DO UPDATE, one DELETE. A batch the server refuses (bad value, constraint) is replayed row by
row under savepoints so only the offending rows are rejected, with PostgreSQL's message.

The table is created (text columns, primary key on the key field) when missing; a table you create
yourself may use any column types: COPY parses the text into them."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from activation.destinations import Batch, BatchResult
from activation.errors import ActivationError
from activation.spec import SyncSpec

DEFAULT_BATCH_SIZE = 100_000  # COPY likes big batches; HTTP destinations default to 500
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
    sends_json = False  # rows go as COPY text, deletes by key: the engine renders no JSON, holds none

    @classmethod
    def from_settings(cls, spec: SyncSpec) -> PostgresDestination:
        schema, _, table = str(spec.setting("table")).rpartition(".")
        return cls(
            spec.name,
            spec.secret("dsn_env"),
            schema or "public",
            table,
            spec.key_field,
            [*spec.fields, *spec.identifiers],
            int(spec.setting("batch_size") or DEFAULT_BATCH_SIZE),
        )

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
            con.execute(
                sql.SQL("create table if not exists {} ({}, primary key ({}))").format(
                    target,
                    sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f)) for f in self.fields),
                    sql.Identifier(self.key_field),
                )
            )
            types = dict(
                con.execute(
                    "select attname, format_type(atttypid, atttypmod) from pg_attribute "
                    "where attrelid = %s::regclass and attnum > 0 and not attisdropped",
                    [f'"{self.schema}"."{self.table}"'],
                ).fetchall()
            )
            missing = [f for f in self.fields if f not in types]
            if missing:
                raise ActivationError(
                    f"sync {self.sync_name}: PostgreSQL table {self.schema}.{self.table} has no "
                    f"column(s) {', '.join(missing)}; it has {', '.join(types)}. Add them or "
                    "change the field mapping."
                )
            self.key_type = types[self.key_field]
            columns = sql.SQL(", ").join(sql.Identifier(f) for f in self.fields)
            # Staging table of the target's column types (and lengths): COPY parses and checks values there.
            con.execute(
                sql.SQL(
                    "create temp table if not exists cdp_incoming on commit delete rows as "
                    "select {} from {} with no data"
                ).format(columns, target)
            )
        columns = sql.SQL(", ").join(sql.Identifier(f) for f in self.fields)
        self.statements = {
            "copy_direct": sql.SQL("copy {target} ({columns}) from stdin").format(target=target, columns=columns),
            "copy_staging": sql.SQL("copy cdp_incoming ({columns}) from stdin").format(columns=columns),
            "upsert": sql.SQL(
                "insert into {target} ({columns}) select {columns} from cdp_incoming "
                "on conflict ({key}) do update set {updates}"
            ).format(
                target=target,
                columns=columns,
                key=sql.Identifier(self.key_field),
                updates=sql.SQL(", ").join(
                    sql.SQL("{0} = excluded.{0}").format(sql.Identifier(f)) for f in self.fields if f != self.key_field
                )
                or sql.SQL("{0} = excluded.{0}").format(sql.Identifier(self.key_field)),
            ),
            "delete": sql.SQL("delete from {target} where {key} = any(%s::{key_type}[])").format(
                target=target, key=sql.Identifier(self.key_field), key_type=sql.SQL(self.key_type)
            ),
        }

    def _apply(self, con: psycopg.Connection, upserts: str, deletes: list[str], direct: bool = False) -> None:
        """upserts: COPY text (one line per row); deletes: keys. direct: COPY straight into the table."""
        with con.cursor() as cursor:
            if upserts:
                with cursor.copy(self.statements["copy_direct" if direct else "copy_staging"]) as copy:
                    copy.write(upserts)
                if not direct:
                    cursor.execute(self.statements["upsert"])
                    cursor.execute("truncate cdp_incoming")
            if deletes:
                cursor.execute(self.statements["delete"], [deletes])

    def send(self, batch: Batch) -> BatchResult:
        upserts, deletes, only_new = _lines(batch)
        try:
            con = self._connect()
            if only_new:
                try:
                    with con.transaction():
                        self._apply(con, upserts, deletes, direct=True)
                    return BatchResult()
                except psycopg.errors.UniqueViolation:
                    pass  # some rows are there already: upsert them
            with con.transaction():
                self._apply(con, upserts, deletes)
            return BatchResult()
        except TRANSIENT as error:
            self.close()  # reconnect on the next batch
            return BatchResult(failed={op.key: f"PostgreSQL: {error}".strip() for op in batch.operations})
        except psycopg.Error:
            return self._send_row_by_row(batch)

    def _send_row_by_row(self, batch: Batch) -> BatchResult:
        """Find the rows the server refuses: each row under its own savepoint, one transaction."""
        rejected, con = {}, self._connect()
        texts = _upsert_texts(batch).to_pylist()
        lines = dict(zip([op.key for op in batch.upsert_operations], texts, strict=True))
        try:
            with con.transaction():
                for op in batch.upsert_operations + batch.delete_operations:
                    is_delete = op.key not in lines
                    try:
                        with con.transaction():
                            self._apply(con, "" if is_delete else lines[op.key] + "\n", [op.key] if is_delete else [])
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


def _upsert_texts(batch: Batch) -> pa.StringArray:
    if batch.frame is None or "row_text" not in batch.frame.column_names:
        raise ActivationError(
            f"sync {batch.sync_name}: the PostgreSQL destination needs the rows as COPY text "
            "(run it through activation.run_sync)."
        )
    keep = pc.not_equal(batch.frame.column("change_kind"), "removed")
    return pc.filter(batch.frame.column("row_text"), keep).combine_chunks()


def _lines(batch: Batch) -> tuple[str, list[str], bool]:
    """The batch's upserts as one COPY text payload, its deletes as keys, and whether every upsert is
    a new row. Joined in Arrow: no Python object per row."""
    texts = _upsert_texts(batch)
    kinds = batch.frame.column("change_kind")
    deletes = pc.filter(batch.frame.column("record_key"), pc.equal(kinds, "removed")).to_pylist()
    payload = ""
    if len(texts):
        rows = pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts)
        payload = pc.binary_join(rows, "\n")[0].as_py() + "\n"
    return payload, deletes, not pc.any(pc.equal(kinds, "changed")).as_py()
