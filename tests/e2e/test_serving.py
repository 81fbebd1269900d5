"""The serving store and the profile API: readers during a run, killed and failed runs, BI access,
lookups, auth and a fuzzed OpenAPI document.

On the shared pipeline runs (tests/pipeline_runs.py): run 2 publishes; run 3 adds contacts and executes
while a reader process (alternating the duckdb client and SQLAlchemy with the README's connection string)
queries the store in a loop. On a copy of that workspace: a run killed with SIGKILL and a publication
killed midway leave the store as it was; a run that fails a blocking check publishes nothing; a new
publication reaches a running API.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
from fastapi.testclient import TestClient

from support.pipeline_runs import NEW_CONTACTS, PEOPLE, add_contacts, copy_workspace
from support.workspace import PROJECT_ROOT, Workspace, kill_group_and_wait_for_the_lock, start_cdp, wait_for_text

FULL_KEY = "test-full-key-5b0c"
MASKED_KEY = "test-masked-key-91fe"


@dataclass
class ServingRuns:
    workspace: Workspace
    store: Path
    first_run: dict  # the publication of run 2
    second_run: dict  # the publication of run 3, during which the reader read
    reader_report: dict
    profiles_after_runs: tuple[int, ...] = ()  # profiles in the warehouse after each shared run


def latest(store: Path) -> dict:
    from cdp.serving.publish import latest_publication

    record = latest_publication(store)
    assert record is not None, f"nothing published at {store}"
    return record


def publication(store: Path, run_id: str) -> dict:
    with duckdb.connect(str(store), read_only=True) as con:
        row_counts, checks = con.execute(
            "select row_counts, checks from serving.publications where run_id = ?", [run_id]
        ).fetchone()
    return {"run_id": run_id, "row_counts": json.loads(row_counts), "checks": json.loads(checks)}


@pytest.fixture(scope="module")
def serving(runs) -> ServingRuns:
    store = runs.workspace.serving_store
    with duckdb.connect(str(store), read_only=True) as con:
        published = [
            r[0] for r in con.execute("select run_id from serving.publications order by published_at").fetchall()
        ]
    assert len(published) == 3, published
    profiles_after_runs = tuple(len(ids) for ids in runs.profile_ids_by_run)
    return ServingRuns(
        runs.workspace, store, publication(store, published[1]), latest(store), runs.reader_report, profiles_after_runs
    )


@pytest.fixture(scope="module")
def scratch(runs, make_workspace) -> ServingRuns:
    """A copy of the runs' workspace, for the tests that kill, fail and republish."""
    workspace = copy_workspace(runs, make_workspace, "serving-scratch")
    store = workspace.serving_store
    return ServingRuns(workspace, store, latest(store), latest(store), {})


def test_run_publishes_every_public_table(serving):
    record = serving.first_run
    for table in (
        "profiles.profiles",
        "profiles.profile_traits",
        "profiles.profile_identities",
        "segments.segment_memberships",
        "segments.seg_high_value",
    ):
        assert record["row_counts"].get(table, 0) > 0, f"{table} missing or empty in {record['row_counts']}"
    # The record says what the run checked and loaded.
    assert record["checks"]["checks_failed"] == [] and record["checks"]["checks_evaluated"] > 50, record["checks"]
    with duckdb.connect(str(serving.store), read_only=True) as con:
        first_checks = json.loads(
            con.execute("select checks from serving.publications order by published_at limit 1").fetchone()[0]
        )
    assert first_checks["files_loaded"] >= 11, first_checks  # the first run loaded every source
    # The profile read model beside the store: one document per profile, every identifier, same run id.
    assert record["row_counts"]["profile_read_model.documents"] == record["row_counts"]["profiles.profiles"]
    assert record["row_counts"]["profile_read_model.identifiers"] == record["row_counts"]["profiles.profile_identities"]
    from cdp.serving.readmodel import ReadModel, read_model_path

    model = ReadModel(read_model_path(serving.store))
    assert model.run_id == serving.second_run["run_id"]
    model.close()
    assert record["row_counts"]["profiles.profiles"] > PEOPLE


def test_readers_during_a_run_see_one_whole_publication(serving):
    report = serving.reader_report
    assert report["error_count"] == 0, report["errors"]
    assert report["iterations"] >= 20, report
    # The reader saw the old run during run 2 and the new one after it: both, and nothing else.
    assert set(report["runs_seen"]) == {serving.first_run["run_id"], serving.second_run["run_id"]}, report
    # Run 3 added NEW_CONTACTS people, and the planted merge and split changed the count besides
    # (tests/support/pipeline_runs.py): each publication holds the profiles its run built.
    _, second, third = serving.profiles_after_runs
    assert serving.first_run["row_counts"]["profiles.profiles"] == second
    assert serving.second_run["row_counts"]["profiles.profiles"] == third > second + NEW_CONTACTS


def test_bi_safe_views_hold_no_direct_identifier(serving):
    persons = pl.read_csv(serving.workspace.data_dir / "truth" / "persons.csv", infer_schema=False)
    emails = set(persons["email"].drop_nulls().str.to_lowercase())
    phones = set(persons["phone_e164"].drop_nulls())
    with duckdb.connect(str(serving.store), read_only=True) as con:
        # Views, and tables where a keyed pseudonym is computed at publication (the key stays out of the store).
        views = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'bi'"
            ).fetchall()
        ]
        assert {"profiles", "profile_identities", "seg_high_value"} <= set(views), views
        leaked = []
        for view in views:
            frame = con.execute(f"select * from bi.{view}").pl()
            for column in frame.columns:
                if frame[column].dtype == pl.String:
                    values = set(frame[column].drop_nulls())
                    if values & emails or values & phones:
                        leaked.append(f"bi.{view}.{column}")
        # The unmasked tables do hold them (so the check above can fail).
        assert con.execute("select count(*) from profiles.profiles where email is not null").fetchone()[0] > 0
    assert not leaked, f"direct identifiers readable in BI-safe views: {leaked}"


def test_killed_run_publishes_nothing(scratch):
    before = latest(scratch.store)
    inode = scratch.store.stat().st_ino
    log = scratch.workspace.data_dir / "logs" / "last_run.log"
    log.unlink(missing_ok=True)
    process = start_cdp(
        scratch.workspace, "run", "--no-skip-unchanged", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_text(log, " model staging.", process)  # into the dbt build
    kill_group_and_wait_for_the_lock(process, scratch.workspace.warehouse)
    assert scratch.store.stat().st_ino == inode
    assert latest(scratch.store) == before


def test_publication_killed_midway_leaves_the_store_and_is_cleaned_up(scratch):
    before = latest(scratch.store)
    staging_file = scratch.store.with_name(f".{scratch.store.name}.publishing")
    code = (
        "import sys; from pathlib import Path; from cdp.serving.publish import publish; "
        "publish(Path(sys.argv[1]), Path(sys.argv[2]), run_id='killed-publication')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(scratch.workspace.warehouse), str(scratch.store)],
        cwd=PROJECT_ROOT,
        env=scratch.workspace.env,
    )
    deadline = time.monotonic() + 120
    # Midway: the new file exists and has data in it (DuckDB's header alone is 12 KiB).
    while not (staging_file.exists() and staging_file.stat().st_size > 256 * 1024) and time.monotonic() < deadline:
        assert process.poll() is None, "the publication finished before it could be killed"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert staging_file.exists(), "the killed publication should have left its half-written file"
    assert latest(scratch.store) == before

    from cdp.serving.publish import publish

    publish(scratch.workspace.warehouse, scratch.store, run_id="after-the-kill")
    assert not staging_file.exists()
    assert latest(scratch.store)["run_id"] == "after-the-kill"


def test_run_failing_a_blocking_check_publishes_nothing(scratch):
    before = latest(scratch.store)
    add_contacts(
        scratch.workspace, "contacts_all_bad.csv", [f",No,Id{i},bad{i}@example.org,,,,,,,,," for i in range(200)]
    )  # every row lacks its key
    result = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "run"],
        cwd=PROJECT_ROOT,
        env=scratch.workspace.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode != 0, result.stdout
    # The reason first: the failed check with its message, then where the log is (issue 21.2).
    first = result.stderr.splitlines()[:4]
    assert first[0].startswith("error: pipeline run ") and first[0].endswith(" failed:"), result.stderr
    assert any(
        line.strip().startswith("check raw/crm__contacts:reject_rate_within_contract: ") and "quarantined" in line
        for line in first[1:]
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert "this run published nothing" in result.stdout
    assert latest(scratch.store) == before


# --- the API -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(serving) -> TestClient:
    from cdp.serving.api import ApiKeys, create_app

    # One client for the whole module, the fuzzer's hundreds of keyless requests included: limits high
    # enough never to trip here (the limits themselves: tests/unit/cdp/test_api_limits.py).
    app = create_app(
        serving.store,
        ApiKeys(full=frozenset({FULL_KEY}), masked=frozenset({MASKED_KEY})),
        requests_per_s=1e6,
        failed_keys_per_minute=1e6,
    )
    return TestClient(app)


def known_person_identifiers(workspace: Workspace) -> list[dict[str, str]]:
    """People seen logging in on a cookie with a shop account whose orders carry email and phone:
    identifiers in four namespaces that the landing files themselves say belong together."""
    landing = workspace.data_dir / "landing"
    logins = pl.concat(
        [pl.read_ndjson(f, infer_schema_length=None) for f in (landing / "web" / "events").glob("*.jsonl")],
        how="diagonal_relaxed",
    ).filter(pl.col("customer_id").is_not_null())
    orders = pl.concat(
        [pl.read_ndjson(f, infer_schema_length=None) for f in (landing / "webshop" / "orders").glob("*.jsonl")],
        how="diagonal_relaxed",
    )
    orders = orders.filter(
        pl.col("email").is_not_null() & pl.col("phone").is_not_null() & pl.col("phone").str.starts_with("+")
    )
    joined = logins.join(orders, on="customer_id").unique("customer_id", keep="first").sort("customer_id")
    return [
        {
            "cookie_id": row["cookie_id"],
            "shop_customer_id": row["customer_id"],
            "email": row["email"],
            "phone": row["phone"],
        }
        for row in joined.head(30).to_dicts()
    ]


def test_lookups_by_email_phone_and_cookie_return_the_same_profile(serving, client):
    people = known_person_identifiers(serving.workspace)
    assert people, "the demo data should have logged-in shoppers with email and phone"
    complete = 0
    for person in people:
        found = {}
        for namespace, value in person.items():
            response = client.get(f"/profiles/{namespace}/{value}", headers={"X-API-Key": FULL_KEY})
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                found[namespace] = response.json()
        assert len({p["profile_id"] for p in found.values()}) <= 1, f"{person} resolved to several profiles"
        if len(found) == 4:
            complete += 1
            profile = found["email"]
            values = {(i["namespace"], i["value"]) for i in profile["identities"]}
            assert ("cookie_id", person["cookie_id"]) in values and ("email", person["email"].strip().lower()) in values
            assert profile["published_run_id"] == latest(serving.store)["run_id"]
    assert complete >= len(people) // 2, f"only {complete} of {len(people)} people found by all four identifiers"


def test_email_lookup_is_normalized_and_masked_scope_hides_identifiers(serving, client):
    person = known_person_identifiers(serving.workspace)[0]
    shouted = "  " + person["email"].upper() + " "
    full = client.get(f"/profiles/email/{shouted}", headers={"X-API-Key": FULL_KEY})
    masked = client.get(f"/profiles/email/{person['email']}", headers={"X-API-Key": MASKED_KEY})
    assert full.status_code == masked.status_code == 200, (full.text, masked.text)
    assert full.json()["profile_id"] == masked.json()["profile_id"]
    assert full.json()["scope"] == "full" and masked.json()["scope"] == "masked"
    masked_text = masked.text.lower()
    assert person["email"].lower() not in masked_text and person["phone"] not in masked_text
    assert masked.json()["attributes"]["email"].startswith(person["email"][0].lower() + "***@")
    assert all(i["value"].startswith("sha256:") for i in masked.json()["identities"])


def test_api_masking_agrees_with_the_bi_safe_views(serving, client):
    """The masked scope masks in Python what the bi views mask in SQL: the same values, for any profile."""
    with duckdb.connect(str(serving.store), read_only=True) as con:
        sample = con.execute("""select i.namespace, i.identity_value, i.profile_id from profiles.profile_identities i
                                join profiles.profiles p using (profile_id)
                                where p.email is not null and p.phone is not null and p.street is not null
                                order by i.profile_id limit 15""").fetchall()
        for namespace, value, profile_id in sample:
            answer = client.get(f"/profiles/{namespace}/{value}", headers={"X-API-Key": MASKED_KEY}).json()
            view = con.execute("select * exclude (profile_id) from bi.profiles where profile_id = ?", [profile_id]).pl()
            for column, expected in view.to_dicts()[0].items():
                if isinstance(expected, str) or expected is None:
                    assert answer["attributes"][column] == expected, (column, answer["attributes"][column], expected)
            hashed = {
                v
                for (v,) in con.execute(
                    "select identity_value from bi.profile_identities where profile_id = ?", [profile_id]
                ).fetchall()
            }
            assert {i["value"] for i in answer["identities"]} == hashed


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_missing_or_wrong_key_is_401_and_reveals_nothing(serving, client, headers):
    person = known_person_identifiers(serving.workspace)[0]
    existing = client.get(f"/profiles/email/{person['email']}", headers=headers)
    unknown = client.get("/profiles/email/nobody.at.all@example.org", headers=headers)
    malformed = client.get("/profiles/nonsense/x", headers=headers)
    assert existing.status_code == unknown.status_code == malformed.status_code == 401
    assert existing.json() == unknown.json() == malformed.json()
    assert client.get("/segments", headers=headers).status_code == 401


def test_unknown_identifier_is_404_and_malformed_input_is_422(client):
    key = {"X-API-Key": FULL_KEY}
    assert client.get("/profiles/email/nobody.at.all@example.org", headers=key).status_code == 404
    assert client.get("/profiles/cookie_id/0000dead0000beef", headers=key).status_code == 404
    for path, expected in [
        ("/profiles/passport/X123", "unknown identity namespace"),
        ("/profiles/Bad-Namespace/X123", "malformed identity namespace"),
        ("/profiles/email/a@b.co?events=600", "less than or equal"),
        ("/profiles/email/not-an-email", "email must look like"),
        ("/profiles/phone/555-1234", "international form"),
        ("/profiles/phone/+12", "8 to 15 digits"),
        ("/profiles/crm_id/" + "x" * 400, "printable characters"),
    ]:
        response = client.get(path, headers=key)
        assert response.status_code == 422, (path, response.text)
        assert expected in str(response.json()["detail"]), (path, response.text)
    assert client.get("/profiles/email/a@b.co?events=-1", headers=key).status_code == 422
    assert client.get("/segments/no_such_segment/members", headers=key).status_code == 404


def test_segment_members_page_through_the_whole_segment(serving, client):
    key = {"X-API-Key": FULL_KEY}
    sizes = {s["name"]: s["members"] for s in client.get("/segments", headers=key).json()["segments"]}
    assert sizes == {k.split(".seg_")[1]: v for k, v in serving.second_run["row_counts"].items() if ".seg_" in k}
    seen, after = [], None
    while True:
        page = client.get(
            "/segments/lapsed_buyers/members", headers=key, params={"limit": 250, **({"after": after} if after else {})}
        ).json()
        seen.extend(m["profile_id"] for m in page["members"])
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == sizes["lapsed_buyers"]
    assert seen == sorted(seen)


def test_profile_lookup_is_two_primary_key_searches(serving):
    """The API's lookup (identifier -> document) searches the read model's primary keys, no scan; the
    store keeps its ART index on identity_value for BI point lookups."""
    import sqlite3

    from cdp.serving.readmodel import ReadModel, read_model_path

    model = ReadModel(read_model_path(serving.store))
    plan = " | ".join(row[-1] for row in model.connection.execute("explain query plan " + model._full, (b"x",)))
    model.close()
    assert plan.count("SEARCH") == 2 and "SCAN" not in plan, plan
    assert "PRIMARY KEY" in plan, plan
    assert sqlite3.sqlite_version_info >= (3, 8, 2)  # WITHOUT ROWID
    with duckdb.connect(str(serving.store), read_only=True) as con:
        email = con.execute(
            "select identity_value from profiles.profile_identities where namespace = 'email' order by 1 limit 1"
        ).fetchone()[0]
        literal = "'" + email.replace("'", "''") + "'"
        query = f"select namespace, profile_id from profiles.profile_identities where identity_value = {literal}"
        plan = con.execute(f"explain analyze {query}").fetchall()[0][1]
        assert "Index Scan" in plan, plan


def test_health_reports_the_published_run(serving, client):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["run_id"] == latest(serving.store)["run_id"]
    assert 0 <= health["age_seconds"] < 3600


def test_api_switches_to_a_new_publication_without_restart(scratch):
    from cdp.serving.api import ApiKeys, create_app
    from cdp.serving.publish import publish

    client = TestClient(create_app(scratch.store, ApiKeys(full=frozenset({FULL_KEY}), masked=frozenset())))
    assert client.get("/health").json()["run_id"] == latest(scratch.store)["run_id"]
    publish(scratch.workspace.warehouse, scratch.store, run_id="republished-for-the-api")
    assert client.get("/health").json()["run_id"] == "republished-for-the-api"
    segments = client.get("/segments", headers={"X-API-Key": FULL_KEY}).json()
    assert segments["published_run_id"] == "republished-for-the-api"


def test_freshness_check_reads_the_store(serving, monkeypatch):
    from orchestration.assets.serving import store_freshness

    monkeypatch.setenv("CDP_SERVING_STORE", str(serving.store))
    published_at = latest(serving.store)["published_at"]
    assert store_freshness(now=published_at + dt.timedelta(hours=1)).passed
    stale = store_freshness(now=published_at + dt.timedelta(hours=27))
    assert not stale.passed and "27.0 h old" in stale.description
    monkeypatch.setenv("CDP_SERVING_STORE", str(serving.store.with_name("missing.duckdb")))
    assert not store_freshness().passed


def test_openapi_fuzzing_finds_no_server_error(client):
    """Requests generated from the OpenAPI document, with each key and none: no 5xx, and every
    response has a documented status code, content type and shape."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    calls, failures = [], []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            for key in (FULL_KEY, MASKED_KEY, None):
                response = case.call(headers={"X-API-Key": key} if key else {})
                calls.append(response.status_code)
                try:
                    case.validate_response(response, checks=checks)
                except Exception as failure:  # collect them all, report together
                    failures.append(f"{case.method} {case.formatted_path}: {str(failure)[:400]}")

        fuzz()
    assert len(calls) >= 300 and {200, 401} <= set(calls), sorted(set(calls))
    assert not failures, failures[:5]


def test_profile_show_finds_a_demo_person_by_email_phone_and_cookie(serving, client):
    """`cdp profile show` (the profile 360 in a terminal) reads the published store: any identifier of
    a person leads to the same profile, as text with every section or as the API's JSON document."""
    from click.testing import CliRunner

    from cdp.cli import main

    runner = CliRunner(env=serving.workspace.env)
    person = next(
        p
        for p in known_person_identifiers(serving.workspace)
        if all(
            client.get(f"/profiles/{ns}/{v}", headers={"X-API-Key": FULL_KEY}).status_code == 200 for ns, v in p.items()
        )
    )
    shown = {}
    for namespace in ("email", "phone", "cookie_id"):
        result = runner.invoke(main, ["profile", "show", f"{namespace}:{person[namespace]}", "--json", "--events", "3"])
        assert result.exit_code == 0, result.output
        shown[namespace] = json.loads(result.output)
    assert len({doc["profile_id"] for doc in shown.values()}) == 1, {ns: d["profile_id"] for ns, d in shown.items()}
    document = shown["email"]
    assert document["published_run_id"] == latest(serving.store)["run_id"]
    assert len(document["recent_events"]) <= 3
    assert ("cookie_id", person["cookie_id"]) in {(i["namespace"], i["value"]) for i in document["identities"]}

    text = runner.invoke(main, ["profile", "show", f"email:{person['email'].upper()}"])
    assert text.exit_code == 0, text.output
    for section in ("Identities (", "Attributes", "Consents", "Traits", "Predictions", "Segments:", "Recent events ("):
        assert section in text.output, f"{section!r} missing from:\n{text.output}"
    assert document["profile_id"] in text.output and person["cookie_id"] in text.output
    # Every attribute with a value names the source record the merge policy took it from.
    filled = {name for name, value in document["attributes"].items() if value is not None} - {
        "profile_id",
        "is_known",
        "identity_count",
        "profile_record_count",
        "last_updated_at",
    }
    sources = document["attribute_sources"]
    assert filled and filled == set(sources), (filled, set(sources))
    for name, source in sources.items():
        assert source["record_id"].startswith(source["source_table"] + ":"), source
        assert f"{source['record_id']}  {source['merge_rule']}" in text.output, f"{name}: {source} not shown"

    unknown = runner.invoke(main, ["profile", "show", "fax:12345"])
    assert unknown.exit_code != 0 and "unknown identity namespace 'fax'" in unknown.output
    missing = runner.invoke(main, ["profile", "show", "email:nobody.at.all@example.com"])
    assert missing.exit_code != 0 and "no profile holds email:nobody.at.all@example.com" in missing.output
