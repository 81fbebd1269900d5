"""Encryption at rest: with CDP_WAREHOUSE_ENCRYPTION_KEY set, the warehouse is an encrypted DuckDB
file: the loader writes it, the file's bytes hold no plaintext identifier, and it cannot be opened
without the key (or with a wrong one). Without the key, the demo's plain file is unchanged."""

from __future__ import annotations

import duckdb
import pytest

import data_contracts
from cdp import warehouse as database

EMAIL = "erika.mustermann.encrypted@example.org"
HEADER = (
    "contact_id,first_name,last_name,email,phone,birth_date,gender,street,city,postcode,country,created_at,updated_at"
)


def land_contacts(landing, rows: int = 200) -> None:
    directory = landing / "crm" / "contacts"
    directory.mkdir(parents=True)
    lines = [HEADER] + [
        f"CENC{i:05d},Erika,Mustermann,{EMAIL if i == 7 else f'person{i}@example.org'},,1980-01-01,F,"
        f"Hauptstrasse {i},Berlin,10115,DE,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z"
        for i in range(rows)
    ]
    (directory / "contacts.csv").write_text("\n".join(lines) + "\n")


def load(path, landing) -> int:
    contract = data_contracts.load_contracts()["crm__contacts"]
    con = database.connect(path)
    try:
        data_contracts.ensure_tables(con, contract)
        report = data_contracts.load_table(con, contract, landing, load_id="enc")
        con.execute("checkpoint")
    finally:
        con.close()
    return report.rows_accepted


def test_an_encrypted_warehouse_holds_no_plaintext_and_needs_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv(database.ENCRYPTION_KEY_ENV, "correct horse battery staple")
    land_contacts(tmp_path / "landing")
    warehouse = tmp_path / "warehouse.duckdb"
    assert load(warehouse, tmp_path / "landing") == 200
    data = warehouse.read_bytes()
    assert EMAIL.encode() not in data and b"Mustermann" not in data and b"CENC00007" not in data
    with database.connect(warehouse, read_only=True) as con:  # with the key: readable, catalog `warehouse`
        assert con.execute(
            "select current_database(), count(*) from raw.crm__contacts where email = ?", [EMAIL]
        ).fetchone() == ("warehouse", 1)
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(warehouse), read_only=True).execute("select count(*) from raw.crm__contacts")
    monkeypatch.setenv(database.ENCRYPTION_KEY_ENV, "wrong key")
    with pytest.raises(duckdb.Error):
        database.connect(warehouse, read_only=True)


def test_without_a_key_the_warehouse_stays_a_plain_file(tmp_path, monkeypatch):
    monkeypatch.delenv(database.ENCRYPTION_KEY_ENV, raising=False)
    land_contacts(tmp_path / "landing", rows=20)
    warehouse = tmp_path / "warehouse.duckdb"
    assert load(warehouse, tmp_path / "landing") == 20
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.crm__contacts where email = ?", [EMAIL]).fetchone()[0] == 1
