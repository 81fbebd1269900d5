"""The loader's accounting: every row read ends in raw or quarantine, with its reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

import data_contracts
from data_contracts import ContractError, load_contract
from support.workspace import PROJECT_ROOT

CONTRACT = """\
source: shop
table: orders
primary_key: [order_id]
event_time: ordered_at
max_reject_rate: 0.5
columns:
  order_id: {type: string, required: true}
  email: {type: string, pii: direct, labels: [I1]}
  ordered_at: {type: timestamp, required: true}
  total_amount: {type: decimal, required: true}
  status: {type: string, allowed_values: [completed, cancelled]}
"""


@pytest.fixture
def contract(tmp_path: Path) -> data_contracts.Contract:
    path = tmp_path / "shop__orders.yml"
    path.write_text(CONTRACT)
    return load_contract(path)


def write_landing(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "landing" / "shop" / "orders"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return tmp_path / "landing"


def quarantine(con) -> list[tuple]:
    return con.execute(
        "select _row_number, _rule, _column, _value from quarantine.shop__orders order by _source_file, _row_number"
    ).fetchall()


def test_csv_rows_are_accepted_or_quarantined_with_reasons(tmp_path, contract):
    landing = write_landing(
        tmp_path,
        "orders_1.csv",
        "\n".join(
            [
                "order_id,email,ordered_at,total_amount,status",
                'O1,"Lopez, Ana <a@x.com>",2024-01-02T10:00:00+02:00,10.50,completed',  # quoted comma: fine
                "O2,b@x.com,2024-01-02T10:00:00Z,abc,completed",  # invalid_type
                ",c@x.com,2024-01-02T10:00:00Z,3.00,completed",  # missing_required
                "O4,d@x.com,2024-01-02T10:00:00Z,4.00,shipped",  # not_allowed_value
                "O1,e@x.com,2024-01-03T10:00:00Z,5.00,completed",  # duplicate_primary_key
                "O6,f@x.com,2024-01-03T10:00:00Z,6.00,completed,EXTRA",  # malformed_line
                "O7,g@x.com,not a time,7.00,cancelled",  # invalid_type
            ]
        )
        + "\n",
    )
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        report = data_contracts.load_table(con, contract, landing, load_id="L1")
        assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (7, 1, 6)
        assert quarantine(con) == [
            (3, "invalid_type", "total_amount", "abc"),
            (4, "missing_required", "order_id", None),
            (5, "not_allowed_value", "status", "shipped"),
            (6, "duplicate_primary_key", "order_id", "O1"),
            (7, "malformed_line", None, "expected 5 fields, found 6"),
            (8, "invalid_type", "ordered_at", "not a time"),
        ]
        raw = con.execute("select order_id, email, ordered_at, total_amount from raw.shop__orders").fetchall()
        # The offset is converted to UTC; the quoted comma stayed inside its field.
        assert [(r[0], r[1], str(r[2]), str(r[3])) for r in raw] == [
            ("O1", "Lopez, Ana <a@x.com>", "2024-01-02 08:00:00", "10.50")
        ]
        ledger = con.execute("select rows_read, rows_accepted, rows_quarantined, status from audit.loads").fetchall()
        assert ledger == [(7, 1, 6, "loaded")]
        raw_line = con.execute(
            "select _raw_line from quarantine.shop__orders where _rule = 'malformed_line'"
        ).fetchone()
        assert raw_line == ("O6,f@x.com,2024-01-03T10:00:00Z,6.00,completed,EXTRA",)


def test_jsonl_and_parquet_keep_row_numbers(tmp_path, contract):
    rows = [
        {"order_id": "J1", "ordered_at": "2024-01-01T00:00:00Z", "total_amount": 12.5, "status": "completed"},
        {"order_id": "J2", "ordered_at": "2024-01-01T00:00:00Z", "total_amount": None},
    ]
    landing = write_landing(tmp_path, "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    pl.DataFrame(
        {"order_id": ["P1", "P2"], "ordered_at": ["2024-01-01", "2024-02-30"], "total_amount": ["1.00", "2.00"]}
    ).write_parquet(landing / "shop" / "orders" / "b.parquet")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        report = data_contracts.load_table(con, contract, landing, load_id="L1")
        assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (5, 2, 3)
        assert [(r[0], r[1]) for r in quarantine(con)] == [
            (2, "missing_required"),
            (3, "malformed_line"),
            (2, "invalid_type"),
        ]
        assert con.execute("select sum(total_amount) from raw.shop__orders").fetchone()[0] == pytest.approx(13.5)


def test_reloading_the_same_file_is_a_no_op(tmp_path, contract):
    landing = write_landing(
        tmp_path, "orders_1.csv", "order_id,ordered_at,total_amount\nO1,2024-01-01T00:00:00Z,1.00\n"
    )
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        first = data_contracts.load_table(con, contract, landing, load_id="L1")
        second = data_contracts.load_table(con, contract, landing, load_id="L2")
        assert (first.files_loaded, second.files_loaded, second.files_skipped) == (1, 0, 1)
        assert con.execute("select count(*) from raw.shop__orders").fetchone()[0] == 1


def test_a_file_without_a_required_column_fails_whole_and_says_why(tmp_path, contract):
    landing = write_landing(tmp_path, "orders_1.csv", "order_id,total_amount\nO1,1.00\n")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        report = data_contracts.load_table(con, contract, landing, load_id="L1")
        assert report.files_failed == 1 and report.rows_accepted == 0
        assert "ordered_at" in report.errors[0] and "shop__orders.yml" in report.errors[0]
        assert con.execute("select status from audit.loads").fetchone() == ("failed",)


def test_contract_errors_name_the_file_line_and_allowed_values(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(CONTRACT.replace("labels: [I1]", "labels: [X9]"))
    with pytest.raises(ContractError, match=r"bad.yml \(line 8\).*X9.*C1, C2"):
        load_contract(path)
    path.write_text(CONTRACT + "colour: red\n")
    with pytest.raises(ContractError, match=r"unknown key 'colour'; allowed keys are source, table"):
        load_contract(path)
    path.write_text(CONTRACT.replace("type: decimal", "type: money"))
    with pytest.raises(ContractError, match=r"type is 'money'; expected one of string, integer"):
        load_contract(path)


def test_shipped_contracts_match_the_documented_sources():
    doc = (PROJECT_ROOT / "docs" / "sources.md").read_text()
    documented = {}
    for line in doc.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            name = cells[0].strip("`").replace("/", "__")
            parts = re.split(r",\s*(?![^()]*\))", cells[3])  # commas outside parentheses
            documented[name] = [part.split("(")[0].strip(" *") for part in parts]
    contracts = data_contracts.load_contracts()
    assert set(contracts) == set(documented)
    for name, contract in contracts.items():
        assert list(contract.columns) == documented[name], name


def test_fast_and_quote_aware_csv_readers_agree(tmp_path):
    from data_contracts.readers import _read_quoted_csv, _read_unquoted_csv

    text = (
        "order_id,email,total_amount\nO1,a@x.com,1.00\n\nO2,,2.00\nO3,c@x.com,3.00,EXTRA\nO4,d@x.com\nO5,e@x.com,5.00\n"
    )
    fast, careful = _read_unquoted_csv(text), _read_quoted_csv(text)
    assert fast.columns == careful.columns == ["order_id", "email", "total_amount"]
    assert fast.rows.equals(careful.rows)
    assert fast.malformed.equals(careful.malformed)
    assert fast.malformed["_row_number"].to_list() == [5, 6]


def test_fast_and_line_by_line_jsonl_readers_agree(tmp_path):
    from data_contracts.readers import _read_jsonl_lines, read_jsonl

    rows = [
        {"order_id": "J1", "amount": 12.5, "paid": True, "note": None},
        {"order_id": "J2", "amount": 3.25, "paid": False, "note": "gift, wrapped"},
    ]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fast, careful = read_jsonl(path), _read_jsonl_lines(path.read_text())
    assert fast.rows.equals(careful.rows), (fast.rows, careful.rows)
