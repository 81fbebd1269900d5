"""Two builds of a warehouse compared table by table (issue 20: incremental builds equal a full refresh)."""

from __future__ import annotations

import duckdb


def table_differences(
    con: duckdb.DuckDBPyConnection, table: str, other: str, ignored_columns: tuple[str, ...] = ()
) -> str | None:
    """None when `table` holds the same columns and rows (as a multiset) in the connection's database and
    in the attached database `other` (the rows compared without `ignored_columns`); else what differs,
    with a few rows of each side."""

    def columns(relation: str) -> list[str]:
        return [row[0] for row in con.execute(f"select column_name from (describe {relation})").fetchall()]

    here, there = columns(table), columns(f"{other}.{table}")
    if here != there:
        return f"{table}: columns {there} in {other}, {here} here"
    rows = f"* exclude ({', '.join(ignored_columns)})" if ignored_columns else "*"
    only_there = con.execute(f"select {rows} from {other}.{table} except all select {rows} from {table}").pl()
    only_here = con.execute(f"select {rows} from {table} except all select {rows} from {other}.{table}").pl()
    if only_there.height == 0 and only_here.height == 0:
        return None
    return (
        f"{table}: {only_there.height} row(s) only in {other}, {only_here.height} only here\n"
        f"only in {other}:\n{only_there.head(3)}\nonly here:\n{only_here.head(3)}"
    )
