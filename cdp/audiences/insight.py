"""What the audiences look like in the warehouse: sizes and their change, overlaps, a preview."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl


@dataclass(frozen=True)
class AudienceSize:
    name: str
    members: int
    change: int | None  # members now minus members after the previous run (None: first run)
    realized: int
    exited: int


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
        ).fetchone()[0]
    )


def audience_sizes(con: duckdb.DuckDBPyConnection) -> list[AudienceSize]:
    """Every audience's size after the last run, its change since the run before, and who moved."""
    if not _has_table(con, "segments", "segment_sizes"):
        return []
    rows = con.execute(
        """
        with ordered as (
            select
                *,
                row_number() over (partition by segment_name order by evaluated_at desc) as runs_ago,
                lead(members) over (partition by segment_name order by evaluated_at desc) as previous_members
            from segments.segment_sizes
        )
        select segment_name, members, members - previous_members, realized, exited
        from ordered where runs_ago = 1 order by segment_name
        """
    ).fetchall()
    return [AudienceSize(*row) for row in rows]


def size_history(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    if not _has_table(con, "segments", "segment_sizes"):
        return pl.DataFrame(schema={"evaluated_at": pl.Datetime, "segment_name": pl.String, "members": pl.Int64})
    return con.execute(
        "select evaluated_at, segment_name, members, realized, exited from segments.segment_sizes "
        "order by evaluated_at, segment_name"
    ).pl()


def overlap_matrix(con: duckdb.DuckDBPyConnection, names: list[str]) -> pl.DataFrame:
    """Members in both audiences, for every pair of `names` (the diagonal is each audience's size):
    columns segment_name, then one per name."""
    if not names:
        return pl.DataFrame()
    pairs = con.execute(
        """
        with members as (
            select segment_name, profile_id from segments.segment_memberships
            where list_contains(?, segment_name)
        )
        select a.segment_name as row_name, b.segment_name as column_name, count(*) as shared
        from members as a
        inner join members as b on a.profile_id = b.profile_id
        group by 1, 2
        """,
        [names],
    ).fetchall()
    shared = {(row, column): count for row, column, count in pairs}
    return pl.DataFrame(
        {"segment_name": names, **{column: [shared.get((row, column), 0) for row in names] for column in names}}
    )


def known_audiences(con: duckdb.DuckDBPyConnection) -> list[str]:
    if _has_table(con, "segments", "segment_sizes"):
        return [
            row[0]
            for row in con.execute("select distinct segment_name from segments.segment_sizes order by 1").fetchall()
        ]
    return [
        row[0]
        for row in con.execute("select distinct segment_name from segments.segment_memberships order by 1").fetchall()
    ]


def sample_members(con: duckdb.DuckDBPyConnection, model: str, limit: int) -> pl.DataFrame:
    """A deterministic sample (by a hash of the profile id) of an audience's rows."""
    return con.execute(f"select * from segments.{model} order by hash(profile_id), profile_id limit ?", [limit]).pl()


def rfm_grid(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """Buyers per (recency score, frequency score) with their mean monetary value; None until the
    traits carry RFM scores."""
    columns = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_schema = 'profiles' "
            "and table_name = 'profile_traits'"
        ).fetchall()
    }
    if not {"rfm_recency_score", "rfm_frequency_score"} <= columns:
        return None
    return con.execute(
        """
        select rfm_recency_score as recency, rfm_frequency_score as frequency, count(*) as buyers,
               avg(lifetime_revenue)::double as mean_revenue
        from profiles.profile_traits
        where rfm_recency_score is not null and rfm_frequency_score is not null
        group by 1, 2 order by 1, 2
        """
    ).pl()
