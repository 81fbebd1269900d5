"""The short report printed after a pipeline run: read from the warehouse, not from memory, so it
shows what was committed."""

from __future__ import annotations

from pathlib import Path

import duckdb

from cdp.runlock import refuse_if_running
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
    refuse_if_running(warehouse, "cdp summary")  # a reader between two steps would stall the run
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
            lines.append(f"loads {'in run ' + run_id if run_id else 'of every run so far'}:")
            lines.append(f"{'source table':<28}{'files':>7}{'loaded':>12}{'quarantined':>13}")
            for name, files, accepted, quarantined in rows:
                lines.append(f"{name:<28}{files:>7,}{accepted:>12,}{quarantined:>13,}")
            if not rows:
                lines.append("  (no new landing files in this run)")
            for file_path, moved_to in con.execute(
                f"select file_path, moved_to from audit.loads {run_filter} {'and' if run_id else 'where'} "
                "status = 'failed' order by 1",
                [run_id] if run_id else [],
            ).fetchall():
                lines.append(f"rejected whole: {file_path} -> {moved_to} (reason in audit.loads.error)")
        if _table_exists(con, "xdm", "xdm_product_list_items_pending"):
            waiting = con.execute("select count(*) from xdm.xdm_product_list_items_pending").fetchone()[0]
            if waiting:
                lines.append(
                    f"order lines waiting for their order: {waiting:,} (xdm.xdm_product_list_items_pending; "
                    "they join when the order is loaded)"
                )
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
            lines += _sync_lines(con, run_id)
    lines.append(f"warehouse: {warehouse}")
    return "\n".join(lines)


def _sync_lines(con: duckdb.DuckDBPyConnection, run_id: str | None) -> list[str]:
    """Sync counts of `run_id`; without one, each sync's latest run, labelled with its run and time
    (counts of different runs are never added up)."""
    if run_id:
        rows = con.execute(
            """
            select sync_name, run_id, max(started_at), sum(added), sum(changed), sum(removed), sum(sent), sum(failed),
                   sum(coalesce(held_out, 0))
            from activation.sync_runs where run_id = ? and not coalesce(dry_run, false) group by 1, 2 order by 1
            """,
            [run_id],
        ).fetchall()
        header = f"syncs in run {run_id}:"
    else:
        rows = con.execute(
            """
            select sync_name, run_id, started_at, added, changed, removed, sent, failed, coalesce(held_out, 0)
            from activation.sync_runs where not coalesce(dry_run, false)
            qualify row_number() over (partition by sync_name order by started_at desc) = 1
            order by 1
            """
        ).fetchall()
        header = "syncs, the latest run of each:"
    if not rows:
        return []
    lines = [header]
    for name, sync_run, started_at, added, changed, removed, sent, failed, held_out in rows:
        label = "" if run_id else f"  (run {sync_run}, {started_at:%Y-%m-%d %H:%M} UTC)"
        lines.append(
            f"sync {name:<24} sent {sent:>7,} rows (added {added:,}, changed {changed:,}, "
            f"removed {removed:,}, failed {failed:,}" + (f", held out {held_out:,}" if held_out else "") + f"){label}"
        )
    return lines
