"""Connected components of the identity graph.

A Python model because SQL is the wrong tool here: scipy labels components of millions of edges
in about a second, where the iterative min-label SQL loop takes tens of seconds. It works on the
identifiers' dense integer ids (identity_identifiers.identity_id, in key order, so the same input
gives the same component ids on every run); the keys never leave DuckDB.
"""

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def model(dbt, session):
    dbt.config(materialized="table")
    session.register("__components_identifiers", dbt.ref("identity_identifiers"))
    session.register("__components_links", dbt.ref("identity_links"))
    node_count = session.sql("select count(*) from __components_identifiers").fetchone()[0]
    # Only the links the linking rules kept (identity_links records the dropped ones and why).
    links = (
        session.sql("select left_identity_id, right_identity_id from __components_links where is_kept")
        .arrow()
        .read_all()
    )
    left = links.column(0).to_numpy()
    right = links.column(1).to_numpy()
    adjacency = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(node_count, node_count))
    _, labels = connected_components(adjacency, directed=False)
    session.register(
        "__components_labels",
        pa.table(
            {
                "identity_id": pa.array(np.arange(node_count, dtype=np.int64)),
                "component_id": pa.array(labels, pa.int64()),
            }
        ),
    )
    return session.sql("""
        select identifiers.identity_key, identifiers.identity_id, labels.component_id
        from __components_identifiers as identifiers
        inner join __components_labels as labels on labels.identity_id = identifiers.identity_id
        where identifiers.is_linkable
    """)
