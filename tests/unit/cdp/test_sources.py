"""Source declarations (cdp/sources.py): the staging YAML is the one place a source says what XDM,
labels and privacy need; every mistake is refused naming the file, the model, the column and what to
write. Each test edits a copy of the shipped staging folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cdp.settings import DBT_PROJECT_DIR
from cdp.sources import (
    REFS_MACRO,
    SourceError,
    SourceLineage,
    load_staging_models,
    render_source_refs,
    source_refs,
)


@pytest.fixture
def project(tmp_path) -> Path:
    """The parts of the dbt project the declarations are read from, copied."""
    for part in ("models/staging", "models/xdm", "seeds"):
        shutil.copytree(DBT_PROJECT_DIR / part, tmp_path / part)
    return tmp_path


def edit(project: Path, source: str, change) -> Path:
    path = project / "models" / "staging" / source / f"_{source}__models.yml"
    document = yaml.safe_load(path.read_text())
    change({model["name"]: model for model in document["models"]})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def cdp_meta(model: dict) -> dict:
    return model["config"]["meta"]["cdp"]


def column(model: dict, name: str) -> dict:
    return next(c for c in model["columns"] if c["name"] == name)


def test_the_generated_xdm_dependencies_match_the_declarations():
    """macros/xdm_source_models.sql is generated: committed stale, dbt would miss a source's refs."""
    assert (DBT_PROJECT_DIR / REFS_MACRO).read_text() == render_source_refs(load_staging_models()), (
        "run `cdp sources check` to regenerate dbt_project/macros/xdm_source_models.sql"
    )


def test_the_shipped_sources_feed_xdm_as_before():
    refs = source_refs(load_staging_models())
    assert refs["xdm_profile_records"] == [
        "stg_crm__contacts",
        "stg_loyalty__members",
        "stg_support__tickets",
        "stg_webshop__orders",
    ]
    assert "stg_crm__contact_versions" in refs["xdm_identities"] and "stg_crm__contacts" not in refs["xdm_identities"]
    assert "stg_preferences__consents" not in refs["xdm_experience_events"]


def test_lineage_follows_names_then_declared_source_columns():
    lineage = SourceLineage()
    assert lineage.source_columns("stg_webshop__orders", "email") == ("email",)  # same name
    assert lineage.source_columns("stg_webshop__orders", "shop_customer_id") == ("customer_id",)  # renamed
    assert lineage.source_columns("stg_webshop__order_lines", "line_total") == ("quantity", "unit_price")
    assert lineage.source_columns("stg_crm__contacts", "source_file") == ()  # computed from none
    assert ("stg_loyalty__members", "first_name") in lineage.xdm["xdm_profile_records"]["person_name_first_name"]
    assert lineage.identifier_columns()["support__tickets"] == ["crm_contact_id", "email", "phone"]


def test_a_staging_column_that_matches_nothing_and_declares_nothing_is_refused():
    lineage = SourceLineage()
    lineage.staging_columns = {"stg_web__events": ["event_id", "cookie_id", "visit_minutes"]}
    with pytest.raises(SourceError) as error:
        lineage.check_columns()
    message = str(error.value)
    assert "stg_web__events" in message and "column visit_minutes" in message and "contract web__events" in message
    assert "source_column: <contract column>" in message and "[] when computed from none" in message


def test_an_unknown_contract_column_is_refused_with_the_contract_columns(project):
    edit(
        project,
        "pos",
        lambda m: column(m["stg_pos__transactions"], "transaction_total").update(
            config={"meta": {"source_column": "amount"}}
        ),
    )
    with pytest.raises(SourceError) as error:
        load_staging_models(project)
    message = str(error.value)
    assert "_pos__models.yml: model stg_pos__transactions" in message and "column transaction_total" in message
    assert "'amount'" in message and "total_amount" in message  # what was found and what exists


def test_an_unknown_profile_attribute_is_refused_with_the_allowed_list(project):
    edit(
        project,
        "loyalty",
        lambda m: cdp_meta(m["stg_loyalty__members"])["profile"].update(loyalty_level="loyalty_tier"),
    )
    with pytest.raises(SourceError) as error:
        load_staging_models(project)
    message = str(error.value)
    assert "cdp.profile.loyalty_level is not an XDM profile attribute" in message
    assert "person_birth_date" in message and "_xdm__models.yml" in message


def test_an_unknown_namespace_and_two_primary_identifiers_are_refused(project):
    edit(project, "esp", lambda m: cdp_meta(m["stg_esp__email_events"])["identifiers"][0].update(namespace="mail"))
    with pytest.raises(SourceError, match=r"namespace 'mail'; known namespaces: crm_id, .*identity_namespaces.csv"):
        load_staging_models(project)
    edit(project, "esp", lambda m: cdp_meta(m["stg_esp__email_events"])["identifiers"][0].update(namespace="email"))
    edit(project, "web", lambda m: cdp_meta(m["stg_web__events"])["identifiers"][1].update(primary=True))
    with pytest.raises(SourceError, match=r"stg_web__events: cdp.identifiers needs exactly one .* found 2: cookie_id"):
        load_staging_models(project)


def test_an_event_field_outside_the_catalogue_and_an_unknown_key_are_refused(project):
    edit(project, "sms", lambda m: cdp_meta(m["stg_sms__sms_events"])["event"]["fields"].update(campaign="campaign_id"))
    with pytest.raises(
        SourceError, match=r"cdp.event.fields.campaign is not an XDM event field; allowed: .*marketing_campaign_id"
    ):
        load_staging_models(project)
    edit(
        project,
        "sms",
        lambda m: cdp_meta(m["stg_sms__sms_events"]).update(
            event={"type": "x", "occurred_at": "occurred_at", "channel": "sms", "when": "occurred_at"}
        ),
    )
    with pytest.raises(SourceError, match=r"cdp.event has unknown key\(s\) when; allowed: type, occurred_at"):
        load_staging_models(project)


def test_a_column_the_meta_names_must_exist(project):
    edit(project, "support", lambda m: cdp_meta(m["stg_support__tickets"]).update(updated_at="closed_at"))
    with pytest.raises(SourceError, match=r"cdp.updated_at names column 'closed_at', which is neither listed"):
        load_staging_models(project)


def test_a_staging_model_without_yaml_gets_a_clear_error_not_a_key_error(project):
    folder = project / "models" / "staging" / "reviews"
    folder.mkdir()
    (folder / "stg_reviews__reviews.sql").write_text("select 1 as review_id\n")
    with pytest.raises(SourceError) as error:
        load_staging_models(project)
    assert "staging model stg_reviews__reviews has no YAML" in str(error.value)
    assert "reviews/_reviews__models.yml" in str(error.value)


def test_a_model_named_after_no_contract_must_declare_its_contract(project):
    edit(project, "crm", lambda m: cdp_meta(m["stg_crm__contacts"]).pop("contract"))
    assert load_staging_models(project)["stg_crm__contacts"].contract == "crm__contacts"  # named after it
    edit(project, "crm", lambda m: cdp_meta(m["stg_crm__contact_versions"]).pop("contract"))
    with pytest.raises(
        SourceError, match=r"reads contract 'crm__contact_versions' \(from its name\), which does not exist"
    ):
        load_staging_models(project)
