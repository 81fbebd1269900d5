"""The demo generator: deterministic, messy on purpose, and honest about what it planted."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest

import data_contracts
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


# The next delivery (`cdp generate --delivery`): new files beside the base's, new people with new ids, the
# existing people's later behaviour, CRM contacts moved under their own ids.
DELIVERY_PEOPLE = 1500


def read_landing(file: Path) -> pl.DataFrame:
    if file.suffix == ".parquet":
        return pl.read_parquet(file)
    if file.suffix == ".jsonl":
        return pl.read_ndjson(file, infer_schema_length=None)
    return pl.read_csv(file, infer_schema=False, truncate_ragged_lines=True)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    from cdp.demo.generator import generate_delivery

    out = tmp_path_factory.mktemp("delivered")
    generate_demo(out, people=DELIVERY_PEOPLE, seed=5, as_of=AS_OF)
    base_files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "landing").rglob("*") if p.is_file()}
    base_persons = pl.read_csv(out / "truth" / "persons.csv", infer_schema=False)
    base_truth = pl.read_csv(out / "truth" / "record_truth.csv", infer_schema=False)
    summary = generate_delivery(out, people=DELIVERY_PEOPLE, seed=5, as_of=AS_OF, share=0.01)
    return out, summary, base_files, base_persons, base_truth


def test_a_delivery_adds_files_beside_the_base_and_changes_none(delivered):
    out, summary, base_files, _, _ = delivered
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "landing").rglob("*") if p.is_file()}
    assert {p: after[p] for p in base_files} == base_files
    added = set(after) - set(base_files)
    assert added == set(summary.files)
    assert all(p.name.startswith(f"delivery-{summary.as_of.isoformat()}-") for p in added)
    # where the loader looks: landing/<source>/<table>/ of an existing contract, in the contract's format
    contracts = data_contracts.load_contracts()
    folders = {(c.source, c.table): c.format for c in contracts.values()}
    for path in added:
        assert (path.parent.parent.name, path.parent.name) in folders
        assert path.suffix == f".{folders[(path.parent.parent.name, path.parent.name)]}"
    assert summary.as_of > AS_OF and summary.days == (summary.as_of - AS_OF).days


def test_a_delivery_is_about_its_share_of_the_records_and_deterministic(delivered, tmp_path):
    from cdp.demo.generator import generate_delivery

    out, summary, _, _, base_truth = delivered
    records = sum(rows for name, rows in summary.row_counts.items() if name != "webshop__order_lines")
    # A campaign mails every subscriber on one day (about 1.2% of the records alone): windows are whole days
    assert 0.004 * base_truth.height <= records <= 0.0125 * base_truth.height
    again = tmp_path / "again"
    generate_demo(again, people=DELIVERY_PEOPLE, seed=5, as_of=AS_OF)
    generate_delivery(again, people=DELIVERY_PEOPLE, seed=5, as_of=AS_OF, share=0.01)
    assert file_hashes(again / "landing") == file_hashes(out / "landing")


def test_new_people_have_new_ids_and_existing_people_keep_theirs(delivered):
    out, summary, _, base_persons, base_truth = delivered
    persons = pl.read_csv(out / "truth" / "persons.csv", infer_schema=False)
    new_ids = set(persons["person_id"]) - set(base_persons["person_id"])
    assert len(new_ids) == summary.new_people == round(DELIVERY_PEOPLE * 0.01)
    assert persons["email"].n_unique() == persons.height  # new people's addresses are nobody else's
    truth = pl.read_csv(out / "truth" / "record_truth.csv", infer_schema=False)
    delivered_records = truth.join(base_truth, on=["source", "table", "record_id"], how="anti")
    assert delivered_records["record_id"].n_unique() == delivered_records.height
    owners = set(delivered_records["person_id"].drop_nulls()) - {""}
    assert owners & new_ids and owners - new_ids  # both new people and existing people's new behaviour
    # new identifiers of new people's source records (CRM, loyalty) are none of the base's
    for source, table in (("crm", "contacts"), ("loyalty", "members")):
        base_keys = set(base_truth.filter(pl.col("source") == source, pl.col("table") == table)["record_id"])
        new_keys = set(
            delivered_records.filter(
                pl.col("source") == source, pl.col("table") == table, pl.col("person_id").is_in(new_ids)
            )["record_id"]
        )
        assert new_keys and not new_keys & base_keys
    # existing people's events fall after the base's last day
    for path in summary.files:
        frame = read_landing(path)
        if "existing" in path.name and "occurred_at" in frame.columns:
            assert frame["occurred_at"].min() > f"{AS_OF.isoformat()}T23:59:59Z"


def test_updated_contacts_keep_their_ids_and_change_their_address(delivered):
    out, summary, _, _, _ = delivered
    (updates,) = [p for p in summary.files if p.parent.name == "contacts" and "existing" in p.name]
    moved = read_landing(updates)
    assert moved.height == summary.updated_contacts >= 1
    base = pl.concat(
        [read_landing(p) for p in (out / "landing" / "crm" / "contacts").glob("contacts_*.csv")], how="diagonal"
    ).filter(pl.col("contact_id").is_in(moved["contact_id"].to_list()))
    assert set(base["contact_id"]) == set(moved["contact_id"])
    latest = base.sort("updated_at").unique("contact_id", keep="last")
    compared = moved.join(latest, on="contact_id", suffix="_before")
    assert (compared["street"] != compared["street_before"]).all()
    assert (compared["updated_at"] > compared["updated_at_before"]).all()


def test_a_load_of_the_delivery_succeeds_without_rejects(delivered, tmp_path):
    import duckdb

    out, summary, _, _, _ = delivered
    landing = tmp_path / "landing"
    for path in summary.files:  # the delivery alone: every row of it must be accepted
        target = landing / path.relative_to(out / "landing")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    contracts = data_contracts.load_contracts()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        reports = {name: data_contracts.load_table(con, c, landing, load_id="D1") for name, c in contracts.items()}
    accepted = {f"{c.source}__{c.table}": reports[name].rows_accepted for name, c in contracts.items()}
    assert {k: v for k, v in accepted.items() if v} == summary.row_counts
    assert not any(r.rows_quarantined or r.blocking_files or r.rejected_files for r in reports.values())


def test_a_delivery_without_its_base_says_what_to_generate(tmp_path):
    from cdp.demo.generator import DeliveryError, generate_delivery

    with pytest.raises(DeliveryError, match="generate it first with `cdp generate --people 100 --seed 1"):
        generate_delivery(tmp_path, people=100, seed=1, as_of=AS_OF)


KEYS = {
    ("crm", "contacts"): "contact_id",
    ("webshop", "orders"): "order_id",
    ("webshop", "order_lines"): "order_line_id",
    ("pos", "transactions"): "transaction_id",
    ("loyalty", "members"): "loyalty_id",
    ("support", "tickets"): "ticket_id",
    ("preferences", "consents"): "consent_event_id",
}


def test_delivered_records_are_new_records_but_the_moved_contacts(delivered):
    out, summary, base_files, _, _ = delivered
    delivered_files = set(summary.files)
    overlap = {}
    for table_dir in (out / "landing").glob("*/*"):
        key = KEYS.get((table_dir.parent.name, table_dir.name), "event_id")
        files = sorted(p for p in table_dir.iterdir() if p.is_file())
        base_keys = {k for p in files if p not in delivered_files for k in read_landing(p)[key].drop_nulls().to_list()}
        new_keys = [k for p in files if p in delivered_files for k in read_landing(p)[key].drop_nulls().to_list()]
        overlap[table_dir.name if table_dir.name != "events" else f"{table_dir.parent.name}_events"] = len(
            set(new_keys) & base_keys
        )
    assert overlap.pop("contacts") == summary.updated_contacts
    assert set(overlap.values()) == {0}, overlap
