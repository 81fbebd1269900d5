"""The short report printed after a pipeline run: read from the warehouse, not from memory, so it
shows what was committed."""

from __future__ import annotations

from pathlib import Path

import duckdb

from cdp.warehouse import connect


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
        ).fetchone()[0]
    )


def pipeline_summary(warehouse: Path, run_id: str | None) -> str:
    """Loads and syncs of `run_id` (all runs when None), and the current profiles and segments."""
    if not warehouse.exists():
        return f"No warehouse at {warehouse} yet: run `cdp run` (or `make demo`)."
    lines: list[str] = []
    with connect(warehouse, read_only=True) as con:
        if _table_exists(con, "audit", "loads"):
            run_filter = "where load_id = ?" if run_id else ""
            rows = con.execute(
                f"""
                select source || '__' || table_name, count(*) filter (where status = 'loaded'),
                       coalesce(sum(rows_accepted), 0), coalesce(sum(rows_quarantined), 0)
                from audit.loads {run_filter}
                group by 1 order by 1
                """,
                [run_id] if run_id else [],
            ).fetchall()
            lines.append(f"{'source table':<28}{'files':>7}{'loaded':>12}{'quarantined':>13}")
            for name, files, accepted, quarantined in rows:
                lines.append(f"{name:<28}{files:>7,}{accepted:>12,}{quarantined:>13,}")
            if not rows:
                lines.append("  (no new landing files in this run)")
        if _table_exists(con, "profiles", "profiles"):
            profiles, known = con.execute(
                "select count(*), count(*) filter (where is_known) from profiles.profiles"
            ).fetchone()
            lines.append(f"profiles built: {profiles:,} ({known:,} known people, {profiles - known:,} anonymous)")
        if _table_exists(con, "segments", "segment_memberships"):
            for name, size in con.execute(
                "select segment_name, count(*) from segments.segment_memberships group by 1 order by 1"
            ).fetchall():
                lines.append(f"segment {name:<20} {size:>8,} members")
        if _table_exists(con, "activation", "sync_runs"):
            run_filter = "where run_id = ?" if run_id else ""
            for name, added, changed, removed, sent, failed, held_out in con.execute(
                f"""
                select sync_name, sum(added), sum(changed), sum(removed), sum(sent), sum(failed),
                       sum(coalesce(held_out, 0))
                from activation.sync_runs {run_filter} group by 1 order by 1
                """,
                [run_id] if run_id else [],
            ).fetchall():
                lines.append(
                    f"sync {name:<24} sent {sent:>7,} rows (added {added:,}, changed {changed:,}, "
                    f"removed {removed:,}, failed {failed:,}" + (f", held out {held_out:,})" if held_out else ")")
                )
    lines.append(f"warehouse: {warehouse}")
    return "\n".join(lines)
