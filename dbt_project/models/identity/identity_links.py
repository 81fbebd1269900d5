"""Every identity link with the linking rules' decision: kept, or dropped and why.

Rules, as Adobe's identity graph linking rules: a person has at most one value of a namespace marked
unique per person (crm id, shop account, loyalty id), and at most `max_per_person` identifiers of a
namespace where that is set (e.g. cookies). Links are replayed in a deterministic order, most recent
first, then by namespace priority, then by key; a link that would give one person two values of a
unique namespace, or more identifiers than allowed, is dropped and recorded with the values it
would have joined.

Probabilistic matches (identity_probabilistic_links, when switched on) are replayed after every
deterministic link: a score never outranks a shared identifier.

Only components that break a rule are replayed (found with scipy on all links first); in every other
component all links are kept. Replaying is a union-find over those components' links.
"""

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def _components(node_count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(node_count, node_count))
    return connected_components(graph, directed=False)[1]


def replay_links(nodes: pl.DataFrame, edges: pl.DataFrame, namespaces: pl.DataFrame) -> pl.DataFrame:
    """nodes: identity_key, namespace, identity_value. edges: left_identity_key, right_identity_key,
    last_seen_at (+ any). namespaces: namespace, priority, is_unique_per_person, max_per_person.
    Returns edges with is_kept, drop_rule and drop_detail."""
    nodes = nodes.sort("identity_key").with_row_index("node").with_columns(pl.col("node").cast(pl.Int64))
    limits = namespaces.select(
        "namespace", "priority",
        pl.when(pl.col("is_unique_per_person")).then(1).otherwise(pl.col("max_per_person")).alias("limit"),
        pl.col("is_unique_per_person").alias("unique"),
    )
    nodes = nodes.join(limits, on="namespace", how="left", maintain_order="left")
    ends = nodes.select("identity_key", "node", pl.col("priority").fill_null(99))
    if "link_type" not in edges.columns:
        edges = edges.with_columns(pl.lit("deterministic").alias("link_type"))
    edges = edges.with_columns((pl.col("link_type") == "probabilistic").alias("is_probabilistic"))
    edges = (
        edges.join(ends.rename({"identity_key": "left_identity_key", "node": "left_node", "priority": "left_priority"}),
                   on="left_identity_key")
        .join(ends.rename({"identity_key": "right_identity_key", "node": "right_node", "priority": "right_priority"}),
              on="right_identity_key")
        .with_columns(pl.min_horizontal("left_priority", "right_priority").alias("priority"))
        .drop("left_priority", "right_priority")
    )
    labels = _components(nodes.height, edges["left_node"].to_numpy(), edges["right_node"].to_numpy())
    nodes = nodes.with_columns(pl.Series("component", labels))
    # Components where some limited namespace has more identifiers than allowed.
    breaking = (
        nodes.filter(pl.col("limit").is_not_null())
        .group_by("component", "namespace").agg(pl.len().alias("n"), pl.col("limit").first())
        .filter(pl.col("n") > pl.col("limit"))["component"].unique()
    )
    edges = edges.with_columns(pl.Series("component", labels[edges["left_node"].to_numpy()], dtype=pl.Int64))
    to_replay = edges.filter(pl.col("component").is_in(breaking.implode()))
    decisions = {}
    if to_replay.height:
        namespace_of = nodes["namespace"].to_list()
        value_of = nodes["identity_value"].to_list()
        limit_of = dict(zip(limits["namespace"].to_list(), limits["limit"].to_list()))
        to_replay = to_replay.sort(["is_probabilistic", "last_seen_at", "priority", "left_identity_key", "right_identity_key"],
               descending=[False, True, False, False, False], nulls_last=True)
        parent: dict[int, int] = {}
        # per root: namespace -> set of values (only limited namespaces are tracked)
        members: dict[int, dict[str, set]] = {}

        def root(n: int) -> int:
            while parent.get(n, n) != n:
                parent[n] = parent.get(parent[n], parent[n])
                n = parent[n]
            return n

        def held(n: int) -> dict[str, set]:
            if n not in members:
                ns = namespace_of[n]
                members[n] = {ns: {value_of[n]}} if limit_of.get(ns) is not None else {}
            return members[n]

        for left, right, lkey, rkey in to_replay.select("left_node", "right_node", "left_identity_key",
                                                        "right_identity_key").iter_rows():
            a, b = root(left), root(right)
            if a == b:
                decisions[(lkey, rkey)] = (True, None, None)
                continue
            held_a, held_b = held(a), held(b)
            broken = None
            for ns in sorted(set(held_a) & set(held_b)):
                union = held_a[ns] | held_b[ns]
                if len(union) > limit_of[ns]:
                    rule = "unique_per_person" if limit_of[ns] == 1 else "max_per_person"
                    broken = (rule, f"would join {ns} {', '.join(sorted(held_a[ns]))[:200]} "
                                    f"with {', '.join(sorted(held_b[ns]))[:200]} (limit {limit_of[ns]})")
                    break
            if broken:
                decisions[(lkey, rkey)] = (False, *broken)
                continue
            parent[b] = a
            for ns, values in held_b.items():
                held_a.setdefault(ns, set()).update(values)
            members.pop(b, None)
            decisions[(lkey, rkey)] = (True, None, None)
    if decisions:
        decided = pl.DataFrame(
            [(l, r, kept, rule, detail) for (l, r), (kept, rule, detail) in decisions.items()],
            schema={"left_identity_key": pl.String, "right_identity_key": pl.String, "is_kept": pl.Boolean,
                    "drop_rule": pl.String, "drop_detail": pl.String}, orient="row")
        edges = edges.join(decided, on=["left_identity_key", "right_identity_key"], how="left")
    else:
        edges = edges.with_columns(pl.lit(None, pl.Boolean).alias("is_kept"), pl.lit(None, pl.String).alias("drop_rule"),
                                   pl.lit(None, pl.String).alias("drop_detail"))
    return edges.with_columns(pl.col("is_kept").fill_null(True)).drop(
        "left_node", "right_node", "component", "priority", "is_probabilistic")


def probabilistic_edges(matches: pl.DataFrame) -> pl.DataFrame:
    """One edge per pair of anchor identifiers from scored record matches: the best-scoring match is
    its example (example_record_id and matched_record_id), record_count counts the matches."""
    if matches.is_empty():
        return pl.DataFrame()
    ordered = matches.with_columns(
        pl.min_horizontal("left_identity_key", "right_identity_key").alias("low"),
        pl.max_horizontal("left_identity_key", "right_identity_key").alias("high"),
    )
    return (
        ordered.sort("match_probability", "left_record_id", descending=[True, False])
        .group_by("low", "high", maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("record_count"), pl.col("left_record_id").first().alias("example_record_id"),
             pl.col("right_record_id").first().alias("matched_record_id"),
             pl.col("match_probability").first(), pl.col("first_seen_at").min(), pl.col("last_seen_at").max())
        .rename({"low": "left_identity_key", "high": "right_identity_key"})
        .with_columns(pl.lit("probabilistic").alias("link_type"))
    )


def model(dbt, session):
    dbt.config(materialized="table")
    nodes = pl.from_arrow(
        dbt.ref("identity_identifiers").filter("is_linkable").project("identity_key, namespace, identity_value")
        .arrow().read_all())
    edges = pl.from_arrow(dbt.ref("identity_edges").arrow().read_all()).with_columns(
        pl.lit("deterministic").alias("link_type"), pl.lit(None, pl.String).alias("matched_record_id"),
        pl.lit(None, pl.Float64).alias("match_probability"))
    edges = pl.concat([edges, probabilistic_edges(pl.from_arrow(
        dbt.ref("identity_probabilistic_links").arrow().read_all()))], how="diagonal_relaxed")
    namespaces = pl.from_arrow(dbt.ref("identity_namespaces").arrow().read_all())
    return replay_links(nodes, edges, namespaces).to_arrow()
