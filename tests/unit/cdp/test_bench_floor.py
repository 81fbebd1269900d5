"""`cdp bench`'s single-pass floor reads every landing file of every contract, whatever its format, and
writes one row per person key (issue 20)."""

from __future__ import annotations

import json

import polars as pl

from data_contracts import load_contracts
from tools.bench.pipeline import floor_sources, single_pass_floor


def test_the_floor_reads_every_file_of_every_format_and_counts_rows_per_person_key(tmp_path):
    landing = tmp_path / "landing"
    orders = landing / "webshop" / "orders"
    orders.mkdir(parents=True)
    (orders / "a.jsonl").write_text(
        "\n".join(json.dumps({"order_id": f"o{i}", "customer_id": f"c{i % 3}"}) for i in range(7)) + "\n"
    )
    (orders / "b.jsonl").write_text(json.dumps({"order_id": "o9", "customer_id": "c0"}) + "\n")
    contacts = landing / "crm" / "contacts"
    contacts.mkdir(parents=True)
    # A malformed row (as the demo plants) must not make the reader take the header for one column.
    (contacts / "one.csv").write_text("contact_id,email\nk1,a@x.org\nk2,b@x.org\nk9,c@x.org,an extra field\n")
    pl.DataFrame({"contact_id": ["k3"], "email": ["a@x.org"]}).write_parquet(contacts / "two.parquet")
    keys = {name: key for name, key, _ in floor_sources(landing, load_contracts())}
    assert keys == {"webshop__orders": "customer_id", "crm__contacts": "contact_id"}  # the first identity column
    seconds, rows = single_pass_floor(landing, tmp_path)
    assert rows in (8 + 3, 8 + 4) and seconds > 0  # the extra-field row read or skipped
    assert not (tmp_path / "floor.duckdb").exists()


def test_the_step_table_has_a_column_per_run_and_a_dash_where_a_run_had_no_such_step():
    from tools.bench.pipeline import step_table

    runs = {
        "full": ({"steps": [("load", 10.0), ("dbt", 30.0)], "total_s": 45.0}, 900.0),
        "1% more": ({"steps": [("load", 2.0), ("dbt", 5.0), ("skipped_publish", 0.5)], "total_s": 9.0}, 800.0),
        "nothing new": ({"steps": [("load", 1.0)], "total_s": 3.0}, 700.0),
    }
    lines = step_table(runs, floor_s=1.5)
    assert lines[0].index("full") < lines[0].index("1% more") < lines[0].index("nothing new")
    cells = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert cells["load"] == ["10.00", "2.00", "1.00"]
    assert cells["dbt"] == ["30.00", "5.00", "-"]
    assert cells["skipped_publish"] == ["-", "0.50", "-"]
    assert lines[-1].split()[-3:] == ["30.0", "6.0", "2.0"]  # x the floor
