"""Late parents (issue 19 item 17): exports are cut at slightly different moments, so order lines arrive
a run before their order header. The run must not fail for it: the lines wait, counted and visible in
xdm.xdm_product_list_items_pending with their reason, and join xdm_product_list_items once the order
is loaded. Only real integrity errors block.

Two shapes: in the shared pipeline runs, the red-dress order's line is delivered before run 1 and its
order before run 3 (whole `cdp run`s: runs 1 and 2 must pass with the line waiting, run 3 joins it and
the red-dress audience test sees her); and on a small generated workspace, the last 1% of the
web-shop orders export held back for a run, loaded and built through the XDM models (where the
relationships test used to fail), then the held-back orders loaded and built again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import polars as pl

import data_contracts
from support.equality import table_differences
from support.pipeline_runs import RED_DRESS_ORDER, run_dbt
from support.pipeline_runs import query as query_runs
from support.workspace import DEMO_AS_OF, Workspace

PEOPLE = 600  # the smallest demo whose CRM file stays within its 2% reject rate (8 planted bad rows)
SEED = 23
HELD_BACK = 0.01
PENDING = "xdm.xdm_product_list_items_pending"
# The XDM layer and everything it needs (staging views, seeds), with their tests: the relationships
# test of xdm_product_list_items is the one a late parent used to fail.
XDM_BUILD = "+xdm_experience_events +xdm_product_list_items +xdm_product_list_items_pending"
XDM_TABLES = ("xdm_experience_events", "xdm_product_list_items", "xdm_product_list_items_pending")


def test_a_line_two_runs_ahead_of_its_order_waits_then_joins(runs):
    assert [fingerprint[PENDING][0] for fingerprint in runs.fingerprints] == [1, 1, 0]
    assert all("order lines waiting for their order: 1 " in output for output in runs.outputs[:2])
    assert "waiting for their order" not in runs.outputs[2]
    item = query_runs(
        runs,
        f"select record_id from xdm.xdm_product_list_items where product_list_item_id = "
        f"'webshop__order_lines:{RED_DRESS_ORDER}-0'",
    )
    assert item["record_id"].to_list() == [f"webshop__orders:{RED_DRESS_ORDER}"]


def query(workspace: Workspace, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        return con.execute(sql).pl()


def hold_back_the_last_orders(workspace: Workspace) -> tuple[Path, list[str]]:
    """Cut the orders export: its last 1% of lines (planted bad rows excepted) come a run later."""
    orders_dir = workspace.data_dir / "landing" / "webshop" / "orders"
    (orders_file,) = orders_dir.glob("*.jsonl")
    planted = pl.read_csv(workspace.data_dir / "truth" / "planted_bad_rows.csv", infer_schema=False)
    planted_lines = {
        int(line) for line in planted.filter(pl.col("file").str.ends_with(orders_file.name))["line"].to_list()
    }
    lines = orders_file.read_text().splitlines()
    cut = int(len(lines) * (1 - HELD_BACK))
    late = [line for number, line in enumerate(lines[cut:], start=cut + 1) if number not in planted_lines]
    first = lines[:cut] + [line for number, line in enumerate(lines[cut:], start=cut + 1) if number in planted_lines]
    orders_file.write_text("\n".join(first) + "\n")
    return orders_dir, late


def test_the_last_percent_of_the_orders_a_run_late(make_workspace, tmp_path, capsys):
    workspace = make_workspace("late-parents")
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", str(SEED), "--as-of", DEMO_AS_OF)
    orders_dir, late_orders = hold_back_the_last_orders(workspace)
    late_order_ids = {json.loads(line)["order_id"] for line in late_orders}
    assert len(late_order_ids) >= 5

    workspace.cdp("load")
    run_dbt(workspace.env, tmp_path / "dbt-target", "build", "--select", XDM_BUILD)  # fails the test on any error

    lines = query(workspace, "select order_line_id, order_id from raw.webshop__order_lines")
    waiting = set(lines.filter(pl.col("order_id").is_in(list(late_order_ids)))["order_line_id"])
    assert waiting, "the cut must leave some order lines without their order"
    pending = query(workspace, f"select order_line_id, order_id, reason, waiting_since from {PENDING}")
    assert set(pending["order_line_id"]) == waiting
    assert pending["reason"].unique().to_list() == ["order not loaded yet"]
    assert pending["waiting_since"].null_count() == 0
    items = query(workspace, "select product_list_item_id from xdm.xdm_product_list_items")
    assert items.height == lines.height - len(waiting), "every other line is a product list item"
    with capsys.disabled():
        print(f"\nlate parents: {len(late_order_ids)} orders a run late, {len(waiting)} of {lines.height} lines waited")

    # The orders arrive: the lines leave the pending table for the product list items.
    (orders_dir / "orders_late.jsonl").write_text("\n".join(late_orders) + "\n")
    with duckdb.connect(str(workspace.warehouse)) as con:
        contract = data_contracts.load_contracts()["webshop__orders"]
        report = data_contracts.load_table(con, contract, workspace.data_dir / "landing", load_id="late")
    assert report.rows_accepted == len(late_orders)
    run_dbt(workspace.env, tmp_path / "dbt-target", "build", "--select", XDM_BUILD)
    assert query(workspace, f"select count(*) from {PENDING}").item() == 0
    items = query(workspace, "select product_list_item_id, record_id from xdm.xdm_product_list_items")
    assert items.height == lines.height
    assert {f"webshop__orders:{order_id}" for order_id in late_order_ids} <= set(items["record_id"])

    # The second build was incremental (the lines of the late orders added to the items): a full refresh of
    # a copy gives the same XDM tables, row for row.
    copy = tmp_path / "refreshed.duckdb"
    shutil.copy(workspace.warehouse, copy)
    refreshed = {**workspace.env, "CDP_WAREHOUSE": str(copy)}
    run_dbt(refreshed, tmp_path / "dbt-target-refresh", "build", "--select", XDM_BUILD, "--full-refresh")
    with duckdb.connect(str(copy), read_only=True) as con:
        con.execute(f"attach '{workspace.warehouse}' as incremental (read_only)")
        found = [table_differences(con, f"xdm.{table}", "incremental") for table in XDM_TABLES]
    assert not [problem for problem in found if problem], "\n\n".join(problem for problem in found if problem)
