"""Field-level rules: size and control-character limits every contract gets by default (issue 19 item 14),
a column that nulls a bad value instead of losing the row (issue 18 item 4), and one definition of the
rules that the polars checks and the Great Expectations suite both apply to normalized values, so
they agree (issue 19 item 18)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

import data_contracts
from data_contracts import ContractError, load_contract
from data_contracts.expectations import run_suite

PEOPLE = """\
source: shop
table: people
primary_key: [person_id]
max_reject_rate: 0.5
columns:
  person_id: {type: string, required: true}
  email: {type: string, format: email, on_invalid: null_value}
  name: {type: string}
  birth_date: {type: date, on_invalid: null_value}
  bio: {type: string, max_length: 20000, allow_line_breaks: true}
  country: {type: string, format: country_code}
"""
HEADER = ["person_id", "email", "name", "birth_date", "bio", "country"]


@pytest.fixture
def contract(tmp_path: Path) -> data_contracts.Contract:
    path = tmp_path / "shop__people.yml"
    path.write_text(PEOPLE)
    return load_contract(path)


def load_rows(tmp_path: Path, contract, rows: list[dict], name="a.jsonl", load_id="L1", con=None):
    landing = tmp_path / "landing"
    directory = landing / contract.source / contract.table
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    con = con or duckdb.connect(str(tmp_path / "w.duckdb"))
    report = data_contracts.load_table(con, contract, landing, load_id=load_id)
    assert report.rows_read == report.rows_accepted + report.rows_quarantined
    return con, report


def person(i: int, **values) -> dict:
    return {"person_id": f"P{i}", "email": f"p{i}@x.com", "name": f"Name {i}", "birth_date": "1980-01-02"} | values


# --- 19.14: default field size, control characters --------------------------------------------


def test_control_characters_and_huge_fields_are_refused_by_default(tmp_path, contract):
    rows = [
        person(1),
        person(2, person_id="P\x002"),  # NUL in an identifier
        person(3, name="Ana\x1b[31m"),  # an escape sequence in a text field
        person(4, name="Ana\nLopez"),  # a line break where none is allowed
        person(5, name="x" * 10_000_000),  # a 10 MB field
        person(6, bio="line one\nline two\ttabbed"),  # this column allows line breaks and tabs
        person(7, bio="nul\x00inside"),  # ... but never NUL
        person(8, bio="y" * 15_000),  # and allows 20,000 characters
    ]
    con, report = load_rows(tmp_path, contract, rows)
    assert con.execute("select person_id from raw.shop__people order by 1").fetchall() == [("P1",), ("P6",), ("P8",)]
    quarantined = con.execute(
        "select _row_number, _rule, _column, length(_value) from quarantine.shop__people order by 1"
    ).fetchall()
    assert [q[:3] for q in quarantined] == [
        (2, "control_character", "person_id"),
        (3, "control_character", "name"),
        (4, "control_character", "name"),
        (5, "too_long", "name"),
        (7, "control_character", "bio"),
    ]
    assert quarantined[3][3] < 1000, "the quarantine reason quotes the start of a huge value, not all of it"
    assert con.execute("select length(name) from quarantine.shop__people where _row_number = 5").fetchone() == (
        10_000_000,
    ), "the value itself is kept whole in its column"


def test_contract_defaults_set_the_limits_and_columns_override_them(tmp_path):
    path = tmp_path / "shop__people.yml"
    path.write_text(
        PEOPLE.replace("max_reject_rate: 0.5\n", "max_reject_rate: 0.5\ndefaults: {max_length: 10}\n").replace(
            "name: {type: string}", "name: {type: string, max_length: 12}"
        )
    )
    contract = load_contract(path)
    assert contract.columns["person_id"].max_length == 10 and contract.columns["name"].max_length == 12
    assert contract.columns["bio"].max_length == 20000
    assert load_contract(tmp_path / "shop__people.yml").columns["country"].max_length == 10
    with pytest.raises(ContractError, match=r"defaults.*unknown key 'max_size'"):
        path.write_text(PEOPLE.replace("max_reject_rate: 0.5\n", "max_reject_rate: 0.5\ndefaults: {max_size: 10}\n"))
        load_contract(path)


def test_the_shipped_default_limit_applies_to_every_string_column():
    from data_contracts.contract import DEFAULT_MAX_LENGTH

    for contract in data_contracts.load_contracts().values():
        for column in contract.columns.values():
            if column.type == "string":
                assert column.max_length is not None and column.max_length <= DEFAULT_MAX_LENGTH, column
                assert not column.allow_line_breaks, column


# --- 18.4: on_invalid: null_value ----------------------------------------------------------------


def test_a_bad_value_in_a_null_value_column_keeps_the_row(tmp_path, contract):
    rows = [
        person(1),
        person(2, birth_date="1955-11-92"),  # typo'd date: the person stays, the date goes
        person(3, email="ana(at)x.com", birth_date="31/02/1990"),  # two bad values, both nulled
        person(4, person_id="", birth_date="1955-11-92"),  # a missing key still quarantines the row
        person(5, country="XX"),  # country quarantines the row (default)
    ]
    con, report = load_rows(tmp_path, contract, rows)
    assert (report.rows_read, report.rows_accepted, report.rows_quarantined, report.values_nulled) == (5, 3, 2, 3)
    assert con.execute("select person_id, email, birth_date::varchar from raw.shop__people order by 1").fetchall() == [
        ("P1", "p1@x.com", "1980-01-02"),
        ("P2", "p2@x.com", None),
        ("P3", None, None),
    ]
    nulled = con.execute(
        "select person_id, _row_number, _rule, _column, _value, _errors from quarantine.shop__people "
        "where _action = 'null_value' order by 2"
    ).fetchall()
    assert [n[:5] for n in nulled] == [
        ("P2", 2, "invalid_type", "birth_date", "1955-11-92"),
        ("P3", 3, "invalid_type", "birth_date", "31/02/1990"),  # the first failure, in rule order
    ]
    assert [(e["column"], e["value"], e["action"]) for e in json.loads(nulled[1][5])] == [
        ("birth_date", "31/02/1990", "null_value"),
        ("email", "ana(at)x.com", "null_value"),
    ]
    rows_quarantined = con.execute(
        "select _row_number, _rule from quarantine.shop__people where _action = 'quarantine_row' order by 1"
    ).fetchall()
    assert rows_quarantined == [(4, "missing_required"), (5, "invalid_format")]
    assert con.execute("select rows_quarantined, values_nulled from audit.loads").fetchone() == (2, 3)


def test_a_replay_does_not_load_a_nulled_value_row_twice(tmp_path, contract):
    con, _ = load_rows(tmp_path, contract, [person(1, birth_date="1955-11-92")])
    replayed = data_contracts.replay_quarantine(con, contract, load_id="R1")
    assert replayed.rows_accepted == 0
    assert con.execute("select count(*) from raw.shop__people").fetchone() == (1,)


def test_a_replay_under_null_value_keeps_the_row_and_records_the_value(tmp_path, contract):
    strict = tmp_path / "strict" / "shop__people.yml"
    strict.parent.mkdir()
    strict.write_text(PEOPLE.replace("birth_date: {type: date, on_invalid: null_value}", "birth_date: {type: date}"))
    con, report = load_rows(tmp_path, load_contract(strict), [person(1), person(2, birth_date="1955-11-92")])
    assert (report.rows_accepted, report.rows_quarantined) == (1, 1)

    replayed = data_contracts.replay_quarantine(con, contract, load_id="R1")  # the contract now nulls bad dates
    assert (replayed.rows_accepted, replayed.rows_quarantined) == (1, 0)
    assert con.execute("select person_id, birth_date from raw.shop__people order by 1").fetchall() == [
        ("P1", dt.date(1980, 1, 2)),
        ("P2", None),
    ]
    assert con.execute(
        "select _action, _rule, _value, _row_number, _load_id from quarantine.shop__people"
    ).fetchall() == [("null_value", "invalid_type", "1955-11-92", 2, "R1")]


def test_null_value_is_refused_where_it_cannot_apply(tmp_path):
    path = tmp_path / "shop__people.yml"
    path.write_text(
        PEOPLE.replace(
            "person_id: {type: string, required: true}",
            "person_id: {type: string, required: true, on_invalid: null_value}",
        )
    )
    with pytest.raises(ContractError, match=r"column 'person_id'.*on_invalid: null_value.*required"):
        load_contract(path)
    path.write_text(PEOPLE.replace("on_invalid: null_value}", "on_invalid: drop}", 1))
    with pytest.raises(ContractError, match=r"on_invalid is 'drop'; expected one of quarantine_row, null_value"):
        load_contract(path)


def test_the_shipped_crm_contract_keeps_a_contact_with_a_typod_birth_date(tmp_path):
    contract = data_contracts.load_contracts()["crm__contacts"]
    landing = tmp_path / "landing" / "crm" / "contacts"
    landing.mkdir(parents=True)
    (landing / "contacts.csv").write_text(
        "contact_id,first_name,last_name,email,phone,birth_date,gender,street,city,postcode,country,created_at,"
        "updated_at\nC1,Ana,Lopez,ana@x.com,,1955-11-92,F,,Berlin,10115,DE,2026-06-01T10:00:00Z,2026-06-01T10:00:00Z\n"
    )
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = data_contracts.load_table(con, contract, tmp_path / "landing", load_id="L1")
    assert (report.rows_accepted, report.rows_quarantined, report.values_nulled) == (1, 0, 1)
    assert con.execute("select contact_id, birth_date from raw.crm__contacts").fetchone() == ("C1", None)
    assert con.execute("select _value from quarantine.crm__contacts where _action = 'null_value'").fetchone() == (
        "1955-11-92",
    )


# --- 19.18: one definition, two validators that agree --------------------------------------------

MESSY = """\
source: crm
table: messy
primary_key: [id]
max_reject_rate: 0.02
columns:
  id: {type: string, required: true}
  email: {type: string, format: email}
  phone: {type: string, format: phone}
  country: {type: string, format: country_code}
  currency: {type: string, format: currency_code}
  website: {type: string, format: url}
  seen: {type: string, format: iso8601}
  coupon: {type: string, pattern: "[A-Z]{3}-[0-9]{2}", unique: true}
  tier: {type: string, allowed_values: [gold, silver]}
  amount: {type: decimal, min: 0, max: 100}
  code: {type: string, max_length: 5}
  required_note: {type: string, required: true}
"""


def clean_row(i: int) -> dict[str, str]:
    return {
        "id": f"R{i}",
        "email": f"p{i}@example.com",
        "phone": "+49 30 1234567",
        "country": "DE",
        "currency": "EUR",
        "website": "https://example.com/a",
        "seen": "2024-01-02T10:00:00Z",
        "coupon": f"ABC-{i % 100:02d}" if i < 100 else None,
        "tier": "gold",
        "amount": "10.00",
        "code": "ab",
        "required_note": "ok",
    }


# (rule, column, bad value, rows): each planted row has exactly this one defect.
PLANTED = [
    ("invalid_format", "email", "not-an-email", 3),
    ("invalid_format", "phone", "12345", 4),  # valid characters, too few digits
    ("invalid_format", "phone", "call me", 1),
    ("invalid_format", "country", "XX", 2),
    ("invalid_format", "currency", "EURO", 1),
    ("invalid_format", "website", "example.com", 2),
    ("invalid_format", "seen", "yesterday", 2),
    ("pattern_mismatch", "coupon", "abc-1", 2),
    ("not_allowed_value", "tier", "Gold", 3),
    ("out_of_range", "amount", "-1.00", 2),
    ("too_long", "code", "abcdef", 1),
    ("control_character", "code", "a\x07b", 1),
    ("missing_required", "required_note", "  ", 3),
]
# Normal variation that is valid once normalized: lower-case codes (2.2%), padding.
NORMALIZED = [("country", "de", 22), ("currency", "eur", 5), ("email", "  p@example.com ", 4)]


def messy_rows() -> tuple[pl.DataFrame, dict[tuple[str, str], int]]:
    rows = [clean_row(i) for i in range(1000)]
    position, planted = 200, {}
    for rule, column, value, count in PLANTED:
        for _ in range(count):
            rows[position][column] = value
            position += 1
        planted[(rule, column)] = planted.get((rule, column), 0) + count
    for column, value, count in NORMALIZED:
        for _ in range(count):
            rows[position][column] = value
            position += 1
    rows[position]["id"] = rows[position + 1]["id"] = "R-TWICE"  # one duplicated key: two rows
    frame = pl.DataFrame(rows, schema={name: pl.String for name in rows[0]})
    return frame.with_row_index("_row_number", offset=2).with_columns(pl.col("_row_number").cast(pl.Int64)), planted


def test_lower_case_country_codes_pass_both_validators(tmp_path):
    """2.2% lower-case country codes in a CRM file with a 2% tolerance: valid once upper-cased, so the
    row rules accept them, the suite agrees, and raw holds the normalized code."""
    contract = data_contracts.load_contracts()["crm__contacts"]
    header = "contact_id,first_name,last_name,email,phone,birth_date,gender,street,city,postcode,country,created_at,updated_at"
    lines = [
        f"C{i},Ana,Lopez,ana{i}@x.com,,1990-01-01,F,,Berlin,10115,{'de' if i < 22 else 'DE'},"
        "2026-06-01T10:00:00Z,2026-06-01T10:00:00Z"
        for i in range(1000)
    ]
    landing = tmp_path / "landing" / "crm" / "contacts"
    landing.mkdir(parents=True)
    (landing / "contacts.csv").write_text("\n".join([header, *lines]) + "\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = data_contracts.load_table(con, contract, tmp_path / "landing", load_id="L1", run_expectations=True)
    assert (report.rows_accepted, report.rows_quarantined) == (1000, 0)
    assert report.expectation_failures == []
    assert con.execute("select distinct country from raw.crm__contacts").fetchall() == [("DE",)]


def test_the_suite_and_the_row_rules_count_the_same_rows(tmp_path):
    frame, planted = messy_rows()
    path = tmp_path / "crm__messy.yml"
    path.write_text(MESSY)
    contract = load_contract(path)

    result = data_contracts.validate(frame, contract)
    flagged = {}
    for errors in result.rejected["_errors"]:
        for error in json.loads(errors):
            flagged[(error["rule"], error["column"])] = flagged.get((error["rule"], error["column"]), 0) + 1
    assert {k: v for k, v in flagged.items() if k[0] != "duplicate_primary_key"} == planted
    assert result.rejected.height == sum(planted.values()) + 1  # + the second copy of R-TWICE

    suite = run_suite(contract, frame)
    by_rule = {(o.rule, o.column): o for o in suite.outcomes if o.rule}
    for (rule, column), count in planted.items():
        outcome = by_rule[(rule, column)]
        assert (outcome.unexpected_count, outcome.row_rule_count) == (count, count), outcome
    assert by_rule[("duplicate_primary_key", "id")].unexpected_count == 2  # GX counts both copies
    assert all(o.agrees for o in suite.outcomes), [o for o in suite.outcomes if not o.agrees]
    assert suite.agrees


def test_disagreement_is_reported(tmp_path, monkeypatch):
    """If one side changes alone, the check says so: the suite's phone regex made laxer than the rule."""
    from data_contracts import rules

    frame, _ = messy_rows()
    path = tmp_path / "crm__messy.yml"
    path.write_text(MESSY)
    contract = load_contract(path)
    original = rules.gx_expectation

    def lax_phone(rule, mostly):
        if (rule.name, rule.column) == ("invalid_format", "phone"):
            import great_expectations as gx

            return gx.expectations.ExpectColumnValuesToMatchRegex(column="phone", regex=r"^[0-9+ ()./-]+$")
        return original(rule, mostly)

    monkeypatch.setattr(rules, "gx_expectation", lax_phone)
    suite = run_suite(contract, frame)
    assert not suite.agrees
    (phone,) = [o for o in suite.outcomes if o.column == "phone" and not o.agrees]
    assert (phone.unexpected_count, phone.row_rule_count) == (1, 5)
