"""Erasure reaches API destinations (issue 19 item 7): each destination gets the delete its own API
needs (the email tool: the member id of the person's email; the ad audience: the SHA-256 identifiers),
the request stays open until every destination confirmed, a later sync retries what failed, and
audit.privacy_requests says per destination where it stands. Checked against the destination's own
state on a real HTTP server (tests/support/destination_servers.py)."""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

import activation
from cdp.governance.privacy import erase

FAST_HTTP = "  timeout_s: 0.5\n  max_attempts: 3\n  backoff_s: 0.01\n  max_backoff_s: 0.05\n"
PEOPLE = [(f"p{i:03d}", f"user{i}@example.com", f"+4479460{i:05d}") for i in range(20)]
PERSON = PEOPLE[3]


@pytest.fixture
def warehouse(tmp_path, server, monkeypatch):
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    (syncs / "to_email.yml").write_text(
        "name: to_email\naudience: segments.seg_people\nprimary_key: profile_id\nmode: mirror\n"
        "fields:\n  profile_id: profile_id\n  email: email\n"
        f"destination:\n  type: email\n  url: {server.url}\n  list_id: L1\n  token_env: TEST_API_TOKEN\n{FAST_HTTP}"
    )
    (syncs / "to_ads.yml").write_text(
        "name: to_ads\naudience: segments.seg_people\nprimary_key: profile_id\nmode: membership\n"
        "fields:\n  profile_id: profile_id\n"
        "identifiers:\n  email: {column: email, type: email}\n  phone: {column: phone, type: phone}\n"
        f"destination:\n  type: ad_audience\n  url: {server.url}\n  audience_id: A1\n  token_env: TEST_API_TOKEN\n"
        f"{FAST_HTTP}"
    )
    monkeypatch.setenv("CDP_SYNCS_DIR", str(syncs))
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema segments; create schema profiles")
    con.execute("create table segments.seg_people (profile_id varchar, email varchar, phone varchar)")
    con.executemany("insert into segments.seg_people values (?, ?, ?)", PEOPLE)
    con.execute(
        "create table profiles.profile_identities (profile_id varchar, namespace varchar, identity_value varchar, "
        "identity_value_sha256 varchar)"
    )
    con.executemany(
        "insert into profiles.profile_identities values (?, ?, ?, sha256(?))",
        [(p, "email", e, e) for p, e, _ in PEOPLE] + [(p, "phone", ph, ph) for p, _, ph in PEOPLE],
    )
    for spec in activation.load_sync_specs().values():
        assert activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path).sent == 20
    yield con
    con.close()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_erasure_deletes_the_person_from_each_api_with_its_own_key(warehouse, server, tmp_path):
    assert PERSON[1] in server.contacts["L1"] and (sha(PERSON[1]), sha(PERSON[2])) in server.members["A1"]
    outcome = erase(warehouse, f"email:{PERSON[1]}", base_dir=tmp_path)
    assert PERSON[1] not in server.contacts["L1"], "the email tool still holds the person"
    assert (sha(PERSON[1]), sha(PERSON[2])) not in server.members["A1"], "the ad audience still holds the person"
    assert len(server.contacts["L1"]) == 19 and len(server.members["A1"]) == 19, "nobody else is touched"
    status, destinations = warehouse.execute(
        "select status, destinations from audit.privacy_requests where request_id = ?", [outcome.request_id]
    ).fetchone()
    destinations = json.loads(destinations)
    assert status == "completed"
    assert {name: d["status"] for name, d in destinations.items()} == {"to_ads": "confirmed", "to_email": "confirmed"}


def test_a_failed_destination_keeps_the_request_open_and_a_later_sync_retries_it(warehouse, server, tmp_path):
    server.faults = [{"status": 503}] * 3  # the ad audience's delete (first in name order) fails its 3 attempts
    outcome = erase(warehouse, f"email:{PERSON[1]}", base_dir=tmp_path)
    assert PERSON[1] not in server.contacts["L1"]
    assert (sha(PERSON[1]), sha(PERSON[2])) in server.members["A1"], "the failed delete left the member"
    status, destinations = warehouse.execute(
        "select status, destinations from audit.privacy_requests where request_id = ?", [outcome.request_id]
    ).fetchone()
    destinations = json.loads(destinations)
    assert status == "pending"
    assert destinations["to_ads"]["status"] == "pending" and "HTTP 503" in destinations["to_ads"]["error"]
    assert destinations["to_email"]["status"] == "confirmed"
    assert PERSON[0] not in json.dumps(destinations), "the request record names no profile id"
    # The next sync of that destination sends the delete again, before its diff.
    result = activation.run_sync(warehouse, activation.load_sync_specs()["to_ads"], run_id="r2", base_dir=tmp_path)
    assert result.status == "succeeded"
    assert (sha(PERSON[1]), sha(PERSON[2])) not in server.members["A1"]
    assert len(server.members["A1"]) == 19
    status, destinations = warehouse.execute(
        "select status, destinations from audit.privacy_requests where request_id = ?", [outcome.request_id]
    ).fetchone()
    assert status == "completed" and json.loads(destinations)["to_ads"]["status"] == "confirmed"
    assert warehouse.execute("select count(*) from activation.pending_erasures").fetchone()[0] == 0
