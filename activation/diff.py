"""The diff: compare an audience with what its destination holds (activation.sync_state), in SQL,
so it scales with the warehouse rather than with Python."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from activation.errors import ActivationError
from activation.spec import SyncSpec
from activation.state import ensure_state_tables
from activation.suppression import excluded_audience_sql


@dataclass(frozen=True)
class SyncPlan:
    """Counts of the diff; the rows themselves are in temp tables sync_plan_* on the connection."""

    sync_name: str
    added: int
    changed: int
    removed: int
    invalid: int
    unchanged: int
    suppressed: int = 0  # audience rows left out by the global suppression list (activation/suppression.py)


def _audience_exists(con: duckdb.DuckDBPyConnection, audience: str) -> list[str]:
    schema, table = audience.split(".")
    return [row[0] for row in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, table]).fetchall()]


def plan_sync(con: duckdb.DuckDBPyConnection, spec: SyncSpec) -> SyncPlan:
    """Diff the audience against the committed state. Leaves temp tables sync_plan_changes
    (record_key, change_kind added|changed|removed, row_hash, row_json) and sync_plan_invalid."""
    ensure_state_tables(con)
    columns = _audience_exists(con, spec.audience)
    if not columns:
        raise ActivationError(
            f"sync {spec.name}: audience table {spec.audience} does not exist in the warehouse. "
            "Build the audience first (dbt build, or `cdp run`)."
        )
    missing = sorted(set(spec.fields.values()) - set(columns))
    if missing:
        raise ActivationError(
            f"sync {spec.name}: audience {spec.audience} has no column(s) {', '.join(missing)}; it has "
            f"{', '.join(columns)}. Fix the field mapping in {spec.path}."
        )
    mapped = ", ".join(f'"{target}" := "{column}"' for target, column in spec.fields.items())
    # The global suppression list applies to every sync: suppressed rows are not sent and, in mirror
    # mode, are removed from a destination that holds them.
    excluded = excluded_audience_sql(con, spec.audience, columns)
    source = f"(select * from {spec.audience} where not coalesce({excluded}, false))" if excluded else spec.audience
    suppressed = con.execute(f"select count(*) from {spec.audience} where {excluded}").fetchone()[0] if excluded else 0
    con.execute(
        f"""
        create or replace temp table sync_plan_audience as
        select
            cast("{spec.primary_key}" as varchar) as record_key,
            to_json(struct_pack({mapped}))::varchar as row_json,
            count(*) over (partition by "{spec.primary_key}") as key_copies
        from {source}
        """
    )
    con.execute(
        """
        create or replace temp table sync_plan_audience_valid as
        select record_key, row_json, md5(row_json) as row_hash
        from sync_plan_audience where record_key is not null and key_copies = 1
        """
    )
    con.execute(
        """
        create or replace temp table sync_plan_invalid as
        select record_key, row_json,
               case when record_key is null then 'null primary key' else 'duplicate primary key' end as reason
        from sync_plan_audience where record_key is null or key_copies > 1
        """
    )
    remove_clause = (
        """
        union all
        select state.record_key, 'removed', state.row_hash, state.row_json
        from held as state
        where state.record_key not in (select record_key from sync_plan_audience_valid)
          and state.record_key not in (select record_key from sync_plan_invalid where record_key is not null)
        """
        if spec.mode == "mirror" else ""
    )
    con.execute(
        f"""
        create or replace temp table sync_plan_changes as
        with held as (select * from activation.sync_state where sync_name = ?)
        select audience.record_key,
               case when held.record_key is null then 'added' else 'changed' end as change_kind,
               audience.row_hash, audience.row_json
        from sync_plan_audience_valid as audience
        left join held on held.record_key = audience.record_key
        where held.record_key is null or held.row_hash <> audience.row_hash
        {remove_clause}
        """,
        [spec.name],
    )
    counts = dict(con.execute("select change_kind, count(*) from sync_plan_changes group by 1").fetchall())
    valid = con.execute("select count(*) from sync_plan_audience_valid").fetchone()[0]
    invalid = con.execute("select count(*) from sync_plan_invalid").fetchone()[0]
    added, changed = counts.get("added", 0), counts.get("changed", 0)
    return SyncPlan(
        sync_name=spec.name,
        added=added,
        changed=changed,
        removed=counts.get("removed", 0),
        invalid=invalid,
        unchanged=valid - added - changed,
        suppressed=suppressed,
    )
