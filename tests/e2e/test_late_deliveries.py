"""Late parents (issue 19 item 17): exports are cut at slightly different moments, so order lines arrive
a run before their order header. The run must not fail for it: the lines wait, counted and visible in
xdm.xdm_product_list_items_pending with their reason, and join xdm_product_list_items once the order
is loaded. Only real integrity errors block.

One small generated workspace: the last 1% of the web-shop orders file is held back for a run (the
planted bad rows stay in the first delivery, so the late file is clean), one `cdp run` on the cut
delivery, then the held-back orders are loaded and the XDM models built again."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from support.pipeline_runs import run_dbt
from support.workspace import DEMO_AS_OF, Workspace

PEOPLE = 600  # the smallest demo whose CRM file stays within its 2% reject rate (8 planted bad rows)
SEED = 23
HELD_BACK = 0.01


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


def test_order_lines_wait_for_a_late_order_and_join_when_it_arrives(make_workspace, tmp_path):
    workspace = make_workspace("late-parents")
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", str(SEED), "--as-of", DEMO_AS_OF)
    orders_dir, late_orders = hold_back_the_last_orders(workspace)
    late_order_ids = {json.loads(line)["order_id"] for line in late_orders}
    assert len(late_order_ids) >= 5

    run = workspace.cdp("run")  # fails the test unless the run succeeds

    lines = query(workspace, "select order_line_id, order_id from raw.webshop__order_lines")
    waiting = set(lines.filter(pl.col("order_id").is_in(list(late_order_ids)))["order_line_id"])
    assert waiting, "the cut must leave some order lines without their order"
    pending = query(
        workspace, "select order_line_id, order_id, reason, waiting_since from xdm.xdm_product_list_items_pending"
    )
    assert set(pending["order_line_id"]) == waiting
    assert pending["reason"].unique().to_list() == ["order not loaded yet"]
    assert pending["waiting_since"].null_count() == 0
    items = query(workspace, "select product_list_item_id from xdm.xdm_product_list_items")
    assert items.height == lines.height - len(waiting), "every other line is a product list item"
    assert f"order lines waiting for their order: {len(waiting):,}" in run.stdout

    # The orders arrive: the lines leave the pending table for the product list items.
    (orders_dir / "orders_late.jsonl").write_text("\n".join(late_orders) + "\n")
    workspace.cdp("load")
    run_dbt(
        workspace.env,
        tmp_path / "dbt-target",
        "build",
        "--select",
        "xdm_experience_events xdm_product_list_items xdm_product_list_items_pending",
    )
    assert query(workspace, "select count(*) from xdm.xdm_product_list_items_pending").item() == 0
    items = query(workspace, "select product_list_item_id, record_id from xdm.xdm_product_list_items")
    assert items.height == lines.height
    assert {f"webshop__orders:{order_id}" for order_id in late_order_ids} <= set(items["record_id"])
