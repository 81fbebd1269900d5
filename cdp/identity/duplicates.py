"""Reports of the identity stage's probabilistic matching: duplicate source records
(`cdp identity duplicates`) and the trained model (`cdp identity model`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb

from cdp.errors import CdpError


class IdentityReportError(CdpError):
    """An identity report cannot be made (no run yet, matching switched off)."""


def duplicate_source_records(
    con: duckdb.DuckDBPyConnection, source_table: str | None = None, limit: int = 50
) -> tuple[int, list[dict]]:
    """(total pairs, the first `limit` pairs, most probable first) of identity.duplicate_source_records."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'identity' and table_name = 'duplicate_source_records'"
    ).fetchone()[0]
    if not exists:
        raise IdentityReportError(
            "identity.duplicate_source_records does not exist in the warehouse: run the pipeline first (`cdp run`)"
        )
    where = "where source_table = ?" if source_table else ""
    params = [source_table] if source_table else []
    total = con.execute(f"select count(*) from identity.duplicate_source_records {where}", params).fetchone()[0]
    frame = con.execute(
        f"""select * from identity.duplicate_source_records {where}
            order by match_probability desc, left_record_id, right_record_id limit ?""",
        [*params, limit],
    ).pl()
    return int(total), frame.to_dicts()


def describe_match_model(path: Path) -> list[str]:
    """Lines describing a saved Splink model: the prior and, per comparison level, m, u and the match
    weight (log2 m/u)."""
    if not path.is_file():
        raise IdentityReportError(
            f"no trained matching model at {path}: run the pipeline with identity_probabilistic_matching on "
            "(dbt_project/dbt_project.yml) on data with person records"
        )
    model = json.loads(path.read_text())
    prior = model["probability_two_random_records_match"]
    lines = [
        f"model {path.resolve()}",
        f"prior (two random records match) {prior:.3g} = {math.log2(prior / (1 - prior)):+.2f} bits",
        f"blocking rules: {len(model.get('blocking_rules_to_generate_predictions', []))}",
        f"{'comparison':<14}{'level':<58}{'m':>10}{'u':>11}{'weight':>9}",
    ]
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = f"{math.log2(m / u):+.2f}" if m and u else "n/a"
            label = (level.get("label_for_charts") or level.get("sql_condition", ""))[:56]
            lines.append(
                f"{comparison['output_column_name']:<14}{label:<58}"
                f"{(f'{m:.4f}' if m is not None else '-'):>10}{(f'{u:.2e}' if u is not None else '-'):>11}{weight:>9}"
            )
    return lines
