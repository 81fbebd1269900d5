"""The profile read model (issue 25): identifier -> pre-rendered full and masked documents in a SQLite
file published beside the serving store with the same run id, and what the API does with it.

On a hand-made warehouse with shapes the demo does not make: identifiers with quotes and non-ASCII
characters, a namespace the demo has no data for (declared, no identifiers), a profile with nothing
but one identifier, a profile with more events than a document keeps. Expected answers are computed
from the hand-made rows, not from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import duckdb
import pytest
from fastapi.testclient import TestClient

from cdp.serving.api import ApiKeys, create_app
from cdp.serving.documents import DOCUMENT_EVENTS, mask_value, masking_key
from cdp.serving.publish import PublishedTable, latest_publication, publish
from cdp.serving.readmodel import ReadModel, read_model_path
from cdp.serving.store import PublishedStore, StoreUnavailable
from cdp.warehouse import ENCRYPTION_KEY_ENV, attach, connect

FULL, MASKED = "full-key-read-model", "masked-key-read-model"
MASKS = {"email": "email", "phone": "phone"}
EVENTS_OF_BUSY = DOCUMENT_EVENTS + 15

PROFILES = [
    # profile_id, email, phone, first_name
    ("p-001", "o'hara@example.com", "+353861234567", "Siobhán"),
    ("p-002", "zoë.müller@example.de", None, "Zoë"),
    ("p-003", None, None, None),  # nothing but one cookie
]
IDENTITIES = [
    # profile_id, namespace, identity_value
    ("p-001", "email", "o'hara@example.com"),
    ("p-001", "phone", "+353861234567"),
    ("p-001", "cookie_id", "c-'quoted'-1"),
    ("p-002", "email", "zoë.müller@example.de"),
    ("p-002", "crm_id", "CRM-ü-77"),
    ("p-003", "cookie_id", "lonely-cookie"),
]


def tables() -> list[PublishedTable]:
    return [
        PublishedTable("profiles", "profiles", ("profile_id",), (), dict(MASKS)),
        PublishedTable("profiles", "profile_traits", ("profile_id",)),
        PublishedTable("profiles", "profile_predictions", ("profile_id",)),
        PublishedTable("profiles", "profile_consents", ("profile_id",)),
        PublishedTable(
            "profiles", "profile_identities", ("profile_id",), ("identity_value",), {"identity_value": "hash"}
        ),
        PublishedTable("profiles", "profile_attribute_lineage", ("profile_id",), (), {"record_id": "hash"}),
        PublishedTable("profiles", "profile_events", ("profile_id", "occurred_at"), (), {"event_id": "hash"}),
        PublishedTable("segments", "segment_memberships", ("segment_name", "profile_id")),
        PublishedTable("identity", "identity_namespaces", ()),
    ]


def make_warehouse(path) -> None:
    with connect(path) as con:
        for schema in ("profiles", "segments", "identity"):
            con.execute(f"create schema {schema}")
        con.execute(
            "create table profiles.profiles (profile_id varchar, email varchar, phone varchar, first_name varchar)"
        )
        con.executemany("insert into profiles.profiles values (?, ?, ?, ?)", PROFILES)
        con.execute("create table profiles.profile_traits (profile_id varchar, lifetime_value decimal(18, 2))")
        con.execute("insert into profiles.profile_traits values ('p-001', 123.45), ('p-002', 0)")
        con.execute("create table profiles.profile_predictions (profile_id varchar, churn_probability double)")
        con.execute("insert into profiles.profile_predictions values ('p-001', 0.25)")
        con.execute(
            "create table profiles.profile_consents (profile_id varchar, consent_purpose varchar, "
            "consent_value varchar, decided_at timestamp)"
        )
        con.execute("insert into profiles.profile_consents values ('p-001', 'email', 'y', '2026-01-02 03:04:05')")
        con.execute(
            "create table profiles.profile_identities (profile_id varchar, namespace varchar, identity_value varchar, "
            "first_seen_at timestamp, last_seen_at timestamp, record_count integer, source_tables varchar)"
        )
        con.executemany(
            "insert into profiles.profile_identities values (?, ?, ?, '2026-01-01', '2026-02-01', 1, 'crm')", IDENTITIES
        )
        con.execute(
            "create table profiles.profile_attribute_lineage (profile_id varchar, attribute varchar, "
            "source_table varchar, record_id varchar, merge_rule varchar, record_updated_at timestamp)"
        )
        con.execute(
            "insert into profiles.profile_attribute_lineage values "
            "('p-001', 'email', 'crm__contacts', 'crm__contacts:C-1', 'most_recent', '2026-01-01')"
        )
        con.execute(
            "create table profiles.profile_events (profile_id varchar, event_id varchar, event_type varchar, "
            "occurred_at timestamp, channel varchar, source_table varchar, commerce_order_price_total decimal(18, 2), "
            "commerce_order_currency_code varchar)"
        )
        start = dt.datetime(2026, 3, 1)
        con.executemany(
            "insert into profiles.profile_events values ('p-001', ?, 'web.pageviews', ?, 'web', 'web__events', null, null)",
            [(f"ev-{n:03d}", start + dt.timedelta(hours=n)) for n in range(EVENTS_OF_BUSY)],
        )
        con.execute("create table segments.segment_memberships (profile_id varchar, segment_name varchar)")
        con.execute("insert into segments.segment_memberships values ('p-001', 'vip'), ('p-002', 'vip')")
        # passport_no is declared but no profile holds one: its lookups are 404, not "unknown namespace".
        con.execute("create table identity.identity_namespaces (namespace varchar)")
        con.execute(
            "insert into identity.identity_namespaces values ('email'), ('phone'), ('cookie_id'), ('crm_id'), "
            "('passport_no')"
        )


@pytest.fixture
def published(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_MASKING_KEY", "read-model-test-masking-key")
    warehouse, store = tmp_path / "warehouse.duckdb", tmp_path / "serving" / "published.duckdb"
    make_warehouse(warehouse)
    publish(warehouse, store, run_id="run-1", tables=tables())
    return warehouse, store


def client_for(store) -> TestClient:
    keys = ApiKeys(full=frozenset({FULL}), masked=frozenset({MASKED}))
    return TestClient(create_app(store, keys, requests_per_s=1e6, failed_keys_per_minute=1e6))


def test_every_identifier_finds_its_profile_and_the_read_model_has_the_store_run_id(published):
    _, store = published
    model = ReadModel(read_model_path(store))
    assert model.run_id == latest_publication(store)["run_id"] == "run-1"
    assert model.namespaces == {"email", "phone", "cookie_id", "crm_id", "passport_no"}
    for profile_id, namespace, value in IDENTITIES:
        found = model.find(namespace, value)
        assert found is not None and found.profile_id == profile_id, (namespace, value)
        document = json.loads(found.document)
        assert document["profile_id"] == profile_id and document["published_run_id"] == "run-1"
        expected = sorted((ns, v) for p, ns, v in IDENTITIES if p == profile_id)
        assert sorted((i["namespace"], i["value"]) for i in document["identities"]) == expected
    assert model.find("email", "nobody@example.com") is None
    assert model.find("cookie_id", "o'hara@example.com") is None, "a value of another namespace is no match"
    lonely = json.loads(model.find("cookie_id", "lonely-cookie").document)
    assert lonely["traits"] is None and lonely["recent_events"] == [] and lonely["segments"] == []
    busy = json.loads(model.find("phone", "+353861234567").document)
    assert [e["event_id"] for e in busy["recent_events"]] == [
        f"ev-{n:03d}" for n in range(EVENTS_OF_BUSY - 1, EVENTS_OF_BUSY - 1 - DOCUMENT_EVENTS, -1)
    ]
    assert busy["traits"] == {"lifetime_value": 123.45} and busy["attributes"]["first_name"] == "Siobhán"
    model.close()


def test_masked_documents_mask_as_the_rules_say(published):
    _, store = published
    key = masking_key(store)
    model = ReadModel(read_model_path(store))
    masked = json.loads(model.find("email", "o'hara@example.com", masked=True).document)
    assert masked["scope"] == "masked"
    assert masked["attributes"]["email"] == "o***@example.com" and masked["attributes"]["phone"] == "***67"
    assert masked["attributes"]["first_name"] == "Siobhán"  # no masking rule for it
    # Keyed pseudonyms, computed here independently: sha256(key | value), first 16 hex digits.
    assert sorted(i["value"] for i in masked["identities"]) == sorted(
        mask_value(v, "hash", key) for p, _, v in IDENTITIES if p == "p-001"
    )
    assert masked["attribute_sources"]["email"]["record_id"] == mask_value("crm__contacts:C-1", "hash", key)
    assert masked["recent_events"][0]["event_id"] == mask_value(f"ev-{EVENTS_OF_BUSY - 1:03d}", "hash", key)
    text = model.find("email", "o'hara@example.com", masked=True).document.decode()
    for secret in ("o'hara@example.com", "+353861234567", "c-'quoted'-1", "crm__contacts:C-1", "ev-0"):
        assert secret not in text
    model.close()


def test_api_serves_the_documents_and_says_what_is_wrong(published):
    _, store = published
    client = client_for(store)
    full = client.get("/profiles/email/O'Hara@Example.com ", headers={"X-API-Key": FULL})
    assert full.status_code == 200 and full.json()["profile_id"] == "p-001"
    assert full.headers["content-type"] == "application/json"
    masked = client.get("/profiles/crm_id/CRM-ü-77", headers={"X-API-Key": MASKED})
    assert masked.status_code == 200 and masked.json()["scope"] == "masked"
    assert masked.json()["attributes"]["email"] == "z***@example.de"
    assert client.get("/profiles/passport_no/X1", headers={"X-API-Key": FULL}).status_code == 404
    unknown = client.get("/profiles/fax/123", headers={"X-API-Key": FULL})
    assert unknown.status_code == 422 and "passport_no" in unknown.json()["detail"]
    three = client.get("/profiles/email/o'hara@example.com?events=3", headers={"X-API-Key": FULL}).json()
    assert len(three["recent_events"]) == 3
    # More events than a document keeps: read from profile_events of the same publication, masked too.
    many = client.get(f"/profiles/phone/+353861234567?events={EVENTS_OF_BUSY + 5}", headers={"X-API-Key": MASKED})
    assert many.status_code == 200, many.text
    events = many.json()["recent_events"]
    assert len(events) == EVENTS_OF_BUSY and all(e["event_id"].startswith("sha256:") for e in events)
    assert "Server-Timing" not in full.headers  # only when asked for (CDP_API_SERVER_TIMING)


def test_the_front_door_answers_as_fastapi_does(published):
    """A plain lookup is answered before FastAPI (the fast path); with a query string it goes through the
    route. Same status, body and content type for both scopes."""
    _, store = published
    client = client_for(store)
    for key in (FULL, MASKED):
        for path in ("/profiles/email/o'hara@example.com", "/profiles/cookie_id/lonely-cookie"):
            fast = client.get(path, headers={"X-API-Key": key})
            routed = client.get(path, params={"events": DOCUMENT_EVENTS}, headers={"X-API-Key": key})
            assert fast.status_code == routed.status_code == 200
            assert fast.content == routed.content and fast.headers["content-type"] == routed.headers["content-type"]
            assert fast.headers["content-length"] == str(len(fast.content))


def test_server_timing_when_asked_for(published, monkeypatch):
    _, store = published
    monkeypatch.setenv("CDP_API_SERVER_TIMING", "1")
    response = client_for(store).get("/profiles/cookie_id/lonely-cookie", headers={"X-API-Key": FULL})
    timings = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    assert set(timings) == {"lookup", "app"} and 0 <= float(timings["lookup"]) <= float(timings["app"])


def test_the_api_switches_only_to_a_store_and_read_model_of_one_run(published, tmp_path):
    warehouse, store = published
    client = client_for(store)
    get = lambda: client.get("/profiles/cookie_id/lonely-cookie", headers={"X-API-Key": FULL})  # noqa: E731
    assert get().json()["published_run_id"] == "run-1"
    publish(warehouse, store, run_id="run-2", tables=tables())
    assert get().json()["published_run_id"] == "run-2"
    assert client.get("/health").json()["run_id"] == "run-2"

    # A publication interrupted between its two renames: a new read model, the store of the run before.
    old_store = tmp_path / "store-of-run-2.duckdb"
    os.link(store, old_store)
    publish(warehouse, store, run_id="run-3", tables=tables())
    os.replace(old_store, store)
    assert get().json()["published_run_id"] == "run-2", "keeps answering from the whole publication it has"
    fresh = PublishedStore(store)
    with pytest.raises(StoreUnavailable, match="holds run run-3 but the serving store .* holds run run-2"):
        fresh.find_profile("cookie_id", "lonely-cookie", masked=False)
    assert client_for(store).get("/profiles/cookie_id/lonely-cookie", headers={"X-API-Key": FULL}).status_code == 503
    publish(warehouse, store, run_id="run-4", tables=tables())  # the next publication repairs it
    assert get().json()["published_run_id"] == "run-4"


def test_a_publication_that_fails_leaves_both_files_as_they_were(published):
    warehouse, store = published
    model_file = read_model_path(store)
    before = (store.stat().st_ino, model_file.stat().st_ino)
    with connect(warehouse) as con:  # two profiles now share an identifier: the read model refuses it
        con.execute(
            "insert into profiles.profile_identities values "
            "('p-002', 'email', 'o''hara@example.com', null, null, 1, 'crm')"
        )
    with pytest.raises(Exception, match="one identifier .* for two profiles"):
        publish(warehouse, store, run_id="run-bad", tables=tables())
    assert (store.stat().st_ino, model_file.stat().st_ino) == before
    assert not list(store.parent.glob(".*.publishing"))
    assert ReadModel(model_file).run_id == latest_publication(store)["run_id"] == "run-1"


def test_encrypted_read_model_holds_no_identifier_in_clear(tmp_path, monkeypatch):
    monkeypatch.setenv(ENCRYPTION_KEY_ENV, "read model encryption test key")
    monkeypatch.setenv("CDP_MASKING_KEY", "read-model-test-masking-key")
    warehouse, store = tmp_path / "warehouse.duckdb", tmp_path / "serving" / "published.duckdb"
    make_warehouse(warehouse)
    publish(warehouse, store, run_id="run-enc", tables=tables())
    data = read_model_path(store).read_bytes()
    for _, _, value in IDENTITIES:
        assert value.encode() not in data, value
    assert b"Siobh" not in data and b"p-001" in data  # profile ids are no secret; the documents are
    response = client_for(store).get("/profiles/email/o'hara@example.com", headers={"X-API-Key": FULL})
    assert response.status_code == 200 and response.json()["attributes"]["first_name"] == "Siobhán"
    with duckdb.connect(":memory:") as con:  # the store beside it is encrypted as before
        attach(con, store, "s", read_only=True)
        assert con.execute("select count(*) from s.profiles.profiles").fetchone()[0] == len(PROFILES)
    monkeypatch.setenv(ENCRYPTION_KEY_ENV, "another key")
    assert ReadModel(read_model_path(store)).find("email", "o'hara@example.com") is None, "lookup keys need the key"


# Publication that keeps what did not change (issue 20): a table whose content and definition are as the
# last publication left them stays as it is in the new file, the read model is reused when none of its
# tables changed; either way the result equals a publication written from scratch.
EXTRA = PublishedTable("segments", "segment_sizes", ("segment_name",))


def relations(con: duckdb.DuckDBPyConnection, catalog: str) -> set[str]:
    rows = con.execute(
        "select schema_name || '.' || table_name from duckdb_tables() where database_name = ? "
        "union all select schema_name || '.' || view_name from duckdb_views() where database_name = ? and not internal",
        [catalog, catalog],
    ).fetchall()
    return {row[0] for row in rows} - {"serving.publications"}


def assert_same_publication(store, scratch_store) -> None:
    """Every relation of the two stores (bi views and keyed pseudonyms included) and every row of their
    read models are equal; the publication records differ only in their timing."""
    with duckdb.connect(":memory:") as con:
        attach(con, store, "a", read_only=True)
        attach(con, scratch_store, "b", read_only=True)
        assert relations(con, "a") == relations(con, "b")
        for relation in relations(con, "a"):
            for left, right in (("a", "b"), ("b", "a")):
                extra = con.execute(f"select * from {left}.{relation} except all select * from {right}.{relation}")
                assert extra.fetchall() == [], f"{relation}: rows of {left} not in {right}"
    for table in ("full_documents", "masked_documents", "identifiers", "namespaces", "publication"):
        query = f"select * from {table} order by 1"
        columns = "run_id, profiles, identifiers" if table == "publication" else "*"
        query = f"select {columns} from {table} order by 1"
        assert ReadModel(read_model_path(store)).connection.execute(query).fetchall() == (
            ReadModel(read_model_path(scratch_store)).connection.execute(query).fetchall()
        ), table


def with_sizes(warehouse) -> list[PublishedTable]:
    with connect(warehouse) as con:
        con.execute("create or replace table segments.segment_sizes as select 'vip' as segment_name, 2 as members")
    return [*tables(), EXTRA]


def test_a_publication_of_the_same_tables_keeps_them_all_and_equals_one_from_scratch(published, tmp_path):
    warehouse, store = published
    first_inode = store.stat().st_ino
    again = publish(warehouse, store, run_id="run-2", tables=tables())
    assert set(again.kept_tables) == {t.relation for t in tables()} and again.read_model_reused
    assert store.stat().st_ino != first_inode  # a new file renamed over the store, as always
    scratch = publish(
        warehouse, tmp_path / "scratch" / "published.duckdb", run_id="run-2", tables=tables(), reuse=False
    )
    assert scratch.kept_tables == () and not scratch.read_model_reused
    assert again.row_counts == scratch.row_counts
    assert_same_publication(store, scratch.store)
    response = client_for(store).get("/profiles/cookie_id/lonely-cookie", headers={"X-API-Key": FULL})
    assert response.json()["published_run_id"] == "run-2"


def test_only_the_changed_table_is_copied_and_the_read_model_follows_its_tables(published, tmp_path):
    warehouse, store = published
    everything = with_sizes(warehouse)
    publish(warehouse, store, run_id="run-2", tables=everything)
    # A table the read model does not read changes: copied again, the read model reused.
    with connect(warehouse) as con:
        con.execute("update segments.segment_sizes set members = 3")
    sizes_changed = publish(warehouse, store, run_id="run-3", tables=everything)
    assert set(sizes_changed.kept_tables) == {t.relation for t in tables()} and sizes_changed.read_model_reused
    # The same rows in another arrangement (two values swapped between profiles: same count, same values).
    with connect(warehouse) as con:
        con.execute(
            "update profiles.profile_traits set lifetime_value = case profile_id when 'p-001' then 0 else 123.45 end"
        )
    with duckdb.connect(":memory:") as reader:  # a reader of the previous publication, open across the next
        attach(reader, store, "before", read_only=True)
        traits_changed = publish(warehouse, store, run_id="run-4", tables=everything)
        assert reader.execute(
            "select lifetime_value from before.profiles.profile_traits where profile_id = 'p-001'"
        ).fetchone()[0] == Decimal("123.45")
    assert set(traits_changed.kept_tables) == {t.relation for t in everything} - {"profiles.profile_traits"}
    assert not traits_changed.read_model_reused
    response = client_for(store).get("/profiles/cookie_id/c-'quoted'-1", headers={"X-API-Key": FULL}).json()
    assert response["published_run_id"] == "run-4" and float(response["traits"]["lifetime_value"]) == 0
    scratch = publish(
        warehouse, tmp_path / "scratch" / "published.duckdb", run_id="run-4", tables=everything, reuse=False
    )
    assert_same_publication(store, scratch.store)
    # A duplicated row changes the count; a changed definition (another order) copies the table again.
    with connect(warehouse) as con:
        con.execute("insert into segments.segment_memberships values ('p-001', 'vip')")
    duplicated = publish(warehouse, store, run_id="run-5", tables=everything)
    assert "segments.segment_memberships" not in duplicated.kept_tables
    reordered = [t if t != EXTRA else PublishedTable("segments", "segment_sizes", ("members",)) for t in everything]
    assert "segments.segment_sizes" not in publish(warehouse, store, run_id="run-6", tables=reordered).kept_tables
    assert latest_publication(store)["row_counts"]["segments.segment_memberships"] == 3


def test_a_table_no_longer_published_leaves_the_store(published):
    warehouse, store = published
    publish(warehouse, store, run_id="run-2", tables=with_sizes(warehouse))
    publish(warehouse, store, run_id="run-3", tables=tables())
    with duckdb.connect(":memory:") as con:
        attach(con, store, "s", read_only=True)
        assert "segments.segment_sizes" not in relations(con, "s") and "bi.segment_sizes" not in relations(con, "s")


def test_a_store_mostly_made_of_dropped_pages_is_written_anew(published):
    warehouse, store = published
    big = PublishedTable("segments", "bulk", ("k",))

    def publish_bulk(run_id: str, shift: int):
        with connect(warehouse) as con:
            con.execute(
                f"create or replace table segments.bulk as select i as k, md5((i + {shift})::varchar) as v "
                "from range(300000) as r(i)"
            )
        return publish(warehouse, store, run_id=run_id, tables=[*tables(), big])

    publish_bulk("run-2", 0)
    second = publish_bulk("run-3", 1)  # the bulk table copied again: its old pages free in the new file
    assert "segments.bulk" not in second.kept_tables and len(second.kept_tables) == len(tables())
    with duckdb.connect(":memory:") as con:
        attach(con, store, "s", read_only=True)
        free, total = con.execute(
            "select free_blocks, total_blocks from pragma_database_size() where database_name = 's'"
        ).fetchone()
    assert free > 0.25 * total
    third = publish_bulk("run-4", 1)  # nothing changed, but the file is compacted first
    assert third.kept_tables == () and third.store_bytes < second.store_bytes
    assert set(publish_bulk("run-5", 1).kept_tables) == {t.relation for t in [*tables(), big]}
