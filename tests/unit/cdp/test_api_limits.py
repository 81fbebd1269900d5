"""The profile API against probing (issue 19 item 11): a client that keeps presenting wrong keys is
refused with 429 (no more guesses), every client is rate limited, and /health, which needs no key,
says only whether something is published: no path, no database error text."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from cdp.serving.api import ApiKeys, create_app

FULL_KEY = "full-key-for-limits"


def make_client(store, **limits) -> TestClient:
    return TestClient(create_app(store, ApiKeys(full=frozenset({FULL_KEY}), masked=frozenset()), **limits))


def test_wrong_keys_are_cut_off_with_429(tmp_path):
    client = make_client(tmp_path / "published.duckdb")
    started = time.perf_counter()
    statuses = [client.get("/segments", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(600)]
    elapsed = time.perf_counter() - started
    answered = statuses.count(401)
    assert set(statuses) == {401, 429}
    # A burst of 60, then one a second.
    assert answered <= 60 + elapsed + 1, f"{answered} of 600 wrong keys were checked in {elapsed:.1f} s"
    refused = client.get("/segments", headers={"X-API-Key": FULL_KEY})
    assert refused.status_code == 429, "a locked-out client cannot confirm a right guess either"
    assert int(refused.headers["Retry-After"]) >= 1


def test_every_client_is_rate_limited(tmp_path):
    client = make_client(tmp_path / "published.duckdb", requests_per_s=2)
    started = time.perf_counter()
    statuses = [client.get("/segments", headers={"X-API-Key": FULL_KEY}).status_code for _ in range(200)]
    elapsed = time.perf_counter() - started
    # A burst of twice the rate, then the rate: bounded by the time the requests took (a loaded machine
    # answers fewer per second, and the bucket refills meanwhile).
    answered = 200 - statuses.count(429)
    assert 429 not in statuses[:4] and statuses.count(429) > 0
    assert answered <= 4 + 2 * elapsed + 1, f"{answered} of 200 requests were answered in {elapsed:.1f} s"


def test_health_reveals_no_path_and_no_error_text(tmp_path):
    missing = make_client(tmp_path / "secret-folder" / "published.duckdb").get("/health")
    assert missing.status_code == 503 and missing.json()["status"] == "unavailable"
    assert "secret-folder" not in missing.text and str(tmp_path) not in missing.text
    broken_store = tmp_path / "secret-folder-2" / "published.duckdb"
    broken_store.parent.mkdir()
    broken_store.write_bytes(b"not a database at all" * 1000)
    broken = make_client(broken_store).get("/health")
    assert broken.status_code == 503
    text = broken.text.lower()
    assert "secret-folder" not in text and "error" not in text and "duckdb" not in text, broken.text
