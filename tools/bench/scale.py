"""A build warehouse N times larger for the serving benchmark, made from a real one.

Building 1M profiles through the pipeline takes hours on a shared 2-core machine; what publishing and
serving cost depends on the published tables' size and shape, not on how they were built. So
`cdp bench-serve --scale N` copies every published table of a real build N times into a new warehouse
(`<data dir>/scaled-<N>/warehouse.duckdb`). Copy 0 is the build itself; copy k > 0 gets its own profile
ids, event, record and purchase ids (suffix `~k`), emails (`r<k>x.` before the local part), phones and
other identifiers, so the store has N times the profiles and every identifier still finds exactly one.
Every identifier stays well-formed, as the API's lookup normalizes it (cdp.serving.documents):

- phones: copy k of the i-th distinct phone is `+0<k>` and i on 12 digits. No real E.164 number starts
  with 0, so copies never meet the build's phones nor each other, and every one has 14 digits
  whatever the original's length (prefixing the original could pass the 15-digit limit);
- the SHA-256 of a copied email or phone is the SHA-256 of the copy, as the pipeline computes it.

Tables without a profile id (seeds, the namespaces) are copied once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from cdp.serving.documents import quote_identifier
from cdp.serving.publish import PublishedTable, published_tables

MAX_COPIES = 9  # phones and emails carry the copy as one digit
SUFFIXED_IDS = ("event_id", "record_id", "decided_by_record_id", "commerce_order_purchase_id", "product_list_item_id")
PHONE_NUMBERS = "scale_phone_numbers"  # temp table: every distinct phone of the build and its rank


def _phone_copy(value_sql: str, copy: int) -> str:
    return f"(select '+0{copy}' || lpad(n::varchar, 12, '0') from {PHONE_NUMBERS} where {PHONE_NUMBERS}.phone = {value_sql})"


def _copy_expression(table: str, column: str, columns: Sequence[str], copy: int) -> str | None:
    """The column's value in copy `copy` (> 0), or None when it stays as it is. Columns are qualified
    with the copied table's alias: inside the phone subquery, a bare `phone` would be the rank table's."""
    c = f"copied.{quote_identifier(column)}"
    if column.endswith("profile_id") or column in SUFFIXED_IDS:
        return f"{c} || '~{copy}'"
    if column == "email":
        return f"'r{copy}x.' || {c}"
    if column == "phone":
        return _phone_copy(c, copy)
    if table == "profile_identities" and "namespace" in columns:
        value = "copied.identity_value"
        email, phone = f"'r{copy}x.' || {value}", _phone_copy(value, copy)
        if column == "identity_value":
            return (
                f"case copied.namespace when 'email' then {email} when 'phone' then {phone} "
                f"else {value} || '~{copy}' end"
            )
        if column == "identity_value_sha256":
            return (
                f"case copied.namespace when 'email' then sha256({email}) when 'phone' then sha256({phone}) "
                f"else {c} end"
            )
    return None


def _columns(con: duckdb.DuckDBPyConnection, table: PublishedTable) -> list[str]:
    rows = con.execute(
        "select column_name from information_schema.columns where table_catalog = 'source' "
        "and table_schema = ? and table_name = ? order by ordinal_position",
        [table.schema, table.name],
    ).fetchall()
    if not rows:
        raise FileNotFoundError(
            f"table {table.relation} missing from the build warehouse; finish the build (`cdp run`) before scaling it"
        )
    return [row[0] for row in rows]


def scale_warehouse(
    source: Path,
    target: Path,
    copies: int,
    echo: Callable[[str], None] = print,
    tables: Sequence[PublishedTable] | None = None,
) -> Path:
    """Write `target` with every published table of `source` `copies` times; reuses a finished one."""
    if not 1 <= copies <= MAX_COPIES:
        raise ValueError(f"--scale must be 1 to {MAX_COPIES}; got {copies}")
    tables = list(tables or published_tables())
    done = target.with_name(target.name + ".done")
    if target.exists() and done.exists() and done.read_text().strip() == f"{source} x{copies}":
        echo(f"scaled warehouse {target} (x{copies} of {source}) reused")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    done.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(target)) as con:
        con.execute("set enable_progress_bar = false")
        con.execute(f"attach '{source}' as source (read_only)")
        columns = {table.relation: _columns(con, table) for table in tables}
        phone_sources = [
            f"select phone from source.{table.relation}" for table in tables if "phone" in columns[table.relation]
        ] + [
            f"select identity_value from source.{table.relation} where namespace = 'phone'"
            for table in tables
            if table.name == "profile_identities"
        ]
        con.execute(
            f"create temp table {PHONE_NUMBERS} as select phone, row_number() over (order by phone) as n "
            f"from ({' union '.join(phone_sources) or 'select null::varchar as phone'}) where phone is not null"
        )
        for table in tables:
            names = columns[table.relation]
            con.execute(f"create schema if not exists {quote_identifier(table.schema)}")
            per_copy = any(c.endswith("profile_id") for c in names)
            selects = [f"select * from source.{table.relation}"]
            for copy in range(1, copies if per_copy else 1):
                replaced = [(c, _copy_expression(table.name, c, names, copy)) for c in names]
                projection = ", ".join(
                    f"{e} as {quote_identifier(c)}" if e else f"copied.{quote_identifier(c)}" for c, e in replaced
                )
                selects.append(f"select {projection} from source.{table.relation} as copied")
            con.execute(f"create table {table.relation} as {' union all '.join(selects)}")
    done.write_text(f"{source} x{copies}")
    echo(f"scaled warehouse {target}: x{copies} of {source} in {time.perf_counter() - started:.0f} s")
    return target
