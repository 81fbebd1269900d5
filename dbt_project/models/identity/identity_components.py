"""Connected components of the identity graph.

A Python model because SQL is the wrong tool here: scipy labels components of millions of edges
in about a second, where the iterative min-label SQL loop takes tens of seconds.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def model(dbt, session):
    dbt.config(materialized="table")

    nodes = (
        dbt.ref("identity_identifiers").filter("is_linkable").project("identity_key").order("identity_key")
        .arrow().read_all()
    ).column("identity_key").combine_chunks()
    # Only the links the linking rules kept (identity_links records the dropped ones and why).
    edges = (
        dbt.ref("identity_links").filter("is_kept").project("left_identity_key, right_identity_key").arrow().read_all()
    )

    # Nodes sorted by key: the same input gives the same component ids on every run.
    # Dense integer node ids: the position of each identifier key in `nodes` (a hash lookup).
    left = pc.index_in(edges.column(0), value_set=nodes).to_numpy(zero_copy_only=False)
    right = pc.index_in(edges.column(1), value_set=nodes).to_numpy(zero_copy_only=False)

    node_count = len(nodes)
    adjacency = coo_matrix(
        (np.ones(len(left), dtype=np.int8), (left, right)), shape=(node_count, node_count)
    )
    _, labels = connected_components(adjacency, directed=False)

    return pa.table({"identity_key": nodes, "component_id": pa.array(labels, type=pa.int64())})
