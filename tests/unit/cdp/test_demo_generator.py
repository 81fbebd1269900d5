"""The demo generator: deterministic, messy on purpose, and honest about what it planted."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest

from cdp.demo.generator import generate_demo

AS_OF = dt.date(2026, 6, 30)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, people=800, seed=3, as_of=AS_OF)
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    generate_demo(tmp_path / "again", people=800, seed=3, as_of=AS_OF)
    generate_demo(tmp_path / "other", people=800, seed=4, as_of=AS_OF)
    assert file_hashes(demo) == file_hashes(tmp_path / "again")
    assert file_hashes(demo) != file_hashes(tmp_path / "other")


def test_every_landing_record_has_a_truth_row(demo):
    truth = pl.read_csv(demo / "truth" / "record_truth.csv", infer_schema=False)
    for table_dir in (p for p in (demo / "landing").glob("*/*") if p.name != "order_lines"):
        source, table = table_dir.parent.name, table_dir.name
        key = {
            "crm": "contact_id",
            "webshop": "order_id",
            "pos": "transaction_id",
            "loyalty": "loyalty_id",
            "support": "ticket_id",
            "preferences": "consent_event_id",
        }.get(source, "event_id")
        ids = set()
        for file in table_dir.iterdir():
            frame = (
                pl.read_parquet(file)
                if file.suffix == ".parquet"
                else pl.read_ndjson(file, infer_schema_length=None)
                if file.suffix == ".jsonl"
                else pl.read_csv(file, infer_schema=False, truncate_ragged_lines=True)
            )
            ids |= set(frame[key].drop_nulls().cast(pl.String))
        truthful = set(truth.filter((pl.col("source") == source) & (pl.col("table") == table))["record_id"])
        assert ids <= truthful, f"{source}/{table}: {len(ids - truthful)} records without truth"


def test_planted_bad_rows_are_where_the_list_says(demo):
    planted = pl.read_csv(demo / "truth" / "planted_bad_rows.csv", infer_schema=False)
    assert set(planted["defect"]) == {
        "missing_required",
        "invalid_type",
        "not_allowed_value",
        "duplicate_primary_key",
        "malformed_line",
    }
    for row in planted.filter(pl.col("file").str.ends_with(".csv")).to_dicts():
        line = (demo / "landing" / row["file"]).read_text().splitlines()[int(row["line"]) - 1]
        if row["defect"] == "malformed_line":
            assert line.endswith(",UNEXPECTED")
        elif row["record_id"]:
            assert line.startswith(row["record_id"] + ","), (row, line)


def test_junk_identifiers_and_a_household_link_different_people(demo):
    persons = pl.read_csv(demo / "truth" / "persons.csv", infer_schema=False)
    households = (
        persons.filter(pl.col("household_id").fill_null("") != "")
        .group_by("household_id")
        .agg(pl.col("person_id").n_unique().alias("people"), pl.col("landline_e164").n_unique().alias("lines"))
    )
    assert households.height >= 1 and (households["people"] == 2).all() and (households["lines"] == 1).all()
    orders = pl.read_ndjson(next((demo / "landing" / "webshop" / "orders").glob("*.jsonl")), infer_schema_length=None)
    truth = pl.read_csv(demo / "truth" / "record_truth.csv", infer_schema=False)
    junk_orders = orders.filter(pl.col("email").is_in(["test@test.com", "noemail@example.com"])).join(
        truth.filter(pl.col("table") == "orders"), left_on="order_id", right_on="record_id"
    )
    assert junk_orders["person_id"].n_unique() > 1, "junk emails must be shared by several people"


def test_people_appear_in_several_systems(demo):
    truth = pl.read_csv(demo / "truth" / "record_truth.csv", infer_schema=False)
    systems = truth.filter(pl.col("person_id").is_not_null()).group_by("person_id").agg(pl.col("source").n_unique())
    assert (systems["source"] >= 4).mean() > 0.5


def test_recent_engagement_predicts_later_purchases(demo):
    """The planted signal: people active on the web in the 60 days before a cutoff buy more after it."""
    truth = pl.read_csv(demo / "truth" / "record_truth.csv", infer_schema=False)
    cutoff = dt.datetime(2026, 4, 1)
    web = pl.concat(
        [
            pl.read_ndjson(f, infer_schema_length=None).select("event_id", "occurred_at")
            for f in (demo / "landing" / "web" / "events").glob("*.jsonl")
        ]
    )
    web = web.with_columns(
        pl.col("occurred_at").str.to_datetime(time_zone="UTC", strict=False).dt.replace_time_zone(None)
    ).join(truth.filter(pl.col("source") == "web"), left_on="event_id", right_on="record_id")
    engaged = set(
        web.filter((pl.col("occurred_at") < cutoff) & (pl.col("occurred_at") >= cutoff - dt.timedelta(days=60)))[
            "person_id"
        ]
    )
    orders = pl.read_ndjson(next((demo / "landing" / "webshop" / "orders").glob("*.jsonl")), infer_schema_length=None)
    orders = (
        orders.filter(pl.col("ordered_at").is_not_null())
        .with_columns(pl.col("ordered_at").str.to_datetime(time_zone="UTC", strict=False).dt.replace_time_zone(None))
        .join(truth.filter(pl.col("table") == "orders"), left_on="order_id", right_on="record_id")
    )
    buyers_after = set(orders.filter(pl.col("ordered_at") >= cutoff)["person_id"])
    everyone = set(pl.read_csv(demo / "truth" / "persons.csv", infer_schema=False)["person_id"])
    rate_engaged = len(buyers_after & engaged) / max(len(engaged), 1)
    rate_others = len(buyers_after & (everyone - engaged)) / max(len(everyone - engaged), 1)
    assert rate_engaged > 2 * rate_others, (rate_engaged, rate_others)
