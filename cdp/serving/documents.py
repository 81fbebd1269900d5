"""Profile documents: the API's answer for each profile, rendered once per publication.

Each profile gets two JSON documents in the shape of the API's `Profile`: the full one (direct
identifiers in clear) and the masked one, masked in SQL by the same rules (`mask_sql`) and keyed
pseudonyms as the BI-safe relations (a test checks the API's masked answers agree with the bi views).
They are stored in the profile read model (cdp/serving/readmodel.py), so a lookup serves stored bytes:
no query planning, no serialization, no masking per request. `mask_value` masks the same way in
Python, for what the API reads outside the documents (events past DOCUMENT_EVENTS).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

import duckdb

from cdp.errors import CdpError

DOCUMENT_EVENTS = 10  # recent events kept in a document (most of its size); requests for more read profile_events
MASKING_RULES_TABLE = "serving.masking_rules"


# The secret of the keyed pseudonyms (masking `hash`): CDP_MASKING_KEY, else a random key kept beside the
# serving store (<store>.masking-key, owner-only), created by the first publication. Never inside the
# store: a pseudonym is sha256(key | value), which no dictionary of identifiers reverses without the key.
MASKING_KEY_ENV = "CDP_MASKING_KEY"
MASKING_KEY_VARIABLE = "cdp_masking_key"  # the DuckDB variable mask_sql reads while a publication runs
MAX_VALUE_LENGTH = 320  # the longest valid email address
EMAIL = re.compile(r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")  # as dbt's normalize_email
NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidIdentifier(CdpError, ValueError):
    """An identifier that cannot be looked up; the message says what is wrong and what is expected."""


def normalize_identifier(namespace: str, value: str) -> str:
    """The identifier as the pipeline stores it (emails lower-cased, phones in E.164). Whether the
    namespace exists is checked against the store when a lookup finds nothing."""
    if not NAMESPACE.match(namespace):
        raise InvalidIdentifier(
            f"malformed identity namespace {namespace[:64]!r}: lower-case letters, "
            "digits and _, e.g. email, phone, cookie_id"
        )
    value = value.strip()
    if not value or len(value) > MAX_VALUE_LENGTH or not value.isprintable():
        raise InvalidIdentifier(f"{namespace} value must be 1 to {MAX_VALUE_LENGTH} printable characters")
    if namespace == "email":
        value = value.lower()
        if not EMAIL.match(value):
            raise InvalidIdentifier("email must look like name@example.com")
    elif namespace == "phone":
        digits = re.sub(r"[^0-9]", "", value)
        if value.startswith("00"):
            digits = digits[2:]
        elif not value.startswith("+") or re.search(r"[^0-9+ ().-]", value):
            raise InvalidIdentifier("phone must be in international form: + country code and number, e.g. +14155550123")
        if not 8 <= len(digits) <= 15:
            raise InvalidIdentifier(f"phone must have 8 to 15 digits in E.164 form; found {len(digits)}")
        value = "+" + digits
    return value


def recent_events(con: duckdb.DuckDBPyConnection, profile_id: str, limit: int) -> list[dict]:
    """A profile's latest `limit` events, in the shape of a document's recent_events (for requests
    that want more than the DOCUMENT_EVENTS a document keeps)."""
    result = con.execute(
        f"""select event_id, event_type, strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') as occurred_at, channel,
                   source_table, commerce_order_price_total::double as order_total,
                   commerce_order_currency_code as currency_code
            from profiles.profile_events where profile_id = {sql_literal(profile_id)}
            order by profile_events.occurred_at desc, event_id limit {int(limit)}"""
    )
    names = [column[0] for column in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    # Callers pass validated values (printable, bounded); a literal rather than a parameter lets
    # DuckDB use the ART index for a point lookup.
    return "'" + text.replace("'", "''") + "'"


def masking_key_path(store: Path) -> Path:
    return Path(store).with_name(f".{Path(store).name}.masking-key")


def masking_key(store: Path, create: bool = False) -> str | None:
    """The key of the keyed pseudonyms for this serving store (see MASKING_KEY_ENV); None when there is
    none yet and `create` is False."""
    if os.environ.get(MASKING_KEY_ENV):
        return os.environ[MASKING_KEY_ENV]
    path = masking_key_path(store)
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return key


def mask_sql(column: str, masking: str) -> str:
    """SQL that shows a direct identifier without revealing it (the BI-safe relations). `hash` reads the
    key from the DuckDB variable MASKING_KEY_VARIABLE, set only while a publication builds them."""
    c = quote_identifier(column)
    return {
        # a***@example.com: the domain stays (useful for deliverability analysis), the person does not
        "email": f"case when {c} is null then null else left({c}, 1) || '***@' || split_part({c}, '@', 2) end",
        # ***67: the last two digits, enough to tell two numbers apart on a screen
        "phone": f"case when {c} is null then null else '***' || right({c}, 2) end",
        "initial": f"case when {c} is null then null else left({c}, 1) || '.' end",
        # stable keyed pseudonym: joins and distinct counts still work; without the key, the value cannot be
        # read back, nor found by hashing candidate values (unsalted SHA-256 of an email is a dictionary away)
        "hash": f"case when {c} is null then null else 'sha256:' || left(sha256(getvariable('{MASKING_KEY_VARIABLE}') "
        f"|| '|' || cast({c} as varchar)), 16) end",
        "redact": "null",
    }[masking]


def mask_value(value, masking: str, key: str | None = None):
    """mask_sql in Python, for the API's masked scope; must give what the SQL gives (same key)."""
    if value is None or masking == "redact":
        return None
    text = str(value)
    if masking == "email":
        parts = text.split("@")
        return text[:1] + "***@" + (parts[1] if len(parts) > 1 else "")
    if masking == "phone":
        return "***" + text[-2:]
    if masking == "initial":
        return text[:1] + "."
    if masking == "hash":
        if not key:
            raise ValueError("masking 'hash' needs the masking key (see documents.masking_key)")
        return "sha256:" + hashlib.sha256(f"{key}|{text}".encode()).hexdigest()[:16]
    raise ValueError(f"unknown masking {masking!r}")


def _json_field(column: str, data_type: str, masking: str | None) -> str:
    """One field of a document: RFC 3339 UTC timestamps, JSON text embedded as JSON."""
    if masking:
        return mask_sql(column, masking)
    c = quote_identifier(column)
    if data_type.startswith("TIMESTAMP"):
        return f"strftime({c}, '%Y-%m-%dT%H:%M:%SZ')"
    if "top_factors" in column and data_type == "VARCHAR":
        return f"json({c})"
    if data_type.startswith("DECIMAL"):
        return f"{c}::double"
    return c


def _struct(columns: list[tuple[str, str]], masked: dict[str, str]) -> str:
    fields = [
        f"{sql_literal(name)}: {_json_field(name, data_type, masked.get(name))}"
        for name, data_type in columns
        if name != "profile_id"
    ]
    return "{" + ", ".join(fields) + "}"


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from information_schema.columns where table_catalog = current_database() "
        "and table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()


def to_json_text(value: str) -> str:
    """A string as a JSON string literal (as DuckDB's to_json writes it)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def write_masking_rules(con: duckdb.DuckDBPyConnection, masked: dict[str, dict[str, str]]) -> None:
    """serving.masking_rules in the publication being written: table -> column -> masking (what the
    API applies to data it reads outside the pre-rendered documents, e.g. events past DOCUMENT_EVENTS)."""
    con.execute(f"create table {MASKING_RULES_TABLE} (table_name varchar, column_name varchar, masking varchar)")
    rules = [
        (table, column, masking)
        for table, columns in sorted(masked.items())
        for column, masking in sorted(columns.items())
    ]
    if rules:
        con.executemany(f"insert into {MASKING_RULES_TABLE} values (?, ?, ?)", rules)


def masking_of(masked: dict[str, dict[str, str]], table: str, column: str) -> str:
    """The masking of an identifier the masked scope never shows in clear (keyed pseudonym by default)."""
    return masked.get(table, {}).get(column, "hash")


def profile_documents_sql(
    con: duckdb.DuckDBPyConnection, run_id: str, masked: dict[str, dict[str, str]], in_range: str
) -> str:
    """A query of (profile_id, full_document, masked_document) for the profiles matching `in_range` (a
    predicate on profile_id), over the published tables `con` holds: the API's Profile JSON for each
    scope. The masked one masks as the bi relations do (mask_sql; keyed pseudonyms read the key from
    MASKING_KEY_VARIABLE, which must be set)."""
    profiles = _columns(con, "profiles", "profiles")
    traits = _columns(con, "profiles", "profile_traits")
    predictions = _columns(con, "profiles", "profile_predictions")

    def document(scope: str) -> str:
        """The Profile JSON of a scope, assembled from JSON parts: the parts both scopes share (traits,
        predictions, segments, consents) are serialized once per profile, in `parts`."""
        hidden = scope == "masked"
        prefix = "masked_" if hidden else ""

        def field(name: str, json_text: str) -> str:
            return f"'\"{name}\":' || {json_text}"

        fields = [
            field("profile_id", "to_json(profile_id)::varchar"),
            field("published_run_id", sql_literal(to_json_text(run_id))),
            field("scope", sql_literal(to_json_text(scope))),
            field("attributes", f"{prefix}attributes_json"),
            field("attribute_sources", f"{prefix}sources_json"),
            "shared_json",
            field("identities", f"{prefix}identities_json"),
            field("recent_events", f"{prefix}events_json"),
        ]
        return "'{' || " + " || ',' || ".join(fields) + " || '}'"

    def json_of(expression: str) -> str:
        return f"coalesce(to_json({expression})::varchar, 'null')"

    parts = f"""
            p.profile_id,
            {json_of(_struct(profiles, {}))} as attributes_json,
            {json_of(_struct(profiles, masked.get("profiles", {})))} as masked_attributes_json,
            {json_of("coalesce(a.items, MAP {})")} as sources_json,
            {json_of("coalesce(a.masked_items, MAP {})")} as masked_sources_json,
            '"traits":' || {json_of("t.document")} || ',"predictions":' || {json_of("pr.document")}
                || ',"segments":' || {json_of("coalesce(s.names, [])")}
                || ',"consents":' || {json_of("coalesce(c.items, [])")} as shared_json,
            {json_of("coalesce(i.items, [])")} as identities_json,
            {json_of("coalesce(i.masked_items, [])")} as masked_identities_json,
            {json_of("coalesce(e.items, [])")} as events_json,
            {json_of("coalesce(e.masked_items, [])")} as masked_events_json"""

    identity_value = mask_sql("identity_value", masking_of(masked, "profile_identities", "identity_value"))
    record_id = mask_sql("record_id", masking_of(masked, "profile_attribute_lineage", "record_id"))
    event_id = mask_sql("event_id", masking_of(masked, "profile_events", "event_id"))

    def identity(value: str) -> str:
        return f"""{{'namespace': namespace, 'value': {value},
                       'first_seen_at': strftime(first_seen_at, '%Y-%m-%dT%H:%M:%SZ'),
                       'last_seen_at': strftime(last_seen_at, '%Y-%m-%dT%H:%M:%SZ'),
                       'record_count': record_count, 'source_tables': source_tables}}"""

    def source(record: str) -> str:
        return f"""(attribute, {{'source_table': source_table, 'record_id': {record},
                    'merge_rule': merge_rule, 'updated_at': strftime(record_updated_at, '%Y-%m-%dT%H:%M:%SZ')}})"""

    def event(event: str) -> str:
        return f"""{{'event_id': {event}, 'event_type': event_type,
                       'occurred_at': strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ'), 'channel': channel,
                       'source_table': source_table, 'order_total': commerce_order_price_total::double,
                       'currency_code': commerce_order_currency_code}}"""

    # Lists in a document are in a fixed order. DuckDB's ordered aggregates (list(x order by y)) sort per
    # group and measured 3 to 7 times slower than list_sort of an unordered list of structs whose first
    # fields are the sort key (a struct sorts by its fields in order); list_transform drops the key.
    def sorted_items(key: str, item: str) -> str:
        return f"list_transform(list_sort(list({{'key': {key}, 'item': {item}}})), x -> x.item)"

    identity_key = "{'namespace': namespace, 'value': identity_value}"
    # occurred_at descending (nulls last, as the API's events query), then event id.
    event_key = "{'newest_first': -epoch_us(occurred_at), 'event_id': event_id}"
    return f"""
        with traits as (
            select profile_id, {_struct(traits, {})} as document from profiles.profile_traits where {in_range}
        ), predictions as (
            select profile_id, {_struct(predictions, {})} as document from profiles.profile_predictions where {in_range}
        ), segments as (
            select profile_id, list_sort(list(segment_name)) as names
            from segments.segment_memberships where {in_range} group by 1
        ), consents as (
            select profile_id, list_sort(list({{'purpose': consent_purpose, 'value': consent_value,
                                      'decided_at': strftime(decided_at, '%Y-%m-%dT%H:%M:%SZ')}})) as items
            from profiles.profile_consents where {in_range} group by 1
        ), identities as (
            select profile_id,
                {sorted_items(identity_key, identity("identity_value"))} as items,
                {sorted_items(identity_key, identity(identity_value))} as masked_items
            from profiles.profile_identities where {in_range} group by 1
        ), attribute_sources as (
            -- Which source record the merge policy took each attribute from (no values: nothing else to mask).
            select profile_id,
                map_from_entries({sorted_items("attribute", source("record_id"))}) as items,
                map_from_entries({sorted_items("attribute", source(record_id))}) as masked_items
            from profiles.profile_attribute_lineage where {in_range} group by 1
        ), recent as (
            select * from profiles.profile_events where {in_range}
            qualify row_number() over (partition by profile_id order by occurred_at desc, event_id) <= {DOCUMENT_EVENTS}
        ), events as (
            select profile_id,
                {sorted_items(event_key, event("event_id"))} as items,
                {sorted_items(event_key, event(event_id))} as masked_items
            from recent group by 1
        )
        , parts as (
            select {parts}
            from profiles.profiles as p
            left join traits as t using (profile_id)
            left join predictions as pr using (profile_id)
            left join segments as s using (profile_id)
            left join consents as c using (profile_id)
            left join identities as i using (profile_id)
            left join events as e using (profile_id)
            left join attribute_sources as a using (profile_id)
            where {in_range}
        )
        select profile_id, {document("full")} as full_document, {document("masked")} as masked_document
        from parts
    """
