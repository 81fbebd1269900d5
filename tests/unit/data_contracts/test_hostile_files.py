"""Hostile landing files (issue 19, items 12 and 13): a file that cannot be read is moved aside with its
reason and recorded, never crashes the load of anything else; a file that can be read yields exactly
the rows it holds (each counted once, whatever its encoding, quoting or JSON layout)."""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

import data_contracts
from data_contracts import load_contract

ORDERS = """\
source: shop
table: orders
primary_key: [order_id]
max_reject_rate: 0.5
columns:
  order_id: {type: string, required: true}
  email: {type: string, format: email}
  total_amount: {type: decimal, required: true}
  note: {type: string}
"""
CUSTOMERS = """\
source: shop
table: customers
primary_key: [customer_id]
columns:
  customer_id: {type: string, required: true}
  email: {type: string, format: email}
"""
RECORDS = [{"order_id": f"O{i}", "email": f"c{i}@x.com", "total_amount": f"{i}.50", "note": f"n{i}"} for i in range(20)]


def good_parquet() -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame(RECORDS).write_parquet(buffer)
    return buffer.getvalue()


def csv_text(records=RECORDS) -> str:
    return "order_id,email,total_amount,note\n" + "".join(
        f"{r['order_id']},{r['email']},{r['total_amount']},{r['note']}\n" for r in records
    )


@pytest.fixture
def contracts(tmp_path: Path) -> dict[str, data_contracts.Contract]:
    found = {}
    for text in (ORDERS, CUSTOMERS):
        contract_path = tmp_path / "contracts" / f"shop__{text.split('table: ')[1].split()[0]}.yml"
        contract_path.parent.mkdir(exist_ok=True)
        contract_path.write_text(text)
        contract = load_contract(contract_path)
        found[contract.table] = contract
    return found


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    for table in ("orders", "customers"):
        (tmp_path / "landing" / "shop" / table).mkdir(parents=True)
    return tmp_path / "landing"


def drop(landing: Path, table: str, name: str, content: bytes | str) -> Path:
    path = landing / "shop" / table / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def load_all(con, contracts, landing, load_id="L1") -> dict[str, data_contracts.TableLoadReport]:
    reports = {}
    for table, contract in contracts.items():
        report = data_contracts.load_table(con, contract, landing, load_id=load_id)
        assert report.rows_read == report.rows_accepted + report.rows_quarantined + report.rows_suppressed
        reports[table] = report
    return reports


def nested_parquet(kind: str) -> bytes:
    buffer = io.BytesIO()
    value = [["a", "b"]] if kind == "list" else [{"street": "Main St", "no": 1}]
    pl.DataFrame({"order_id": ["O1"], "total_amount": ["1.00"], "note": value}).write_parquet(buffer)
    return buffer.getvalue()


UNREADABLE_PARQUET = {
    "truncated": lambda: good_parquet()[: len(good_parquet()) // 2],
    "zero_bytes": lambda: b"",
    "csv_renamed": lambda: csv_text().encode(),
    "nested_list": lambda: nested_parquet("list"),
    "nested_struct": lambda: nested_parquet("struct"),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE_PARQUET))
def test_an_unreadable_parquet_is_moved_aside_with_its_reason(tmp_path, contracts, landing, kind):
    content = UNREADABLE_PARQUET[kind]()
    drop(landing, "orders", "a_bad.parquet", content)
    drop(landing, "orders", "b_good.csv", csv_text(RECORDS[:5]))
    drop(landing, "customers", "customers.csv", "customer_id,email\nC1,a@x.com\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    reports = load_all(con, contracts, landing)

    orders = reports["orders"]
    assert (orders.files_failed, orders.files_loaded, orders.rows_accepted) == (1, 1, 5), "the good file still loads"
    assert reports["customers"].rows_accepted == 1, "other tables load"
    moved = landing / "_rejected" / "shop" / "orders" / "a_bad.parquet"
    assert moved.read_bytes() == content, "the rejected file is kept byte for byte"
    assert not (landing / "shop" / "orders" / "a_bad.parquet").exists()
    status, error, moved_to, rows_read = con.execute(
        "select status, error, moved_to, rows_read from audit.loads where file_path like '%a_bad.parquet'"
    ).fetchone()
    assert (status, moved_to, rows_read) == ("failed", str(moved), 0)
    assert "shop/orders/a_bad.parquet" in error and "moved to" in error
    reason = {
        "truncated": "not a readable Parquet file",
        "zero_bytes": "empty (0 bytes)",
        "csv_renamed": "looks like CSV",
        "nested_list": "column 'note' holds list values",
        "nested_struct": "column 'note' holds struct values",
    }[kind]
    assert reason in error, error
    assert orders.errors == [error]

    # A later run is not affected: nothing left to trip over, new files load.
    drop(landing, "orders", "c_next.csv", csv_text(RECORDS[5:7]))
    later = load_all(con, contracts, landing, load_id="L2")
    assert (later["orders"].files_failed, later["orders"].rows_accepted) == (0, 2)


def test_a_nested_column_outside_the_contract_is_kept_as_json(tmp_path, contracts, landing):
    buffer = io.BytesIO()
    pl.DataFrame({"order_id": ["O1"], "total_amount": ["1.00"], "tags": [["gift", "red"]]}).write_parquet(buffer)
    drop(landing, "orders", "a.parquet", buffer.getvalue())
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert (report.files_failed, report.rows_accepted) == (0, 1)
    assert json.loads(con.execute("select _extra from raw.shop__orders").fetchone()[0]) == {"tags": ["gift", "red"]}


def test_non_utf8_binary_values_in_a_parquet_are_quarantined_per_row(tmp_path, contracts, landing):
    buffer = io.BytesIO()
    pl.DataFrame(
        {
            "order_id": [b"O1", b"O2", b"O3"],
            "total_amount": ["1.00", "2.00", "3.00"],
            "note": [b"fine", b"caf\xe9", None],
        }
    ).write_parquet(buffer)
    drop(landing, "orders", "a.parquet", buffer.getvalue())
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert (report.files_failed, report.rows_read, report.rows_accepted, report.rows_quarantined) == (0, 3, 2, 1)
    assert con.execute("select _row_number, _rule, _column from quarantine.shop__orders").fetchall() == [
        (2, "invalid_encoding", "note")
    ]
    assert con.execute("select order_id, note from raw.shop__orders order by 1").fetchall() == [
        ("O1", "fine"),
        ("O3", None),
    ]


def counts(report) -> tuple[int, int, int, int]:
    return report.files_failed, report.rows_read, report.rows_accepted, report.rows_quarantined


def test_an_unbalanced_quote_costs_one_line_not_the_rest_of_the_file(tmp_path, contracts, landing):
    lines = csv_text().splitlines()
    lines[5] = 'O4,c4@x.com,4.50,"unbalanced'  # the quote never closes
    lines[12] = 'O11,"c11@x.com,11.50,n11'  # nor this one
    drop(landing, "orders", "a.csv", "\n".join(lines) + "\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (0, 20, 18, 2)
    assert con.execute("select _row_number, _rule, _raw_line from quarantine.shop__orders order by 1").fetchall() == [
        (6, "malformed_line", lines[5]),
        (13, "malformed_line", lines[12]),
    ]
    assert con.execute("select rows_read from audit.loads").fetchone() == (20,)


def test_a_quoted_line_break_is_still_one_row(tmp_path, contracts, landing):
    text = (
        csv_text(RECORDS[:3])
        + 'O9,c9@x.com,9.50,"two\nlines, and a comma"\n'
        + csv_text(RECORDS[3:5]).split("\n", 1)[1]
    )
    drop(landing, "orders", "a.csv", text)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (0, 6, 5, 1), "five rows, and one whose note holds a line break (refused by default)"
    assert con.execute("select order_id, _rule, _column from quarantine.shop__orders").fetchall() == [
        ("O9", "control_character", "note")
    ]


@pytest.mark.parametrize(
    "name, content",
    [
        ("bom.jsonl", codecs.BOM_UTF8 + "\n".join(json.dumps(r) for r in RECORDS).encode() + b"\n"),
        ("bom.csv", codecs.BOM_UTF8 + csv_text().encode()),
        ("utf16.csv", csv_text().encode("utf-16")),  # with its BOM, as Excel writes it
        ("utf16.jsonl", "\n".join(json.dumps(r) for r in RECORDS).encode("utf-16")),
        ("array_pretty.json", json.dumps(RECORDS, indent=2).encode()),
        ("array_one_line.jsonl", json.dumps(RECORDS).encode()),
        ("crlf.jsonl", "\r\n".join(json.dumps(r) for r in RECORDS).encode() + b"\r\n"),
    ],
)
def test_rows_read_are_the_rows_the_file_holds(tmp_path, contracts, landing, name, content):
    drop(landing, "orders", name, content)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (0, 20, 20, 0), con.execute(
        "select _rule, _raw_line from quarantine.shop__orders"
    ).fetchall()
    assert con.execute("select count(distinct order_id) from raw.shop__orders").fetchone() == (20,)


def test_a_json_array_keeps_element_positions_and_refuses_non_objects(tmp_path, contracts, landing):
    elements = [RECORDS[0], "not an object", RECORDS[1]]
    drop(landing, "orders", "a.json", json.dumps(elements))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (0, 3, 2, 1)
    assert con.execute("select _row_number, _rule from quarantine.shop__orders").fetchall() == [(2, "malformed_line")]
    assert con.execute("select order_id, _row_number from raw.shop__orders order by 2").fetchall() == [
        ("O0", 1),
        ("O1", 3),
    ]


def test_a_truncated_json_array_keeps_its_complete_elements(tmp_path, contracts, landing):
    text = json.dumps(RECORDS[:3], indent=2)
    drop(landing, "orders", "a.json", text[: text.rindex('"order_id"') + 5])  # cut inside the third element
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (0, 3, 2, 1)
    assert con.execute("select _rule from quarantine.shop__orders").fetchall() == [("malformed_line",)]


def test_csv_content_in_a_jsonl_file_is_refused_whole(tmp_path, contracts, landing):
    drop(landing, "orders", "a.jsonl", csv_text())
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (1, 0, 0, 0)
    assert "looks like CSV" in report.errors[0] and "a.jsonl" in report.errors[0]
    assert (landing / "_rejected" / "shop" / "orders" / "a.jsonl").exists()


def test_a_jsonl_file_with_some_bad_lines_still_loads_the_good_ones(tmp_path, contracts, landing):
    lines = [json.dumps(r) for r in RECORDS[:4]]
    lines[2] = "O2,c2@x.com,2.50,n2"
    drop(landing, "orders", "a.jsonl", "\n".join(lines) + "\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = load_all(con, contracts, landing)["orders"]
    assert counts(report) == (0, 4, 3, 1)


def test_cdp_load_goes_on_past_an_unreadable_file(tmp_path):
    """`cdp load` on the shipped contracts: one broken parquet does not stop the other tables."""
    from click.testing import CliRunner

    from cdp.cli.app import main

    data_dir = tmp_path / "data"
    members = data_dir / "landing" / "loyalty" / "members"
    members.mkdir(parents=True)
    (members / "members.parquet").write_bytes(b"PAR1 this is not really parquet")
    contacts = data_dir / "landing" / "crm" / "contacts"
    contacts.mkdir(parents=True)
    (contacts / "contacts.csv").write_text(
        "contact_id,first_name,last_name,email,phone,birth_date,gender,street,city,postcode,country,created_at,"
        "updated_at\nC1,Ana,Lopez,ana@x.com,,1990-01-01,F,,Berlin,10115,DE,2026-06-01T10:00:00Z,"
        "2026-06-01T10:00:00Z\n"
    )
    env = {"CDP_DATA_DIR": str(data_dir), "CDP_WAREHOUSE": str(data_dir / "w.duckdb")}
    result = CliRunner().invoke(main, ["load", "--no-expectations"], env=env)
    assert result.exit_code == 0, result.output
    assert "loyalty/members/members.parquet" in result.output
    with duckdb.connect(str(data_dir / "w.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw.crm__contacts").fetchone() == (1,)
        assert con.execute("select status from audit.loads where table_name = 'members'").fetchone() == ("failed",)
    assert (data_dir / "landing" / "_rejected" / "loyalty" / "members" / "members.parquet").exists()
