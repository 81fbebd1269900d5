"""Stable profile ids across runs: merges keep the oldest id, splits leave it with the largest part."""

from __future__ import annotations

import datetime as dt
import importlib.util

import polars as pl

from support.workspace import PROJECT_ROOT

MODEL = PROJECT_ROOT / "dbt_project" / "models" / "identity" / "identity_profile_ids.py"
spec = importlib.util.spec_from_file_location("identity_profile_ids", MODEL)
stable_ids = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stable_ids)

DAY1, DAY2, DAY3 = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 3)


def components(groups: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(key, number) for number, group in enumerate(groups) for key in group],
        schema={"identity_key": pl.String, "component_id": pl.Int64},
        orient="row",
    )


def ids(result: pl.DataFrame) -> dict[str, str]:
    return dict(result.select("identity_key", "profile_id").iter_rows())


def as_previous(result: pl.DataFrame) -> pl.DataFrame:
    return result.select("identity_key", "profile_id", "profile_created_at")


def test_same_graph_same_ids_and_no_change_recorded():
    graph = components([["email:a", "crm:1"], ["email:b"]])
    first = stable_ids.assign_profile_ids(graph, None, DAY1)
    second = stable_ids.assign_profile_ids(graph, as_previous(first), DAY2)
    assert ids(first) == ids(second)
    assert first.equals(second), "a rerun on the same graph writes the same table"
    assert second["previous_profile_id"].null_count() == second.height


def test_merge_keeps_the_oldest_id():
    first = stable_ids.assign_profile_ids(components([["email:a"]]), None, DAY1)
    second = stable_ids.assign_profile_ids(components([["email:a"], ["email:b"]]), as_previous(first), DAY2)
    older, newer = ids(second)["email:a"], ids(second)["email:b"]
    merged = stable_ids.assign_profile_ids(components([["email:a", "email:b"]]), as_previous(second), DAY3)
    assert set(ids(merged).values()) == {older}
    moved = merged.filter(pl.col("previous_profile_id").is_not_null())
    assert moved.select("identity_key", "previous_profile_id").rows() == [("email:b", newer)]


def test_split_leaves_the_id_with_the_largest_part():
    first = stable_ids.assign_profile_ids(components([["crm:1", "email:a", "email:b", "phone:x"]]), None, DAY1)
    original = ids(first)["crm:1"]
    split = stable_ids.assign_profile_ids(
        components([["crm:1", "email:a", "email:b"], ["phone:x"]]), as_previous(first), DAY2
    )
    assert ids(split)["crm:1"] == original and ids(split)["email:b"] == original
    assert ids(split)["phone:x"] != original
    assert split.filter(pl.col("previous_profile_id").is_not_null())["identity_key"].to_list() == ["phone:x"]


def test_new_ids_never_reuse_one_in_use():
    # The split-off part's smallest key was the old component's anchor: its new id must still differ.
    first = stable_ids.assign_profile_ids(components([["a:1", "b:1", "b:2"]]), None, DAY1)
    split = stable_ids.assign_profile_ids(components([["a:1"], ["b:1", "b:2"]]), as_previous(first), DAY2)
    assert ids(split)["b:1"] == ids(first)["a:1"], "the larger part keeps the id"
    assert ids(split)["a:1"] != ids(split)["b:1"]
