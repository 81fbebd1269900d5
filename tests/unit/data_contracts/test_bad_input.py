"""Every kind of bad input gets a clear outcome, and no row is lost (rows read = accepted + quarantined)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

import data_contracts
from data_contracts import load_contract

CONTRACT = """\
source: shop
table: events
primary_key: [event_id]
event_time: occurred_at
records: immutable
freshness: {max_age_hours: 48}
max_reject_rate: 0.5
columns:
  event_id: {type: string, required: true, max_length: 12}
  email: {type: string, format: email, pii: direct, labels: [I1]}
  phone: {type: string, format: phone, pii: direct, labels: [I1]}
  country: {type: string, format: country_code}
  currency: {type: string, format: currency_code}
  coupon: {type: string, pattern: "[A-Z]{3}-[0-9]{2}", unique: true}
  amount: {type: decimal, min: 0, max: 10000}
  occurred_at: {type: timestamp, required: true}
"""
HEADER = "event_id,email,phone,country,currency,coupon,amount,occurred_at"
GOOD = "E1,a@x.com,(415) 555-0134,US,USD,ABC-12,10.00,2026-06-01T10:00:00Z"


@pytest.fixture
def contract(tmp_path: Path) -> data_contracts.Contract:
    path = tmp_path / "shop__events.yml"
    path.write_text(CONTRACT)
    return load_contract(path)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    (tmp_path / "landing" / "shop" / "events").mkdir(parents=True)
    return tmp_path / "landing"


def load(tmp_path, contract, landing, files: dict[str, bytes | str]):
    for name, content in files.items():
        target = landing / "shop" / "events" / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = data_contracts.load_table(con, contract, landing, load_id="L1")
    assert report.rows_read == report.rows_accepted + report.rows_quarantined
    return con, report


def rules(con) -> list[tuple]:
    return con.execute(
        "select _row_number, _rule, _column from quarantine.shop__events order by _row_number"
    ).fetchall()


def test_each_rule_quarantines_with_its_name(tmp_path, contract, landing):
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        HEADER,
        GOOD,
        "E2,not-an-email,(415) 555-0134,US,USD,ABC-13,1.00,2026-06-01T10:00:00Z",
        "E3,a@x.com,12,US,USD,ABC-14,1.00,2026-06-01T10:00:00Z",
        "E4,a@x.com,(415) 555-0134,XX,USD,ABC-15,1.00,2026-06-01T10:00:00Z",
        "E5,a@x.com,(415) 555-0134,US,EURO,ABC-16,1.00,2026-06-01T10:00:00Z",
        "E6,a@x.com,(415) 555-0134,US,USD,abc-17,1.00,2026-06-01T10:00:00Z",
        "E7,a@x.com,(415) 555-0134,US,USD,ABC-18,-5.00,2026-06-01T10:00:00Z",
        "E8-TOO-LONG-ID,a@x.com,(415) 555-0134,US,USD,ABC-19,1.00,2026-06-01T10:00:00Z",
        f"E9,a@x.com,(415) 555-0134,US,USD,ABC-20,1.00,{future}",
        "E10,a@x.com,(415) 555-0134,US,USD,ABC-12,1.00,2026-06-01T10:00:00Z",
        "E11,a@x.com,(415) 555-0134,US,USD,ABC-21,1.00,last tuesday",
    ]
    con, report = load(tmp_path, contract, landing, {"a.csv": "\n".join(lines) + "\n"})
    assert report.rows_accepted == 1
    assert rules(con) == [
        (3, "invalid_format", "email"),
        (4, "invalid_format", "phone"),
        (5, "invalid_format", "country"),
        (6, "invalid_format", "currency"),
        (7, "pattern_mismatch", "coupon"),
        (8, "out_of_range", "amount"),
        (9, "too_long", "event_id"),
        (10, "future_timestamp", "occurred_at"),
        (11, "duplicate_value", "coupon"),
        (12, "invalid_type", "occurred_at"),
    ]


def test_truncated_file_keeps_the_partial_last_line(tmp_path, contract, landing):
    text = HEADER + "\n" + GOOD + "\nE2,b@x.com,(415) 555-01"  # cut mid-line, no newline
    con, report = load(tmp_path, contract, landing, {"a.csv": text})
    assert (report.rows_accepted, report.rows_quarantined) == (1, 1)
    assert con.execute("select _rule, _raw_line from quarantine.shop__events").fetchone() == (
        "malformed_line",
        "E2,b@x.com,(415) 555-01",
    )


@pytest.mark.parametrize(
    "name, content",
    [
        ("semicolons.csv", HEADER.replace(",", ";") + "\n" + GOOD.replace(",", ";") + "\n"),  # wrong delimiter
        ("no_header.csv", GOOD + "\n"),  # header missing
        ("dropped_column.csv", HEADER.replace(",occurred_at", "") + "\n" + GOOD.rsplit(",", 1)[0] + "\n"),
    ],
)
def test_unreadable_files_fail_whole_and_are_moved_aside(tmp_path, contract, landing, name, content):
    con, report = load(tmp_path, contract, landing, {name: content})
    assert report.files_failed == 1 and report.rows_read == 0
    assert "occurred_at" in report.errors[0] and "shop__events.yml" in report.errors[0]
    moved = landing / "_rejected" / "shop" / "events" / name
    assert moved.read_text() == content, "the file is kept, not deleted"
    assert not (landing / "shop" / "events" / name).exists()
    status, moved_to = con.execute("select status, moved_to from audit.loads").fetchone()
    assert status == "failed" and moved_to == str(moved)


def test_reordered_header_loads_by_name(tmp_path, contract, landing):
    columns = HEADER.split(",")
    values = GOOD.split(",")
    order = list(reversed(range(len(columns))))
    text = ",".join(columns[i] for i in order) + "\n" + ",".join(values[i] for i in order) + "\n"
    con, report = load(tmp_path, contract, landing, {"a.csv": text})
    assert report.rows_accepted == 1
    assert con.execute("select event_id, email from raw.shop__events").fetchone() == ("E1", "a@x.com")


def test_non_utf8_bytes_are_quarantined_not_crashed_on(tmp_path, contract, landing):
    content = (
        HEADER + "\n" + GOOD + "\n"
    ).encode() + "E2,b\xe9@x.com,,US,USD,ABC-13,1.00,2026-06-01T10:00:00Z\n".encode("latin-1")
    con, report = load(tmp_path, contract, landing, {"a.csv": content})
    assert (report.rows_accepted, report.rows_quarantined) == (1, 1)
    assert rules(con) == [(3, "invalid_encoding", "email")]


def test_empty_file_loads_nothing_and_is_recorded(tmp_path, contract, landing):
    con, report = load(tmp_path, contract, landing, {"empty.csv": ""})
    assert (report.files_loaded, report.rows_read) == (1, 0)
    assert con.execute("select status, rows_read from audit.loads").fetchone() == ("loaded", 0)


def test_schema_drift_keeps_and_reports_the_new_column(tmp_path, contract, landing):
    text = HEADER + ",loyalty_tier\n" + GOOD + ",gold\n"
    con, report = load(tmp_path, contract, landing, {"a.csv": text})
    assert report.extra_columns == {"loyalty_tier"}
    assert json.loads(con.execute("select _extra from raw.shop__events").fetchone()[0]) == {"loyalty_tier": "gold"}
    assert con.execute("select extra_columns from audit.loads").fetchone() == ("loyalty_tier",)


def test_an_event_sent_again_in_a_later_file_is_a_duplicate(tmp_path, contract, landing):
    con, _ = load(tmp_path, contract, landing, {"a.csv": HEADER + "\n" + GOOD + "\n"})
    (landing / "shop" / "events" / "b.csv").write_text(HEADER + "\n" + GOOD.replace("ABC-12", "ABC-99") + "\n")
    report = data_contracts.load_table(con, contract, landing, load_id="L2")
    assert (report.rows_accepted, report.rows_quarantined) == (0, 1)
    assert con.execute("select _rule, _value, _source_file from quarantine.shop__events").fetchone() == (
        "duplicate_primary_key",
        "E1",
        "shop/events/b.csv",
    )


def test_a_failed_load_leaves_nothing_partial(tmp_path, contract, landing, monkeypatch):
    from data_contracts import loader

    calls = []

    def failing_record(con, values):
        calls.append(values)
        raise RuntimeError("disk full")

    monkeypatch.setattr(loader, "_record_load", failing_record)
    (landing / "shop" / "events" / "a.csv").write_text(HEADER + "\n" + GOOD + "\n")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(RuntimeError, match="disk full"):
        data_contracts.load_table(con, contract, landing, load_id="L1")
    assert con.execute("select count(*) from raw.shop__events").fetchone()[0] == 0
    monkeypatch.undo()
    report = data_contracts.load_table(con, contract, landing, load_id="L2")  # the rerun converges
    assert report.rows_accepted == 1 and con.execute("select count(*) from raw.shop__events").fetchone()[0] == 1


def test_quarantine_replay_after_a_contract_fix(tmp_path, contract, landing):
    lines = [HEADER, GOOD, "E2,a@x.com,(415) 555-0134,US,USD,ABC-13,25000.00,2026-06-01T10:00:00Z"]
    con, report = load(tmp_path, contract, landing, {"a.csv": "\n".join(lines) + "\n"})
    assert rules(con) == [(3, "out_of_range", "amount")]
    fixed_path = tmp_path / "fixed" / "shop__events.yml"
    fixed_path.parent.mkdir()
    fixed_path.write_text(CONTRACT.replace("max: 10000", "max: 50000"))
    replayed = data_contracts.replay_quarantine(con, load_contract(fixed_path), load_id="R1")
    assert (replayed.rows_read, replayed.rows_accepted, replayed.rows_quarantined) == (1, 1, 0)
    assert con.execute("select count(*) from quarantine.shop__events").fetchone()[0] == 0
    assert con.execute(
        "select event_id, _source_file, _row_number, _load_id from raw.shop__events where event_id = 'E2'"
    ).fetchone() == ("E2", "shop/events/a.csv", 3, "R1")
    assert con.execute("select status from audit.loads where load_id = 'R1'").fetchone() == ("replayed",)
