"""Privacy requests end to end, on a copy of the shared pipeline runs' workspace (tests/pipeline_runs.py;
the original stays untouched): `cdp privacy access`, `cdp privacy erase`, then the proof: a scan of
every table of the warehouse, every destination (files and the webhook inbox) and the serving store
finds none of the person's identifiers; the sources re-sending the person's rows does not bring them
back (`cdp load` of the resent files); everyone else's rows are untouched. Encryption at rest has its
own test (tests/test_encryption.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from cdp.warehouse import attach, connect
from data_contracts.contract import CONTRACTS_DIR
from support.pipeline_runs import copy_workspace
from support.workspace import Workspace

KEY = None  # the copied workspace is not encrypted
# Hashes of the person are kept on purpose in these two tables (the suppression list and the request record).
HASH_KEEPERS = {"governance.suppressed_identifiers", "audit.privacy_requests"}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def text_columns(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> dict[str, list[str]]:
    rows = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where (data_type in ('VARCHAR', 'JSON') or data_type like 'VARCHAR[]') "
        "and table_schema not in ('information_schema', 'pg_catalog') "
        + (f"and table_catalog = '{catalog}'" if catalog else "and table_catalog = current_database()")
    ).fetchall()
    columns: dict[str, list[str]] = {}
    for schema, table, column in rows:
        columns.setdefault(f"{schema}.{table}", []).append(column)
    return columns


def scan(con: duckdb.DuckDBPyConnection, needles: set[str], hashes: set[str], catalog: str | None = None) -> list[str]:
    """Every (table, column, needle) where a text column contains one of the person's values, or a
    hash of one (outside the two tables that keep hashes by design)."""
    con.execute("create or replace temp table needles (v varchar, is_hash boolean)")
    con.executemany("insert into needles values (?, ?)", [[n, False] for n in needles] + [[h, True] for h in hashes])
    found = []
    prefix = f"{catalog}." if catalog else ""
    for relation, columns in text_columns(con, catalog).items():
        for column in columns:
            hits = con.execute(
                f"""select distinct n.v from {prefix}{relation} as t, needles as n
                    where contains(lower(cast(t."{column}" as varchar)), n.v)
                      and not (n.is_hash and '{relation}' in {tuple(HASH_KEEPERS)})"""
            ).fetchall()
            found += [f"{relation}.{column}: {v}" for (v,) in hits]
    return found


@dataclass
class Erasure:
    workspace: Workspace
    email: str
    profile_id: str
    needles: set[str]
    hashes: set[str]
    counts_before: dict[str, int]
    others_before: dict[str, int]
    person_rows: dict[str, list[tuple[str, int]]]  # raw table -> (source file, row number) of the person
    access_export: dict
    erase_output: str
    access_export_path: Path


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        f"{s}.{t}": con.execute(f'select count(*) from "{s}"."{t}"').fetchone()[0]
        for s, t in con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            "and table_schema in ('raw', 'quarantine', 'xdm', 'identity', 'profiles', 'segments', 'predictions', "
            "'snapshots', 'activation')"
        ).fetchall()
    }


def others_counts(
    con: duckdb.DuckDBPyConnection, profile_id: str, records: set[str], orders: set[str]
) -> dict[str, int]:
    """Rows that are not the person's, computed independently of the erasure's matcher: raw rows of
    records the identity graph gives to other profiles, and rows of other profile ids."""
    result = {}
    con.execute(
        "create or replace temp table person_records as select unnest(?::varchar[]) as record_id", [sorted(records)]
    )
    for _schema, table in con.execute(
        "select table_schema, table_name from information_schema.tables where table_schema = 'raw'"
    ).fetchall():
        key = yaml.safe_load((CONTRACTS_DIR / f"{table}.yml").read_text())["primary_key"][0]
        condition = f"'{table}:' || \"{key}\" not in (select record_id from person_records)"
        if table == "webshop__order_lines":
            condition += " and order_id not in (select unnest(?::varchar[]))"
            result[f"raw.{table}"] = con.execute(
                f"select count(*) from raw.{table} where {condition}", [sorted(orders)]
            ).fetchone()[0]
        else:
            result[f"raw.{table}"] = con.execute(f"select count(*) from raw.{table} where {condition}").fetchone()[0]
    for schema, table in con.execute(
        "select table_schema, table_name from information_schema.columns "
        "where column_name = 'profile_id' and table_schema in ('profiles', 'segments', "
        "'predictions') and table_catalog = current_database()"
    ).fetchall():
        result[f"{schema}.{table}"] = con.execute(
            f"select count(*) from {schema}.{table} where profile_id <> ?", [profile_id]
        ).fetchone()[0]
    result["activation.sync_state"] = con.execute(
        "select count(*) from activation.sync_state where record_key <> ?", [profile_id]
    ).fetchone()[0]
    return result


@pytest.fixture(scope="module")
def erasure(runs, make_workspace) -> Erasure:
    workspace = Workspace(copy_workspace(runs, make_workspace, "privacy").data_dir, {"CDP_ACTOR": "dpo@example.com"})
    with connect(workspace.warehouse, read_only=True, key=KEY) as con:
        # A synced high-value customer with several sources: the hardest person to erase.
        profile_id, email = con.execute(
            """select p.profile_id, p.email from profiles.profiles p
               join activation.sync_state s on s.record_key = p.profile_id
               join profiles.profile_identities i on i.profile_id = p.profile_id
               where p.email is not null group by all order by count(distinct i.namespace) desc, 1 limit 1"""
        ).fetchone()
        identities = con.execute(
            "select identity_value, identity_value_sha256 from profiles.profile_identities where profile_id = ?",
            [profile_id],
        ).fetchall()
        records = {
            r
            for (r,) in con.execute(
                "select record_id from identity.record_profiles where profile_id = ?", [profile_id]
            ).fetchall()
        }
        orders = {r.split(":", 1)[1] for r in records if r.startswith("webshop__orders:")}
        person_rows: dict[str, list[tuple[str, int]]] = {}
        for (table,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        ).fetchall():
            key = yaml.safe_load((CONTRACTS_DIR / f"{table}.yml").read_text())["primary_key"][0]
            condition = f"'{table}:' || \"{key}\" in (select unnest(?::varchar[]))"
            params = [sorted(records)]
            if table == "webshop__order_lines":
                condition, params = "order_id in (select unnest(?::varchar[]))", [sorted(orders)]
            person_rows[table] = con.execute(
                f"select _source_file, _row_number from raw.{table} where {condition}", params
            ).fetchall()
        needles = {v.lower() for v, _ in identities if len(v) >= 6} | {profile_id.lower(), email.lower()}
        hashes = {h for _, h in identities if h}  # namespaces without a stored hash have none
        counts_before = counts(con)
        others_before = others_counts(con, profile_id, records, orders)
    access = workspace.cdp("privacy", "access", f"email:{email.upper()}")
    export_path = Path(access.stdout.strip().rsplit("export: ", 1)[1])
    access_export = json.loads(export_path.read_text())
    erase = workspace.cdp("privacy", "erase", f"email:{email}", "--yes")
    return Erasure(
        workspace,
        email,
        profile_id,
        needles,
        hashes,
        counts_before,
        others_before,
        person_rows,
        access_export,
        erase.stdout,
        export_path,
    )


def test_access_exports_everything_held_about_the_person(erasure):
    export = erasure.access_export
    assert export["profile_ids"] == [erasure.profile_id]
    tables = export["tables"]
    for table in (
        "profiles.profiles",
        "profiles.profile_identities",
        "profiles.profile_events",
        "profiles.profile_consents",
        "profiles.profile_traits",
        "segments.segment_memberships",
        "activation.sync_state",
        "raw.crm__contacts",
    ):
        assert tables.get(table), f"the access export has no rows of {table}"
    # Every raw row the identity graph gives the person is in the export (independent count).
    for table, rows in erasure.person_rows.items():
        assert len(tables.get(f"raw.{table}", [])) >= len(rows), table
    assert export["destinations_holding_the_person"]
    assert {(i["namespace"], i["value"]) for i in export["identities"]} >= {("email", erasure.email)}


def test_erasure_leaves_no_identifier_in_any_table_destination_or_serving_store(erasure):
    with connect(erasure.workspace.warehouse, read_only=True, key=KEY) as con:
        assert scan(con, erasure.needles, erasure.hashes) == []
        request = con.execute(
            "select kind, status, actor, rows_deleted, destinations, identifiers_sha256 "
            "from audit.privacy_requests where kind = 'erase'"
        ).fetchone()
        suppressed = {
            h for (h,) in con.execute("select identifier_sha256 from governance.suppressed_identifiers").fetchall()
        }
        events = con.execute("select actor, outcome from audit.events where action = 'privacy_request'").fetchall()
    kind, status, actor, rows_deleted, destinations, identifiers = request
    assert (kind, status, actor) == ("erase", "completed", "dpo@example.com")
    assert json.loads(rows_deleted)["profiles.profiles"] == 1
    assert "serving_store" in json.loads(destinations) and erasure.hashes <= suppressed <= set(identifiers) | suppressed
    assert ("dpo@example.com", "completed") in events
    destination_files = [p for p in (erasure.workspace.data_dir / "destinations").rglob("*") if p.is_file()]
    assert destination_files
    for path in destination_files:
        text = path.read_bytes().lower()
        if path.suffix == ".parquet":
            text = pl.read_parquet(path).write_csv().lower().encode()
        assert not [n for n in erasure.needles if n.encode() in text], path
    with duckdb.connect(":memory:") as con:
        attach(con, erasure.workspace.data_dir / "serving" / "published.duckdb", "store", read_only=True, key=KEY)
        assert scan(con, erasure.needles, erasure.hashes, catalog="store") == []
    # The profile read model beside the store (the API's lookups) was written anew without the person.
    from cdp.serving.readmodel import read_model_path

    read_model = read_model_path(erasure.workspace.data_dir / "serving" / "published.duckdb").read_bytes().lower()
    assert not [n for n in erasure.needles if n.encode() in read_model]


def warehouse_files_holding(erasure: Erasure) -> dict[str, list[str]]:
    """The needles found in the raw bytes of the warehouse file (and its WAL): deleted rows stay in a
    DuckDB file's free blocks until the file is rewritten."""
    found = {}
    for path in sorted(erasure.workspace.warehouse.parent.glob(erasure.workspace.warehouse.name + "*")):
        data = path.read_bytes().lower()
        hits = [n for n in sorted(erasure.needles) if n.encode() in data]
        if hits:
            found[path.name] = hits
    return found


def test_erasure_leaves_no_byte_of_the_person_in_the_warehouse_file_or_an_access_export(erasure):
    assert not erasure.access_export_path.exists(), "the access export (full PII) outlived the erasure"
    assert warehouse_files_holding(erasure) == {}


def test_erasure_leaves_everyone_else_untouched(erasure):
    with connect(erasure.workspace.warehouse, read_only=True, key=KEY) as con:
        after = counts(con)
        for relation, others in erasure.others_before.items():
            assert after[relation] == others, f"{relation}: {after[relation]} rows after, {others} of others before"
    assert after["profiles.profiles"] == erasure.counts_before["profiles.profiles"] - 1


def resend_the_persons_rows(erasure: Erasure) -> dict[str, int]:
    """The sources send the person's original rows again, byte for byte, as new landing files."""
    landing = erasure.workspace.data_dir / "landing"
    sent = {}
    by_file: dict[str, list[int]] = {}
    for rows in erasure.person_rows.values():
        for source_file, number in rows:
            by_file.setdefault(source_file, []).append(number)
    for source_file, numbers in by_file.items():
        path = landing / source_file
        copy = path.with_name(f"resent_{path.name}")
        if path.suffix == ".parquet":
            pl.read_parquet(path).with_row_index("n", offset=1).filter(pl.col("n").is_in(numbers)).drop(
                "n"
            ).write_parquet(copy)
        else:
            lines = path.read_text().splitlines()
            header = [lines[0]] if path.suffix == ".csv" else []
            copy.write_text("\n".join(header + [lines[n - 1] for n in sorted(numbers)]) + "\n")
        sent[copy.relative_to(landing).as_posix()] = len(numbers)
    return sent


def test_the_sources_sending_the_person_again_does_not_bring_them_back(erasure):
    sent = resend_the_persons_rows(erasure)
    assert sum(sent.values()) > 10
    erasure.workspace.cdp("load")
    with connect(erasure.workspace.warehouse, read_only=True, key=KEY) as con:
        loads = dict(
            (
                (p, (a, q, s))
                for p, a, q, s in con.execute(
                    "select file_path, rows_accepted, rows_quarantined, rows_suppressed from audit.loads "
                    "where file_path like '%resent_%'"
                ).fetchall()
            )
        )
        assert loads == {path: (0, 0, rows) for path, rows in sent.items()}  # every row accounted for, as suppressed
        assert scan(con, erasure.needles, erasure.hashes) == []
        assert (
            con.execute("select count(*) from profiles.profiles").fetchone()[0]
            == erasure.counts_before["profiles.profiles"] - 1
        )
    for path in (erasure.workspace.data_dir / "destinations").rglob("*.csv"):
        assert erasure.email.encode() not in path.read_bytes().lower()
    assert warehouse_files_holding(erasure) == {}, "a later load leaves no byte of the person either"


@pytest.mark.parametrize("identifier", ["ana@example.com", "email:", ":ana@example.com", "email:   "])
def test_a_malformed_identifier_is_refused_with_the_expected_form(identifier):
    from cdp.governance.privacy import PrivacyRequestError, parse_identifier

    with pytest.raises(PrivacyRequestError, match="expected <namespace>:<value>, e.g. email:ana@example.com"):
        parse_identifier(identifier)


def test_an_unknown_person_is_recorded_and_suppressed_without_touching_anyone(tmp_path):
    from cdp.governance.privacy import erase

    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema raw; create table raw.crm__contacts (contact_id varchar, email varchar)")
        con.execute("insert into raw.crm__contacts values ('C1', 'someone@example.com')")
        outcome = erase(con, "email: Nobody@Example.com ", base_dir=tmp_path)
        assert (outcome.profile_ids, outcome.rows) == ([], {})
        assert con.execute("select count(*) from raw.crm__contacts").fetchone()[0] == 1
        assert con.execute("select status, identifier_sha256 from audit.privacy_requests").fetchone() == (
            "not_found",
            sha256("nobody@example.com"),
        )
        assert (
            con.execute(
                "select count(*) from governance.suppressed_identifiers where identifier_sha256 = ?",
                [sha256("nobody@example.com")],
            ).fetchone()[0]
            == 1
        )


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_bi_schema_and_the_masked_api_hold_no_direct_or_reversible_identifier(runs):
    """Masking (issue 19 item 9): no identifier, no unsalted hash of one (a dictionary reverses it), no
    source record id, in any relation of the `bi` schema or any answer of the masked API scope."""
    from fastapi.testclient import TestClient

    from cdp.serving.api import ApiKeys, create_app

    store = runs.workspace.data_dir / "serving" / "published.duckdb"
    with duckdb.connect(str(store), read_only=True) as con:
        identities = con.execute("select namespace, identity_value from profiles.profile_identities").fetchall()
        record_ids = {
            v
            for (v,) in con.execute(
                """select record_id from profiles.profile_attribute_lineage
                   union select decided_by_record_id from profiles.profile_consents
                   union select event_id from profiles.profile_events
                   union select product_list_item_id from profiles.profile_purchase_items"""
            ).fetchall()
            if v
        }
        orders = {
            v for (v,) in con.execute("select commerce_order_purchase_id from profiles.profile_events").fetchall() if v
        }
        values = {v for _, v in identities if v and len(v) >= 4}
        # What a dictionary attack computes: plain SHA-256, and the old masking (its first 16 hex digits).
        unsalted = {sha256(v) for v in values} | {"sha256:" + sha256(v)[:16] for v in values}
        forbidden = values | unsalted | record_ids | {r.split(":", 1)[1] for r in record_ids} | orders
        relations = con.execute(
            "select table_name from information_schema.tables where table_schema = 'bi' order by 1"
        ).fetchall()
        leaks = []
        for (relation,) in relations:
            frame = con.execute(f'select * from bi."{relation}"').pl()
            for column in frame.columns:
                if frame[column].dtype == pl.String:
                    hits = set(frame[column].drop_nulls()) & forbidden
                    if hits:
                        leaks.append(f"bi.{relation}.{column}: {len(hits)} value(s), e.g. {sorted(hits)[0]}")
        people = con.execute(
            """select i.namespace, i.identity_value from profiles.profile_identities i
               join profiles.profile_attribute_lineage l using (profile_id)
               where i.namespace in ('email', 'crm_id', 'loyalty_id') group by all order by 2 limit 12"""
        ).fetchall()
    assert relations and not leaks, leaks
    client = TestClient(create_app(store, ApiKeys(full=frozenset(), masked=frozenset({"masked-key"}))))
    for namespace, value in people:
        answer = client.get(f"/profiles/{namespace}/{value}", headers={"X-API-Key": "masked-key"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["attribute_sources"], "profiles with lineage were chosen"
        leaked = set(_strings(answer.json())) & forbidden
        assert not leaked, f"masked answer for a {namespace} holds {sorted(leaked)[:3]}"
