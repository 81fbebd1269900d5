"""The links the linking rules drop, and why (identity_links: every candidate link with its decision).

Rules, as Adobe's identity graph linking rules: a person has at most one value of a namespace marked
unique per person (crm id, shop account, loyalty id), and at most `max_per_person` identifiers of a
namespace where that is set (e.g. cookies). Links are replayed in a deterministic order, most recent
first, then by namespace priority, then by key; a link that would give one person two values of a
unique namespace, or more identifiers than allowed, is dropped and recorded with the values it
would have joined. Probabilistic matches (identity_probabilistic_links, when switched on) are
replayed after every deterministic link: a score never outranks a shared identifier.

Duplicates are not collisions: a duplicate-record match (link_type duplicate_record: two records of one
source that probabilistic matching found to be one person, e.g. a contact entered twice in the CRM)
declares its two values of a unique namespace to be one person's, so they count once against the
limit. A phone, device or email shared by two CRM contacts still cannot join them: only person-level
evidence makes a duplicate.

Only components that break a rule are replayed (found with scipy on all links first); in every other
component all links are kept. Everything runs on the identifiers' dense integer ids
(identity_identifiers.identity_id); only the dropped links are written.
"""

import numpy as np
import polars as pl
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DECISION_SCHEMA = pa.schema(
    [
        ("left_identity_id", pa.int64()),
        ("right_identity_id", pa.int64()),
        ("drop_rule", pa.string()),
        ("drop_detail", pa.string()),
    ]
)


def _components(node_count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(node_count, node_count))
    return connected_components(graph, directed=False)[1]


def decide_links(
    node_limit: np.ndarray,
    node_namespace: np.ndarray,
    node_priority: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    recency: np.ndarray,
    is_probabilistic: np.ndarray,
    keys_of,
    is_duplicate: np.ndarray | None = None,
    apart: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[tuple[int, str, str]]:
    """The links the rules drop: (link index, rule, detail).

    Nodes are dense ids 0..n-1 in identity-key order. node_limit: the most identifiers of the node's
    namespace a person may hold (0: no limit). node_namespace: an integer code per namespace.
    recency: sort key, smaller first (negated last-seen time). keys_of(ids) -> {id: identity key}
    names the identifiers in a drop's detail. is_duplicate: links that declare their two identifiers
    (of one limited namespace) to be duplicates of one person's value. apart: pairs of identifiers
    (left ids, right ids) whose records the household rules keep apart: no chain of links may join them."""
    labels = _components(len(node_limit), left, right)
    # One person's duplicate values count as one: each limited node stands for its alias, the smallest
    # node of its duplicate group.
    alias = np.arange(len(node_limit))
    if is_duplicate is not None and is_duplicate.any():
        pairs = np.flatnonzero(is_duplicate & (node_namespace[left] == node_namespace[right]) & (node_limit[left] > 0))
        if len(pairs):
            groups = _components(len(node_limit), left[pairs], right[pairs])
            smallest = (
                pl.DataFrame({"group": groups, "node": np.arange(len(node_limit))})
                .group_by("group")
                .agg(pl.col("node").min().alias("alias"))
            )
            alias_of_group = np.zeros(groups.max() + 1, dtype=np.int64)
            alias_of_group[smallest["group"].to_numpy()] = smallest["alias"].to_numpy()
            alias = alias_of_group[groups]
    limited = np.flatnonzero(node_limit > 0)
    counts = (
        pl.DataFrame(
            {
                "component": labels[limited],
                "namespace": node_namespace[limited],
                "limit": node_limit[limited],
                "alias": alias[limited],
            }
        )
        .group_by("component", "namespace")
        .agg(pl.col("alias").n_unique().alias("n"), pl.col("limit").first())
        .filter(pl.col("n") > pl.col("limit"))
    )
    apart_left, apart_right = apart if apart is not None else (np.array([], np.int64), np.array([], np.int64))
    joined_apart = np.flatnonzero(labels[apart_left] == labels[apart_right])
    broken_components = np.union1d(counts["component"].unique().to_numpy(), labels[apart_left[joined_apart]])
    if not len(broken_components):
        return []
    replay = np.flatnonzero(np.isin(labels[left], broken_components))
    priority = np.minimum(node_priority[left[replay]], node_priority[right[replay]])
    # np.lexsort: the last key is the primary one.
    replay = replay[np.lexsort((right[replay], left[replay], priority, recency[replay], is_probabilistic[replay]))]

    # Union-find over the replayed links' nodes, renumbered 0..k-1 (list lookups, not dicts).
    nodes, local = np.unique(np.concatenate([left[replay], right[replay]]), return_inverse=True)
    local_left, local_right = local[: len(replay)].tolist(), local[len(replay) :].tolist()
    parent = list(range(len(nodes)))
    size = [1] * len(nodes)
    # Per root: namespace -> nodes it holds, for limited namespaces only (None: holds none).
    held: list[dict[int, set[int]] | None] = [
        {namespace: {node_alias}} if limit > 0 else None
        for namespace, limit, node_alias in zip(
            node_namespace[nodes].tolist(), node_limit[nodes].tolist(), alias[nodes].tolist()
        )
    ]
    limit_of = {
        int(ns): int(lim) for ns, lim in zip(node_namespace[nodes].tolist(), node_limit[nodes].tolist()) if lim > 0
    }

    # Per root: the kept-apart constraints (ids) one of whose two identifiers it holds.
    position = {int(node): i for i, node in enumerate(nodes.tolist())}
    apart_of: list[set[int] | None] = [None] * len(nodes)
    for constraint in joined_apart.tolist():
        for node in (int(apart_left[constraint]), int(apart_right[constraint])):
            local_node = position[node]
            apart_of[local_node] = (apart_of[local_node] or set()) | {constraint}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    dropped: list[tuple[int, str, int, set[int], set[int]]] = []
    for index, a, b in zip(replay.tolist(), local_left, local_right):
        a, b = root(a), root(b)
        if a == b:
            continue
        shared = apart_of[a] & apart_of[b] if apart_of[a] and apart_of[b] else None
        if shared:
            constraint = min(shared)
            dropped.append((index, "kept_apart", 0, {int(apart_left[constraint])}, {int(apart_right[constraint])}))
            continue
        held_a, held_b = held[a], held[b]
        if held_a and held_b:
            broken = None
            for namespace in sorted(held_a.keys() & held_b.keys()):
                limit = limit_of[namespace]
                if len(held_a[namespace] | held_b[namespace]) > limit:
                    broken = (
                        "unique_per_person" if limit == 1 else "max_per_person",
                        limit,
                        set(held_a[namespace]),
                        set(held_b[namespace]),
                    )
                    break
            if broken:
                dropped.append((index, *broken))
                continue
        # Union by size; the holdings of the smaller side move into the larger one's.
        if size[a] < size[b]:
            a, b, held_a, held_b = b, a, held_b, held_a
        parent[b] = a
        size[a] += size[b]
        if held_b:
            if held_a is None:
                held[a] = held_b
            else:
                for namespace, members in held_b.items():
                    held_a.setdefault(namespace, set()).update(members)
        held[b] = None
        if apart_of[b]:
            apart_of[a] = (apart_of[a] or set()) | apart_of[b]
            apart_of[b] = None

    # The held sets are aliases, which are global ids already.
    dropped = [
        (index, rule, limit, {int(n) for n in side_a}, {int(n) for n in side_b})
        for index, rule, limit, side_a, side_b in dropped
    ]
    keys = keys_of(sorted({n for *_, side_a, side_b in dropped for n in side_a | side_b}))

    def described(nodes: set[int]) -> str:
        return ", ".join(sorted(keys[n].split(":", 1)[1] for n in nodes))[:200]

    return [
        (
            index,
            rule,
            f"would join {keys[next(iter(side_a))]} and {keys[next(iter(side_b))]}, whose records the "
            "household rules keep apart"
            if rule == "kept_apart"
            else f"would join {keys[next(iter(side_a))].split(':', 1)[0]} {described(side_a)} "
            f"with {described(side_b)} (limit {limit})",
        )
        for index, rule, limit, side_a, side_b in dropped
    ]


def replay_links(
    nodes: pl.DataFrame, edges: pl.DataFrame, namespaces: pl.DataFrame, apart: list[tuple[str, str]] = ()
) -> pl.DataFrame:
    """The rules over polars frames keyed by identity_key (what the tests plant). nodes: identity_key,
    namespace, identity_value. edges: left_identity_key, right_identity_key, last_seen_at (+ any;
    link_type optional). namespaces: namespace, priority, is_unique_per_person, max_per_person.
    Returns edges with is_kept, drop_rule and drop_detail."""
    nodes = nodes.sort("identity_key").with_row_index("identity_id").with_columns(pl.col("identity_id").cast(pl.Int64))
    limits = namespaces.select(
        "namespace",
        pl.col("priority").cast(pl.Int64),
        pl.when(pl.col("is_unique_per_person"))
        .then(1)
        .otherwise(pl.col("max_per_person"))
        .fill_null(0)
        .cast(pl.Int64)
        .alias("limit"),
    )
    nodes = nodes.join(limits, on="namespace", how="left", maintain_order="left").with_columns(
        pl.col("priority").fill_null(99),
        pl.col("limit").fill_null(0),
        pl.col("namespace").rank("dense").cast(pl.Int64).alias("namespace_code"),
    )
    ids = nodes.select("identity_key", "identity_id")
    if "link_type" not in edges.columns:
        edges = edges.with_columns(pl.lit("deterministic").alias("link_type"))
    edges = edges.join(
        ids.rename({"identity_key": "left_identity_key", "identity_id": "left_identity_id"}),
        on="left_identity_key",
        maintain_order="left",
    ).join(
        ids.rename({"identity_key": "right_identity_key", "identity_id": "right_identity_id"}),
        on="right_identity_key",
        maintain_order="left",
    )
    keys = dict(zip(nodes["identity_id"].to_list(), nodes["identity_key"].to_list()))
    id_of = {key: number for number, key in keys.items()}
    apart_ids = (
        np.array([id_of[a] for a, _ in apart], dtype=np.int64),
        np.array([id_of[b] for _, b in apart], dtype=np.int64),
    )
    dropped = decide_links(
        nodes["limit"].to_numpy(),
        nodes["namespace_code"].to_numpy(),
        nodes["priority"].to_numpy(),
        edges["left_identity_id"].to_numpy(),
        edges["right_identity_id"].to_numpy(),
        _recency(edges["last_seen_at"]),
        edges["link_type"].is_in(["probabilistic", "duplicate_record"]).to_numpy(),
        lambda wanted: {n: keys[n] for n in wanted},
        (edges["link_type"] == "duplicate_record").to_numpy(),
        apart_ids,
    )
    decisions = pl.DataFrame(
        {"row": [d[0] for d in dropped], "drop_rule": [d[1] for d in dropped], "drop_detail": [d[2] for d in dropped]},
        schema={"row": pl.UInt32, "drop_rule": pl.String, "drop_detail": pl.String},
    )
    return (
        edges.with_row_index("row")
        .join(decisions, on="row", how="left", maintain_order="left")
        .with_columns(pl.col("drop_rule").is_null().alias("is_kept"))
        .drop("row", "left_identity_id", "right_identity_id")
    )


def _recency(last_seen: pl.Series) -> np.ndarray:
    """Sort key putting the most recent first and unknown times last."""
    micros = last_seen.cast(pl.Datetime("us")).dt.epoch("us")
    return (-micros).fill_null(np.iinfo(np.int64).max).to_numpy()


def model(dbt, session):
    dbt.config(materialized="table")
    session.register("__decisions_identifiers", dbt.ref("identity_identifiers"))
    session.register("__decisions_namespaces", dbt.ref("identity_namespaces"))
    session.register("__decisions_candidates", dbt.ref("identity_candidate_links"))
    session.register("__decisions_matches", dbt.ref("identity_probabilistic_links"))
    nodes = (
        session.sql("""
        with namespaces as (
            select *, row_number() over (order by namespace) as namespace_code from __decisions_namespaces
        )
        select coalesce(namespaces.priority, 99) as priority,
               coalesce(case when namespaces.is_unique_per_person then 1 else namespaces.max_per_person end, 0) as node_limit,
               coalesce(namespaces.namespace_code, 0) as namespace_code
        from __decisions_identifiers as identifiers
        left join namespaces on namespaces.namespace = identifiers.namespace
        order by identifiers.identity_id
    """)
        .arrow()
        .read_all()
    )
    links = (
        session.sql("""
        select left_identity_id, right_identity_id,
               coalesce(-epoch_us(last_seen_at), 9223372036854775807) as recency,
               link_type <> 'deterministic' as is_probabilistic,
               link_type = 'duplicate_record' as is_duplicate
        from __decisions_candidates
    """)
        .arrow()
        .read_all()
    )

    def keys_of(ids: list[int]) -> dict[int, str]:
        session.register("__decisions_wanted", pa.table({"identity_id": pa.array(ids, pa.int64())}))
        return dict(
            session.sql(
                "select identity_id, identity_key from __decisions_identifiers "
                "where identity_id in (select identity_id from __decisions_wanted)"
            ).fetchall()
        )

    # Records a household rule keeps apart: their identifiers may not end in one component.
    apart = (
        session.sql("""
        select distinct l.identity_id as left_id, r.identity_id as right_id
        from __decisions_matches as matches
        inner join __decisions_identifiers as l on l.identity_key = matches.left_identity_key
        inner join __decisions_identifiers as r on r.identity_key = matches.right_identity_key
        where matches.decision = 'rejected'
    """)
        .arrow()
        .read_all()
    )
    left = links.column("left_identity_id").to_numpy()
    right = links.column("right_identity_id").to_numpy()
    dropped = decide_links(
        nodes.column("node_limit").to_numpy(),
        nodes.column("namespace_code").to_numpy(),
        nodes.column("priority").to_numpy(),
        left,
        right,
        links.column("recency").to_numpy(),
        links.column("is_probabilistic").to_numpy(zero_copy_only=False),
        keys_of,
        links.column("is_duplicate").to_numpy(zero_copy_only=False),
        (apart.column("left_id").to_numpy(), apart.column("right_id").to_numpy()),
    )
    decisions = pa.table(
        {
            "left_identity_id": pa.array([int(left[i]) for i, _, _ in dropped], pa.int64()),
            "right_identity_id": pa.array([int(right[i]) for i, _, _ in dropped], pa.int64()),
            "drop_rule": pa.array([rule for _, rule, _ in dropped], pa.string()),
            "drop_detail": pa.array([detail for _, _, detail in dropped], pa.string()),
        },
        schema=DECISION_SCHEMA,
    )
    return decisions
