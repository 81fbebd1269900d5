"""Stable profile ids: a person keeps their profile id across runs.

Each run's connected components are matched to the previous run's ids (this model's own previous
output): when components merge, the oldest id survives; when one splits, the part holding most of
its identifiers keeps it and the others get new ids. Each row keeps the identifier's previous id,
from which identity.profile_id_history records every merge and split.
"""

import hashlib

import duckdb
import polars as pl


def _new_id(anchor_key: str, taken: set) -> str:
    """Deterministic id from the component's smallest identifier, unique among ids in use."""
    salt = 0
    while True:
        text = anchor_key if salt == 0 else f"{anchor_key}#{salt}"
        candidate = "prf_" + hashlib.md5(text.encode()).hexdigest()[:16]
        if candidate not in taken:
            return candidate
        salt += 1


def assign_profile_ids(current: pl.DataFrame, previous: pl.DataFrame | None, now) -> pl.DataFrame:
    """current: identity_key, component_id (and identity_id, numbering the keys in key order, when the
    caller has it). previous: identity_key, profile_id, profile_created_at (or None on the first run).
    Returns identity_key, component_id, profile_id, profile_created_at, previous_profile_id (the id of
    the last run where it differs)."""
    if "identity_id" not in current.columns:
        current = current.with_columns(pl.col("identity_key").rank("ordinal").cast(pl.Int64).alias("identity_id"))
    if previous is None or previous.height == 0:
        previous = pl.DataFrame(
            schema={"identity_key": pl.String, "profile_id": pl.String, "profile_created_at": pl.Datetime("us")}
        )
        # First run: nothing to match (and no join of every key against an empty table).
        joined = current.with_columns(
            pl.lit(None, pl.String).alias("previous_profile_id"),
            pl.lit(None, pl.Datetime("us")).alias("previous_created_at"),
        )
    else:
        joined = current.join(
            previous.rename({"profile_id": "previous_profile_id", "profile_created_at": "previous_created_at"}),
            on="identity_key",
            how="left",
        )
    # Each component's anchor: its smallest identifier (the smallest id, as ids follow key order).
    anchors = current.filter(pl.col("identity_id") == pl.col("identity_id").min().over("component_id")).select(
        "component_id", pl.col("identity_key").alias("anchor_key")
    )

    # Where each previous id went: identifiers per (id, component). The component with the most keeps
    # the id (ties: the component with the smallest anchor key).
    placements = (
        joined.filter(pl.col("previous_profile_id").is_not_null())
        .group_by("previous_profile_id", "component_id")
        .agg(pl.len().alias("identifiers"), pl.col("previous_created_at").min().alias("created_at"))
        .join(anchors, on="component_id")
        .sort(["previous_profile_id", "identifiers", "anchor_key"], descending=[False, True, False])
    )
    keepers = placements.unique("previous_profile_id", keep="first", maintain_order=True)
    # A component that keeps several previous ids is a merge: the oldest id survives.
    survivors = (
        keepers.sort(["component_id", "created_at", "previous_profile_id"])
        .unique("component_id", keep="first", maintain_order=True)
        .select(
            "component_id",
            pl.col("previous_profile_id").alias("profile_id"),
            pl.col("created_at").alias("profile_created_at"),
        )
    )
    assigned = anchors.join(survivors, on="component_id", how="left")
    taken = pl.concat([survivors["profile_id"], previous["profile_id"]]).unique()
    # New ids for every component without one, hashed in one vectorized pass; the rare candidate
    # already in use (or minted twice) is salted one by one.
    fresh = assigned.filter(pl.col("profile_id").is_null()).select("component_id", "anchor_key")
    with duckdb.connect() as con:
        minted = pl.from_arrow(
            con.execute("select 'prf_' || md5(anchor_key)[:16] as profile_id from fresh").arrow().read_all()
        )["profile_id"]
    fresh = fresh.with_columns(minted)
    clashes = fresh.filter(pl.col("profile_id").is_in(taken.implode()) | pl.col("profile_id").is_duplicated())
    if clashes.height:
        in_use = set(taken.to_list()) | set(
            fresh.filter(~pl.col("component_id").is_in(clashes["component_id"].implode()))["profile_id"].to_list()
        )
        clashes = clashes.sort("anchor_key")
        salted = []
        for anchor_key in clashes["anchor_key"].to_list():
            salted.append(_new_id(anchor_key, in_use))
            in_use.add(salted[-1])
        fresh = fresh.update(clashes.select("component_id", pl.Series("profile_id", salted)), on="component_id")
    assigned = assigned.update(fresh.select("component_id", "profile_id"), on="component_id").with_columns(
        pl.col("profile_created_at").fill_null(pl.lit(now).cast(pl.Datetime("us"))),
    )
    # previous_profile_id is set only where the id changed this run, so a rerun on the same data
    # writes the same table, and profile_id_history appends only real changes.
    return joined.join(assigned.select("component_id", "profile_id", "profile_created_at"), on="component_id").select(
        "identity_key",
        "component_id",
        "profile_id",
        "profile_created_at",
        pl.when(pl.col("previous_profile_id") != pl.col("profile_id"))
        .then(pl.col("previous_profile_id"))
        .alias("previous_profile_id"),
    )


def model(dbt, session):
    dbt.config(materialized="table")
    import datetime as dt

    current = pl.from_arrow(
        dbt.ref("identity_components").project("identity_key, identity_id, component_id").arrow().read_all()
    )
    schema, table = str(dbt.this).replace('"', "").split(".")[-2:]
    exists = session.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchone()[0]
    previous = (
        pl.from_arrow(
            session.execute(
                f"select identity_key, profile_id, cast(profile_created_at as timestamp) as profile_created_at from {dbt.this}"
            )
            .arrow()
            .read_all()
        )
        if exists
        else None
    )
    return assign_profile_ids(current, previous, dt.datetime.now(dt.UTC).replace(tzinfo=None)).to_arrow()
