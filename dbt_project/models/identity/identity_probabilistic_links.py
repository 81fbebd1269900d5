"""Probabilistic matching (Splink on DuckDB) for person records that share no identifier.

Records that carry a name (xdm_profile_records with a first or last name) are compared on name,
birth date, postcode, city, country, email and phone under a Fellegi-Sunter model:
- u probabilities from random record pairs;
- m probabilities from the deterministic graph's own clusters (pairs of records already joined by a
  shared identifier are matches), so no hand-labelled data is needed and the model adapts to each
  dataset's typo and missing-value rates;
- the prior (two random records match) from the same clusters.
Pairs scoring at least `match_threshold` whose records sit in different deterministic components
become links between the records' anchor identifiers; identity_links replays them after the
deterministic links, under the same linking rules (a match can never give a person two CRM ids).

Off unless the var identity_probabilistic_matching is true (dbt_project.yml): then the table is
empty and Splink is not imported.
"""

import logging

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

LINK_SCHEMA = pa.schema(
    [
        ("left_identity_key", pa.string()),
        ("right_identity_key", pa.string()),
        ("left_record_id", pa.string()),
        ("right_record_id", pa.string()),
        ("match_probability", pa.float64()),
        ("match_weight", pa.float64()),
        ("agreeing_fields", pa.string()),
        ("first_seen_at", pa.timestamp("us")),
        ("last_seen_at", pa.timestamp("us")),
    ]
)

# Candidate pairs are only scored within these blocks; each rule names fields that must agree exactly.
PREDICTION_BLOCKS = [
    ("first_name", "last_name"),
    ("last_name", "birth_date"),
    ("first_name", "birth_date"),
    ("last_name", "postcode"),
    ("email",),
    ("phone",),
]
COMPARED_FIELDS = ["first_name", "last_name", "birth_date", "postcode", "city", "country", "email", "phone"]


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _deterministic_components(records: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Component of each record's anchor over the deterministic links (integer identity ids)."""
    node_count = (
        int(
            max(
                records["anchor_id"].max() or 0,
                edges["left_identity_id"].max() or 0,
                edges["right_identity_id"].max() or 0,
            )
        )
        + 1
    )
    graph = coo_matrix(
        (
            np.ones(edges.height, dtype=np.int8),
            (edges["left_identity_id"].to_numpy(), edges["right_identity_id"].to_numpy()),
        ),
        shape=(node_count, node_count),
    )
    labels = connected_components(graph, directed=False)[1]
    return records.with_columns(pl.Series("component", labels[records["anchor_id"].to_numpy()], dtype=pl.Int64))


def match_records(records: pl.DataFrame, edges: pl.DataFrame, threshold: float, seed: int = 42) -> pl.DataFrame:
    """records: unique_id, anchor_key, anchor_id, seen_at and the COMPARED_FIELDS (normalized). edges:
    the deterministic left_identity_id, right_identity_id. Returns LINK_SCHEMA rows for matches across
    deterministic components."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    records = _deterministic_components(records, edges)
    sizes = records.group_by("component").len()
    true_pairs = float((sizes["len"] * (sizes["len"] - 1) / 2).sum())
    all_pairs = records.height * (records.height - 1) / 2
    prior = min(max(true_pairs / all_pairs, 1e-9), 0.5) if all_pairs else 1e-6

    names = [
        cl.NameComparison(field).configure(term_frequency_adjustments=True) for field in ("first_name", "last_name")
    ]
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=prior,
        comparisons=[
            *names,
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.ExactMatch("postcode"),
            cl.ExactMatch("city"),
            cl.ExactMatch("country"),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[block_on(*fields) for fields in PREDICTION_BLOCKS],
        additional_columns_to_retain=["anchor_key", "component", "seen_at"],
    )
    # A private in-memory database: Splink's work tables never reach the warehouse.
    with duckdb.connect() as con:
        con.execute("set threads to 2")
        db = DuckDBAPI(connection=con)
        table = db.register(records.drop("anchor_id").to_arrow(), dataset_display_name="person_records")
        linker = Linker(table, settings, log_level=logging.ERROR)
        linker.table_management.compute_tf_table("first_name")
        linker.table_management.compute_tf_table("last_name")
        linker.training.estimate_u_using_random_sampling(max_pairs=1_000_000, seed=seed)
        if true_pairs:
            linker.training.estimate_m_from_label_column("component")
        scored = pl.from_arrow(
            linker.inference.predict(threshold_match_probability=threshold).as_duckdbpyrelation().arrow().read_all()
        )
    if scored.is_empty():
        return pl.from_arrow(LINK_SCHEMA.empty_table())
    # Which compared fields agree exactly: the evidence shown by `cdp profile explain`.
    agreeing = pl.concat_str(
        [pl.when(pl.col(f"{field}_l") == pl.col(f"{field}_r")).then(pl.lit(field)) for field in COMPARED_FIELDS],
        separator=",",
        ignore_nulls=True,
    )
    return (
        scored.filter(pl.col("component_l") != pl.col("component_r"))
        .select(
            pl.col("anchor_key_l").alias("left_identity_key"),
            pl.col("anchor_key_r").alias("right_identity_key"),
            pl.col("unique_id_l").alias("left_record_id"),
            pl.col("unique_id_r").alias("right_record_id"),
            "match_probability",
            "match_weight",
            agreeing.alias("agreeing_fields"),
            pl.min_horizontal("seen_at_l", "seen_at_r").alias("first_seen_at"),
            pl.max_horizontal("seen_at_l", "seen_at_r").alias("last_seen_at"),
        )
        .sort("left_record_id", "right_record_id")
    )


def model(dbt, session):
    dbt.config(materialized="table")
    if not _flag(dbt.config.get("probabilistic_matching")):
        return LINK_SCHEMA.empty_table()
    threshold = float(dbt.config.get("match_threshold"))
    records = pl.from_arrow(dbt.ref("identity_person_records").arrow().read_all()).rename({"record_id": "unique_id"})
    edges = pl.from_arrow(dbt.ref("identity_edges").project("left_identity_id, right_identity_id").arrow().read_all())
    return match_records(records, edges, threshold).to_arrow().cast(LINK_SCHEMA)
