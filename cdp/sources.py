"""Data-usage labels travel: each staging and XDM column's dbt `meta` (PII class and labels) is
generated from the source contracts, so it cannot drift (`cdp contracts dbt-meta --check`, tested).

The lineage below says which contract column(s) each staging and XDM column comes from; a column
derived from several inherits the union of their labels and the strongest PII class."""

from __future__ import annotations

from pathlib import Path

import yaml

import data_contracts
from cdp.settings import DBT_PROJECT_DIR

_CRM_CONTACT_COLUMNS = {
    "contact_id": "contact_id",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "phone": "phone",
    "birth_date": "birth_date",
    "gender": "gender",
    "street": "street",
    "city": "city",
    "postcode": "postcode",
    "country_code": "country",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "source_file": None,
}

# staging model -> (contract, {staging column: contract column or None when derived from no source column})
STAGING_LINEAGE: dict[str, tuple[str, dict[str, str | None]]] = {
    "stg_crm__contact_versions": ("crm__contacts", _CRM_CONTACT_COLUMNS),
    "stg_crm__contacts": ("crm__contacts", _CRM_CONTACT_COLUMNS),
    "stg_webshop__orders": (
        "webshop__orders",
        {
            "order_id": "order_id",
            "shop_customer_id": "customer_id",
            "email": "email",
            "phone": "phone",
            "ordered_at": "ordered_at",
            "order_total": "total_amount",
            "currency_code": "currency",
            "order_status": "status",
            "is_completed": "status",
            "shipping_city": "shipping_city",
            "shipping_postcode": "shipping_postcode",
            "shipping_country_code": "shipping_country",
            "source_file": None,
        },
    ),
    "stg_webshop__order_lines": (
        "webshop__order_lines",
        {
            "order_line_id": "order_line_id",
            "order_id": "order_id",
            "product_id": "product_id",
            "product_name": "product_name",
            "product_category": "category",
            "product_colour": "colour",
            "quantity": "quantity",
            "unit_price": "unit_price",
            "line_total": "unit_price",
        },
    ),
    "stg_pos__transactions": (
        "pos__transactions",
        {
            "transaction_id": "transaction_id",
            "store_id": "store_id",
            "loyalty_id": "loyalty_id",
            "transacted_at": "transacted_at",
            "transaction_total": "total_amount",
            "currency_code": "currency",
            "payment_method": "payment_method",
        },
    ),
    "stg_web__events": (
        "web__events",
        {
            "event_id": "event_id",
            "cookie_id": "cookie_id",
            "shop_customer_id": "customer_id",
            "event_type": "event_type",
            "page_url": "page_url",
            "occurred_at": "occurred_at",
        },
    ),
    "stg_app__events": (
        "app__events",
        {
            "event_id": "event_id",
            "device_id": "device_id",
            "advertising_id": "advertising_id",
            "platform": "platform",
            "shop_customer_id": "customer_id",
            "event_type": "event_type",
            "occurred_at": "occurred_at",
        },
    ),
    "stg_esp__email_events": (
        "esp__email_events",
        {
            "event_id": "event_id",
            "email": "email",
            "campaign_id": "campaign_id",
            "event_type": "event_type",
            "occurred_at": "occurred_at",
        },
    ),
    "stg_sms__sms_events": (
        "sms__sms_events",
        {
            "event_id": "event_id",
            "phone": "phone",
            "campaign_id": "campaign_id",
            "event_type": "event_type",
            "occurred_at": "occurred_at",
        },
    ),
    "stg_loyalty__members": (
        "loyalty__members",
        {
            "loyalty_id": "loyalty_id",
            "email": "email",
            "phone": "phone",
            "first_name": "first_name",
            "last_name": "last_name",
            "loyalty_tier": "tier",
            "loyalty_points": "points",
            "country_code": "country",
            "joined_at": "joined_at",
            "updated_at": "updated_at",
        },
    ),
    "stg_support__tickets": (
        "support__tickets",
        {
            "ticket_id": "ticket_id",
            "contact_id": "crm_contact_id",
            "email": "email",
            "phone": "phone",
            "contact_channel": "channel",
            "subject": "subject",
            "opened_at": "opened_at",
            "ticket_status": "status",
        },
    ),
    "stg_preferences__consents": (
        "preferences__consents",
        {
            "consent_event_id": "consent_event_id",
            "email": "email",
            "phone": "phone",
            "consent_purpose": "purpose",
            "is_granted": "status",
            "recorded_at": "recorded_at",
            "capture_channel": "channel",
        },
    ),
}

# XDM model -> {XDM column: [(staging model, staging column), ...]}
_PROFILE_SOURCES = ("stg_crm__contacts", "stg_loyalty__members", "stg_webshop__orders", "stg_support__tickets")
XDM_LINEAGE: dict[str, dict[str, list[tuple[str, str]]]] = {
    "xdm_profile_records": {
        "person_name_first_name": [("stg_crm__contacts", "first_name"), ("stg_loyalty__members", "first_name")],
        "person_name_last_name": [("stg_crm__contacts", "last_name"), ("stg_loyalty__members", "last_name")],
        "person_birth_date": [("stg_crm__contacts", "birth_date")],
        "person_gender": [("stg_crm__contacts", "gender")],
        "personal_email_address": [(m, "email") for m in _PROFILE_SOURCES],
        "mobile_phone_number": [(m, "phone") for m in _PROFILE_SOURCES],
        "home_address_street1": [("stg_crm__contacts", "street")],
        "home_address_city": [("stg_crm__contacts", "city"), ("stg_webshop__orders", "shipping_city")],
        "home_address_postal_code": [("stg_crm__contacts", "postcode"), ("stg_webshop__orders", "shipping_postcode")],
        "home_address_country_code": [
            ("stg_crm__contacts", "country_code"),
            ("stg_loyalty__members", "country_code"),
            ("stg_webshop__orders", "shipping_country_code"),
        ],
        "loyalty_tier": [("stg_loyalty__members", "loyalty_tier")],
        "loyalty_points": [("stg_loyalty__members", "loyalty_points")],
    },
    "xdm_identities": {
        "identity_value": [
            (model, column)
            for model, (_, columns) in STAGING_LINEAGE.items()
            for column in columns
            if column
            in (
                "contact_id",
                "email",
                "phone",
                "shop_customer_id",
                "loyalty_id",
                "cookie_id",
                "device_id",
                "advertising_id",
            )
        ],
    },
}
PII_STRENGTH = {"none": 0, "indirect": 1, "direct": 2}


def _meta(columns: list[data_contracts.Column]) -> dict:
    pii = max((c.pii for c in columns), key=PII_STRENGTH.__getitem__, default="none")
    labels = sorted({label for c in columns for label in c.labels})
    return {"pii": pii, "labels": labels}


def staging_meta() -> dict[str, dict[str, dict]]:
    contracts = data_contracts.load_contracts()
    meta: dict[str, dict[str, dict]] = {}
    for model, (contract_name, lineage) in STAGING_LINEAGE.items():
        columns = contracts[contract_name].columns
        meta[model] = {column: _meta([columns[source]] if source else []) for column, source in lineage.items()}
    return meta


def xdm_meta(staging: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    result = {}
    for model, lineage in XDM_LINEAGE.items():
        result[model] = {}
        for column, sources in lineage.items():
            metas = [staging[m][c] for m, c in sources]
            result[model][column] = {
                "pii": max((m["pii"] for m in metas), key=PII_STRENGTH.__getitem__, default="none"),
                "labels": sorted({label for m in metas for label in m["labels"]}),
            }
    return result


def _models_files(dbt_dir: Path) -> dict[str, Path]:
    files = {}
    for path in (dbt_dir / "models").rglob("_*__models.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            files[model["name"]] = path
    return files


def sync_dbt_meta(dbt_dir: Path = DBT_PROJECT_DIR, check: bool = False) -> list[str]:
    """Write (or with `check`, only compare) the meta of every staging and XDM column. Returns the
    differences found (empty when the YAML matches the contracts)."""
    staging = staging_meta()
    wanted = {**staging, **xdm_meta(staging)}
    differences: list[str] = []
    files = _models_files(dbt_dir)
    for path in sorted({files[model] for model in wanted}):
        document = yaml.safe_load(path.read_text())
        changed = False
        for model in document["models"]:
            if model["name"] not in wanted:
                continue
            columns = {c["name"]: c for c in model.setdefault("columns", [])}
            for column_name, meta in wanted[model["name"]].items():
                column = columns.get(column_name)
                if column is None:
                    column = {"name": column_name}
                    model["columns"].append(column)
                    columns[column_name] = column
                current = column.get("config", {}).get("meta")
                if current != meta:
                    differences.append(
                        f"{path.relative_to(dbt_dir)}: {model['name']}.{column_name} meta is "
                        f"{current}, the contracts say {meta}"
                    )
                    column.setdefault("config", {})["meta"] = meta
                    changed = True
        if changed and not check:
            path.write_text(yaml.safe_dump(document, sort_keys=False, width=110))
    return differences
