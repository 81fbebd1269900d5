"""`cdp bench-serve --scale N` (tools/bench/scale.py): a warehouse N times larger made from a build.

On the hand-made warehouse of test_profile_read_model plus a profile whose phone has the full 15
digits E.164 allows (the demo's longest has 13; prefixing a copy number would make it too long).
Checked independently of the code under test: identifiers unique and N times as many, every email and
phone as the API's lookup normalizes it, SHA-256 recomputed here with hashlib, and every identifier
of the scaled store finds its own copy's profile through the read model.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest
from test_profile_read_model import IDENTITIES, make_warehouse, tables

from cdp.serving.documents import InvalidIdentifier, normalize_identifier
from cdp.serving.publish import publish
from cdp.serving.readmodel import ReadModel, read_model_path
from tools.bench.scale import MAX_COPIES, scale_warehouse

COPIES = 3
LONG_PHONE = "+861381234567890"  # 15 digits


@pytest.fixture
def build(tmp_path):
    warehouse = tmp_path / "build" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    make_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into profiles.profiles values ('p-004', null, ?, 'Wei')", [LONG_PHONE])
        con.execute(
            "insert into profiles.profile_identities values ('p-004', 'phone', ?, '2026-01-01', '2026-02-01', 1, 'crm')",
            [LONG_PHONE],
        )
        con.execute("alter table profiles.profile_identities add column identity_value_sha256 varchar")
        con.execute(
            "update profiles.profile_identities set identity_value_sha256 = sha256(identity_value) "
            "where namespace in ('email', 'phone')"
        )
    return warehouse


def well_formed(namespace: str, value: str) -> bool:
    """As the API's lookup takes it: normalized, it is itself."""
    try:
        return normalize_identifier(namespace, value) == value
    except InvalidIdentifier:
        return False


def rows(path, sql):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_scaled_warehouse_has_n_times_the_profiles_each_identifier_unique_and_well_formed(build, tmp_path):
    scaled = scale_warehouse(
        build, tmp_path / "scaled" / "warehouse.duckdb", COPIES, echo=lambda _: None, tables=tables()
    )
    source_profiles = rows(build, "select profile_id, phone from profiles.profiles")
    profiles = rows(scaled, "select profile_id, email, phone from profiles.profiles")
    assert len(profiles) == COPIES * len(source_profiles) == len({p for p, _, _ in profiles})
    identities = rows(
        scaled, "select profile_id, namespace, identity_value, identity_value_sha256 from profiles.profile_identities"
    )
    assert len(identities) == COPIES * (len(IDENTITIES) + 1)
    assert len({(ns, v) for _, ns, v, _ in identities}) == len(identities), "an identifier finds two profiles"
    originals = {
        (p, ns): v
        for p, ns, v in rows(build, "select profile_id, namespace, identity_value from profiles.profile_identities")
    }
    checked = 0
    for profile_id, namespace, value, sha in identities:
        original = originals[(profile_id.split("~")[0], namespace)]
        if well_formed(namespace, original):  # the hand-made zoë.müller@ is not, nor are its copies
            assert well_formed(namespace, value), (namespace, original, value)
            checked += 1
        if namespace in ("email", "phone"):
            assert sha == hashlib.sha256(value.encode()).hexdigest(), (namespace, value)
    assert checked == COPIES * (len(IDENTITIES) + 1 - 1)
    # A copy's profiles row carries the same email and phone as its identities.
    by_profile = {}
    for profile_id, namespace, value, _ in identities:
        by_profile.setdefault(profile_id, {})[namespace] = value
    for profile_id, email, phone in profiles:
        assert by_profile.get(profile_id, {}).get("email") == email, profile_id
        assert by_profile.get(profile_id, {}).get("phone") == phone, profile_id
    # Copy 0 is the build itself; the long phone's copies stay within 15 digits.
    assert ("p-004", "phone", LONG_PHONE) in {(p, ns, v) for p, ns, v, _ in identities}
    assert all(len(v) <= 16 for _, ns, v, _ in identities if ns == "phone")
    events = rows(scaled, "select event_id, profile_id from profiles.profile_events")
    assert (
        len(events)
        == len({e for e, _ in events})
        == COPIES * rows(build, "select count(*) from profiles.profile_events")[0][0]
    )
    assert rows(scaled, "select count(*) from identity.identity_namespaces") == [(5,)], "copied once"
    memberships = rows(scaled, "select profile_id, segment_name from segments.segment_memberships")
    assert len(set(memberships)) == COPIES * 2


def test_every_identifier_of_the_scaled_store_finds_its_own_copy(build, tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_MASKING_KEY", "bench-scale-test-key")
    scaled = scale_warehouse(
        build, tmp_path / "scaled" / "warehouse.duckdb", COPIES, echo=lambda _: None, tables=tables()
    )
    store = tmp_path / "scaled" / "serving" / "published.duckdb"
    publish(scaled, store, run_id="scaled", tables=tables())
    model = ReadModel(read_model_path(store))
    try:
        for profile_id, namespace, value in rows(
            scaled, "select profile_id, namespace, identity_value from profiles.profile_identities"
        ):
            found = model.find(namespace, value)
            assert found is not None and found.profile_id == profile_id, (namespace, value)
            assert json.loads(found.document)["profile_id"] == profile_id
    finally:
        model.close()


def test_a_finished_scaled_warehouse_is_reused_and_the_copies_are_bounded(build, tmp_path):
    target = tmp_path / "scaled" / "warehouse.duckdb"
    said: list[str] = []
    scale_warehouse(build, target, 2, echo=said.append, tables=tables())
    scale_warehouse(build, target, 2, echo=said.append, tables=tables())
    assert "reused" in said[-1]
    with pytest.raises(ValueError, match=f"1 to {MAX_COPIES}"):
        scale_warehouse(build, target, MAX_COPIES + 1, tables=tables())
