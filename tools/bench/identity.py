"""`cdp bench-identity`: the identity stage on a synthetic graph of N links, next to raw scipy.

The graph: components of geometric size (mean about 4 identifiers, like people with an email, a
phone, an account and a few cookies), each a random tree, plus long chains that make the SQL
fallback work for its rounds. Identifier keys are random strings, so their order says nothing about
the structure. Measured, each in its own process (wall time and peak RSS from wait4):

- raw scipy: connected_components on the pre-extracted dense integer arrays (the floor);
- reading the edges: the key columns of identity_edges from DuckDB into Arrow (what any engine pays);
- the identity stage as the pipeline runs it: numbering the identifiers (identity_identifiers'
  identity_id), identity_link_decisions (linking rules), identity_components (scipy) and
  identity_profile_ids (stable ids); then the pure-SQL fallback identity_components_sql.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from cdp.settings import DBT_PROJECT_DIR
from tools.bench.pipeline import run_measured

RAW_SCIPY = """
import sys, time, numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
left, right = np.load(sys.argv[1]), np.load(sys.argv[2])
n = int(max(left.max(), right.max())) + 1
started = time.perf_counter()
graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
count, labels = connected_components(graph, directed=False)
print(time.perf_counter() - started, count)
"""

READ_EDGES = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("set enable_progress_bar = false")
started = time.perf_counter()
edges = con.execute("select left_identity_key, right_identity_key from identity.identity_edges").arrow().read_all()
print(time.perf_counter() - started, edges.num_rows)
"""


def synthetic_graph(links: int, seed: int = 20) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer edges (left, right) of random trees with about `links` edges, plus long chains."""
    rng = np.random.default_rng(seed)
    chain_links = min(links // 100, 100_000)  # 1% of the links in chains of 1,000
    tree_links = links - chain_links
    sizes = rng.geometric(0.3, size=tree_links // 2) + 1  # at least 2 identifiers per component
    sizes = sizes[: np.searchsorted(np.cumsum(sizes - 1), tree_links) + 1]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    node_count = int(sizes.sum())
    component_of = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(node_count) - np.repeat(starts, sizes)
    children = np.nonzero(position > 0)[0]
    # Random recursive tree: each identifier links to a random earlier one of its component.
    parents = starts[component_of[children]] + (rng.random(len(children)) * position[children]).astype(np.int64)
    chain_nodes = np.arange(node_count, node_count + chain_links + chain_links // 1000)
    chain_left, chain_right = chain_nodes[:-1], chain_nodes[1:]
    keep = (np.arange(len(chain_left)) % 1001) != 1000  # break into chains of 1,000 links
    left = np.concatenate([children, chain_left[keep]])
    right = np.concatenate([parents, chain_right[keep]])
    total_nodes = node_count + len(chain_nodes)
    relabel = rng.permutation(total_nodes)  # integer ids say nothing about the structure either
    return relabel[left], relabel[right], total_nodes


def _dbt_model_seconds(model: str, env: dict[str, str], extra: list[str]) -> tuple[float, float]:
    """Execution time of one model as dbt reports it (run_results.json), and the process's peak RSS."""
    dbt = str(Path(sys.executable).with_name("dbt"))
    target = Path(env["CDP_DATA_DIR"]) / "dbt-target"
    _, peak, _ = run_measured(
        [
            dbt,
            "run",
            "--select",
            model,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
            "--quiet",
            *extra,
        ],
        env,
    )
    results = json.loads((target / "run_results.json").read_text())["results"]
    return results[0]["execution_time"], peak


def run_identity_benchmark(
    links: int, keep: bool = False, echo: Callable[[str], None] = print, sql_fallback: bool = True
) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"cdp-bench-identity-{links}-"))
    warehouse = work / "warehouse.duckdb"
    env = {**os.environ, "CDP_DATA_DIR": str(work), "CDP_WAREHOUSE": str(warehouse)}
    try:
        started = time.perf_counter()
        left, right, nodes = synthetic_graph(links)
        np.save(work / "left.npy", left)
        np.save(work / "right.npy", right)
        with duckdb.connect(str(warehouse)) as con:
            con.execute("set enable_progress_bar = false")
            con.execute("create schema identity")
            con.register("edges", pa.table({"l": left, "r": right}))
            # Keys look like the pipeline's (namespace:value) and sort in no particular order.
            # Emails link freely; one identifier in twenty is a crm id, so some components break the
            # one-crm-id rule and the linking rules replay them.
            con.execute(f"""create table identity.identity_identifiers as
                select 'id:' || md5(i::varchar)[:16] as identity_key,
                       case when i % 20 = 0 then 'crm_id' else 'email' end as namespace,
                       md5(i::varchar) as identity_value, true as is_linkable
                from range({nodes}) as t(i)""")
            # identity_identifiers numbers the identifiers in key order (a window over every key). Its
            # cost, counted in the stage: writing the table with the numbers less writing it without.
            started_plain = time.perf_counter()
            con.execute("create table identity.unnumbered as select * from identity.identity_identifiers")
            plain_seconds = time.perf_counter() - started_plain
            con.execute("drop table identity.unnumbered")
            numbering_started = time.perf_counter()
            con.execute("""create or replace table identity.identity_identifiers as
                select *, row_number() over (order by identity_key) - 1 as identity_id
                from identity.identity_identifiers""")
            numbering_seconds = max(time.perf_counter() - numbering_started - plain_seconds, 0.0)
            con.execute("""create table identity.identity_edges as
                select 'id:' || md5(l::varchar)[:16] as left_identity_key, 'id:' || md5(r::varchar)[:16] as right_identity_key,
                       1 as record_count, 'record:' || l as example_record_id,
                       timestamp '2026-01-01' + to_seconds((l % 86400)::bigint) as first_seen_at,
                       timestamp '2026-01-01' + to_seconds((l % 86400)::bigint) as last_seen_at
                from edges""")
            # identity_edges takes the ids from the join with identity_identifiers it makes anyway.
            con.execute("""create or replace table identity.identity_edges as
                select edges.*, l.identity_id as left_identity_id, r.identity_id as right_identity_id
                from identity.identity_edges as edges
                inner join identity.identity_identifiers as l on l.identity_key = edges.left_identity_key
                inner join identity.identity_identifiers as r on r.identity_key = edges.right_identity_key""")
            con.execute(f"""create table identity.identity_namespaces as
                select * from read_csv('{DBT_PROJECT_DIR / "seeds" / "identity_namespaces.csv"}')""")
        echo(
            f"cdp bench-identity: {len(left):,} links between {nodes:,} identifiers "
            f"(synthetic, built in {time.perf_counter() - started:.1f} s); data in {work}"
        )
        echo(f"{'step':<44}{'seconds':>10}{'peak RSS MiB':>14}")
        python = sys.executable
        _, scipy_peak, out = run_measured(
            [python, "-c", RAW_SCIPY, str(work / "left.npy"), str(work / "right.npy")], env
        )
        scipy_seconds, components = float(out.split()[0]), int(out.split()[1])
        echo(f"{'raw scipy on integer arrays':<44}{scipy_seconds:>10.2f}{scipy_peak:>14.0f}")
        _, read_peak, out = run_measured([python, "-c", READ_EDGES, str(warehouse)], env)
        read_seconds = float(out.split()[0])
        echo(f"{'read the edges (DuckDB -> Arrow)':<44}{read_seconds:>10.2f}{read_peak:>14.0f}")
        echo(f"{'number the identifiers (row_number by key)':<44}{numbering_seconds:>10.2f}{'':>14}")
        stage = numbering_seconds
        # identity_candidate_links and identity_links are views (nothing to time); probabilistic
        # matching is off, so its table is empty.
        for model in (
            "identity_probabilistic_links",
            "identity_candidate_links",
            "identity_link_decisions",
            "identity_links",
            "identity_components",
            "identity_profile_ids",
        ):
            seconds, peak = _dbt_model_seconds(model, env, [])
            if model in ("identity_link_decisions", "identity_components", "identity_profile_ids"):
                stage += seconds
                echo(f"{'dbt ' + model:<44}{seconds:>10.2f}{peak:>14.0f}")
        floor = scipy_seconds + read_seconds
        echo(
            f"identity stage (numbering + linking rules + components + stable ids): {stage:.2f} s = {stage / floor:.2f}x "
            f"(raw scipy + reading the edges = {floor:.2f} s; goal <= 1.5x); {components:,} components"
        )
        if not sql_fallback:
            return
        seconds, peak = _dbt_model_seconds(
            "identity_components_sql", env, ["--vars", "{identity_components_sql: true}"]
        )
        echo(f"{'dbt identity_components_sql (SQL fallback)':<44}{seconds:>10.2f}{peak:>14.0f}")
        with duckdb.connect(str(warehouse), read_only=True) as con:
            same = con.execute("""
                select count(distinct component_id) = count(distinct component_key)
                   and count(distinct component_id) = count(distinct (component_id, component_key))
                from identity.identity_components join identity.identity_components_sql using (identity_key)
            """).fetchone()[0]
        echo(
            f"SQL fallback = {seconds / (scipy_seconds + read_seconds):.1f}x the floor; same partition as scipy: {same}"
        )
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
