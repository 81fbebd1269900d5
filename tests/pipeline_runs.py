"""The shared pipeline runs: three `cdp run`s in one data dir on a small generated dataset.

The first builds everything; the second, with no new data, must change no table (but the append-only
history of audience memberships) and sync nothing; before the third, one late order turns a lapsed
buyer into a high-value customer, and a small red-dress order brings a woman into the audience
red_dress_buyers. Any test module can use the session fixture `runs` (conftest) and read the
warehouse with `query`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import duckdb
import polars as pl

from conftest import DEMO_AS_OF, Workspace

PEOPLE = 2500  # enough buyers for the propensity models' 100-per-class minimum
SEED = 11
MODEL_SCHEMAS = ("raw", "quarantine", "staging", "xdm", "identity", "profiles", "segments")
# Append-only: every run adds its rows (tests/test_segments.py checks what a rerun adds).
APPEND_ONLY_TABLES = ("segments.segment_membership_history", "segments.segment_sizes")
HIGH_VALUE_MIN_REVENUE = 1000
LAPSED_AFTER_DAYS = 90
AS_OF_END = dt.datetime.fromisoformat(DEMO_AS_OF) + dt.timedelta(days=1)


@dataclass
class PipelineRuns:
    workspace: Workspace
    outputs: list[str]
    fingerprints: list[dict[str, tuple]]
    syncs_by_run: list[dict[str, dict]]
    promoted_profile: str
    red_dress_profile: str = ""
    memberships_by_run: list[pl.DataFrame] = field(default_factory=list)


def table_fingerprints(con: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    """Row count and an order-independent hash of every model table, and of the sync state."""
    tables = con.execute(
        f"""
        select table_schema || '.' || table_name from information_schema.tables
        where table_schema in {MODEL_SCHEMAS} or (table_schema = 'activation' and table_name = 'sync_state')
        order by 1
        """
    ).fetchall()
    return {name: con.execute(f"select count(*), bit_xor(hash(t)) from {name} as t").fetchone() for (name,) in tables}


def latest_sync_runs(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    frame = con.execute(
        """
        select * from activation.sync_runs
        where run_id = (select run_id from activation.sync_runs order by started_at desc limit 1)
        """
    ).pl()
    return {row["sync_name"]: row for row in frame.to_dicts()}


def add_late_order_for_a_lapsed_buyer(workspace: Workspace) -> str:
    """Write one big completed order, dated the as-of day, for a lapsed buyer who is not high value
    and has a shop account; return that buyer's profile id."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        profile_id, shop_customer_id = con.execute(
            """
            select lapsed.profile_id, min(graph.identity_value)
            from segments.seg_lapsed_buyers as lapsed
            inner join identity.identity_graph as graph
                on graph.profile_id = lapsed.profile_id and graph.namespace = 'shop_customer_id'
            where lapsed.profile_id not in (select profile_id from segments.seg_high_value)
            group by 1 order by 1 limit 1
            """
        ).fetchone()
        currency = con.execute("select min(currency) from raw.webshop__orders").fetchone()[0]
    order = {
        "order_id": "E2E-LATE-1", "customer_id": shop_customer_id, "email": None, "phone": None,
        "ordered_at": f"{DEMO_AS_OF}T12:00:00Z", "total_amount": "5000.00", "currency": currency,
        "status": "completed", "shipping_city": None, "shipping_postcode": None, "shipping_country": None,
    }
    orders_dir = workspace.data_dir / "landing" / "webshop" / "orders"
    (orders_dir / "orders_late_addition.jsonl").write_text(json.dumps(order) + "\n")
    return profile_id


def add_red_dress_order_for_a_woman(workspace: Workspace) -> str:
    """Write one small completed order with a red dress, dated the as-of day, for a woman who is not in
    red_dress_buyers and whom it moves in no synced audience (a recent buyer, not high value even
    after it); return her profile id."""
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        profile_id, shop_customer_id = con.execute(
            f"""
            select profiles.profile_id, min(graph.identity_value)
            from profiles.profiles as profiles
            inner join profiles.profile_traits as traits on traits.profile_id = profiles.profile_id
            inner join identity.identity_graph as graph
                on graph.profile_id = profiles.profile_id and graph.namespace = 'shop_customer_id'
            where profiles.gender = 'F' and profiles.is_known
                and traits.lifetime_revenue < {HIGH_VALUE_MIN_REVENUE} - 100
                and traits.last_purchase_at >= timestamp '{DEMO_AS_OF}' - interval 30 day
                and profiles.profile_id not in (select profile_id from segments.seg_red_dress_buyers)
            group by 1 order by 1 limit 1
            """
        ).fetchone()
        currency = con.execute("select min(currency) from raw.webshop__orders").fetchone()[0]
    order = {
        "order_id": "E2E-LATE-2", "customer_id": shop_customer_id, "email": None, "phone": None,
        "ordered_at": f"{DEMO_AS_OF}T13:00:00Z", "total_amount": "49.00", "currency": currency,
        "status": "completed", "shipping_city": None, "shipping_postcode": None, "shipping_country": None,
    }
    landing = workspace.data_dir / "landing" / "webshop"
    (landing / "orders" / "orders_late_red_dress.jsonl").write_text(json.dumps(order) + "\n")
    pl.DataFrame({"order_line_id": ["E2E-LATE-2-0"], "order_id": ["E2E-LATE-2"], "product_id": ["SKU-E2E-RED"],
                  "product_name": ["Red Dress E2E"], "category": ["dresses"], "colour": ["red"],
                  "quantity": ["1"], "unit_price": ["49.00"]},
                 ).write_parquet(landing / "order_lines" / "order_lines_late_red_dress.parquet")
    return profile_id


def build_pipeline_runs(workspace: Workspace) -> PipelineRuns:
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", str(SEED), "--as-of", DEMO_AS_OF)
    outputs, fingerprints, syncs, memberships = [], [], [], []
    promoted = red_dress = ""
    for run_number in (1, 2, 3):
        if run_number == 3:
            promoted = add_late_order_for_a_lapsed_buyer(workspace)
            red_dress = add_red_dress_order_for_a_woman(workspace)
        outputs.append(workspace.cdp("run").stdout)
        with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
            fingerprints.append(table_fingerprints(con))
            syncs.append(latest_sync_runs(con))
            memberships.append(con.execute("select segment_name, profile_id from segments.segment_memberships").pl())
    return PipelineRuns(workspace, outputs, fingerprints, syncs, promoted, red_dress, memberships)


def query(runs: PipelineRuns, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(runs.workspace.warehouse), read_only=True) as con:
        return con.execute(sql).pl()
