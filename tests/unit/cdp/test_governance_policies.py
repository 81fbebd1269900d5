"""Data-usage labels and policies: expressions, defaults, label lineage to audiences, the pre-sync
gate, `cdp policy check`, the global suppression list and the audit log of decisions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

import activation
from activation import ActivationError, load_sync_spec
from activation.policies import (
    ColumnLabels,
    PolicyError,
    evaluate_policies,
    load_policies,
    load_policy_file,
    parse_label_expression,
)
from activation.suppression import sha256, suppress
from cdp.governance.labels import LabelLineage, column_labels, refresh_column_labels
from cdp.governance.policy_check import check_all
from data_contracts.contract import CONTRACTS_DIR

SYNC = """\
name: {name}
audience: segments.seg_high_value
primary_key: profile_id
fields:
{fields}
destination: {{type: file, format: csv, path: out}}
marketing_actions: {actions}
"""


def write_spec(tmp_path: Path, name: str, fields: dict[str, str], actions: list[str]) -> activation.SyncSpec:
    path = tmp_path / f"{name}.yml"
    path.write_text(
        SYNC.format(name=name, fields="\n".join(f"  {k}: {v}" for k, v in fields.items()), actions=json.dumps(actions))
    )
    return load_sync_spec(path)


def test_label_expressions_and_or_with_precedence_and_parentheses():
    labels = frozenset({"C3", "I1"})
    assert parse_label_expression("C2 OR C3 AND I1").witness(labels) == {"C3", "I1"}  # AND binds tighter
    assert parse_label_expression("(C2 OR C3) AND S1").witness(labels) is None
    assert parse_label_expression("C2 OR custom:partner").witness(frozenset({"custom:partner"})) == {"custom:partner"}
    assert parse_label_expression("C3 and I1").witness(labels) == {"C3", "I1"}  # operators are case-insensitive


@pytest.mark.parametrize(
    "text, found", [("C2 AND", "the end"), ("(C2 OR C3", "the end"), ("C13", "'C13'"), ("C2 C3", "'C3'"), ("", "")]
)
def test_bad_label_expressions_are_refused_with_what_was_found(text, found):
    with pytest.raises(PolicyError) as error:
        parse_label_expression(text, "policies.yml: policies[0].when")
    assert "policies.yml: policies[0].when" in str(error.value) and found in str(error.value)


def test_bad_policy_files_name_the_file_and_the_path(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("policies:\n  - name: p\n    deny: [teleport]\n    when: C2\n")
    with pytest.raises(PolicyError, match=r"bad.yml: policies\[0\] \(p\).deny: marketing action 'teleport'"):
        load_policy_file(path)
    path.write_text("policies:\n  - name: p\n    deny: [analytics]\n    when: C2 OR\n")
    with pytest.raises(PolicyError, match=r"bad.yml: policies\[0\] \(p\).when"):
        load_policy_file(path)
    path.write_text("policies:\n  - name: p\n    deny: [analytics]\n")
    with pytest.raises(PolicyError, match="missing key.s. when"):
        load_policy_file(path)


def test_sync_specs_refuse_unknown_marketing_actions(tmp_path):
    with pytest.raises(ActivationError, match="marketing action 'spam' is unknown"):
        write_spec(tmp_path, "s", {"profile_id": "profile_id"}, ["spam"])
    assert write_spec(tmp_path, "s", {"profile_id": "profile_id"}, ["custom:call_centre"]).marketing_actions == (
        "custom:call_centre",
    )


def test_default_policies_third_party_export_and_sensitive_ad_targeting():
    policies = load_policies()
    third_party = {
        "seg.email": ColumnLabels(
            frozenset({"I1", "custom:third_party"}), {"custom:third_party": ("partner__leads.email",)}
        )
    }
    found = evaluate_policies(third_party, ["export_to_third_party", "email_targeting"], policies)
    assert [(v.policy, v.marketing_action, v.label, v.column, v.sources) for v in found] == [
        (
            "third_party_data_never_exported_to_third_parties",
            "export_to_third_party",
            "custom:third_party",
            "seg.email",
            ("partner__leads.email",),
        )
    ]
    sensitive = {"seg.city": ColumnLabels(frozenset({"S2"}), {"S2": ("crm__contacts.city",)})}
    denied = {
        (v.policy, v.marketing_action)
        for v in evaluate_policies(
            sensitive, ["onsite_advertising", "cross_site_targeting", "email_targeting"], policies
        )
    }
    assert denied == {
        ("sensitive_data_never_used_for_ad_targeting", "onsite_advertising"),
        ("sensitive_data_never_used_for_ad_targeting", "cross_site_targeting"),
    }


def test_an_and_policy_needs_both_labels_across_the_columns_used():
    policies = load_policies()
    pseudonymous = {"seg.score": ColumnLabels(frozenset({"C3"}), {"C3": ("partner__scores.score",)})}
    assert not [v for v in evaluate_policies(pseudonymous, ["email_targeting"], policies)]
    with_email = {**pseudonymous, "seg.email": ColumnLabels(frozenset({"I1"}), {"I1": ("crm__contacts.email",)})}
    found = evaluate_policies(with_email, ["email_targeting"], policies)
    assert {(v.policy, v.label, v.column) for v in found} == {
        ("restrict_combining_with_pii", "C3", "seg.score"),
        ("restrict_combining_with_pii", "I1", "seg.email"),
    }


@pytest.fixture(scope="module")
def labelled_contracts(tmp_path_factory):
    """The shipped contracts, with loyalty members bought from a partner (party: third) and email
    campaigns labelled C9 (no data science)."""
    directory = tmp_path_factory.mktemp("contracts")
    for path in CONTRACTS_DIR.glob("*.yml"):
        shutil.copy(path, directory / path.name)
    loyalty = yaml.safe_load((directory / "loyalty__members.yml").read_text())
    loyalty["party"] = "third"
    (directory / "loyalty__members.yml").write_text(yaml.safe_dump(loyalty, sort_keys=False))
    esp = yaml.safe_load((directory / "esp__email_events.yml").read_text())
    esp["columns"]["campaign_id"]["labels"] = ["C9"]
    (directory / "esp__email_events.yml").write_text(yaml.safe_dump(esp, sort_keys=False))
    return directory


def test_labels_reach_profile_and_audience_columns_with_their_sources(labelled_contracts, monkeypatch):
    monkeypatch.setenv("CDP_CONTRACTS_DIR", str(labelled_contracts))
    lineage = LabelLineage()
    labels, sources = column_labels("seg_high_value", "email", lineage)
    assert labels == ["I1", "custom:third_party"]
    assert sources["custom:third_party"] == ["loyalty__members.email"]
    assert "crm__contacts.email" in sources["I1"]
    # A trait computed from events inherits their usage label, not their identity labels.
    trait_labels, trait_sources = column_labels("profile_traits", "emails_opened", lineage)
    assert trait_labels == ["C9"] and trait_sources["C9"] == ["esp__email_events.campaign_id"]
    # The birth date comes from the CRM and from the (here third-party) loyalty export.
    birth_date_labels, birth_date_sources = column_labels("profiles", "birth_date", lineage)
    assert birth_date_labels == ["I2", "custom:third_party"]
    assert birth_date_sources["custom:third_party"] == ["loyalty__members.birth_date"]
    assert column_labels("profiles", "profile_id", lineage)[0] == []


@pytest.fixture
def audience_warehouse(tmp_path, labelled_contracts, monkeypatch):
    monkeypatch.setenv("CDP_CONTRACTS_DIR", str(labelled_contracts))
    monkeypatch.setenv("CDP_ACTOR", "policy-test")
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema profiles; create schema segments")
    con.execute("create table profiles.profiles (profile_id varchar, is_known boolean, email varchar)")
    con.execute(
        "create table profiles.profile_traits (profile_id varchar, lifetime_revenue decimal(18,2), "
        "emails_opened bigint)"
    )
    con.execute(
        "create table segments.seg_high_value (profile_id varchar, email varchar, "
        "lifetime_revenue decimal(18,2), emails_opened bigint)"
    )
    con.execute(
        "insert into segments.seg_high_value values ('p1', 'ana@example.com', 1200, 3), "
        "('p2', 'bo@example.com', 1500, 0)"
    )
    refresh_column_labels(con)
    yield con
    con.close()


def test_the_pre_sync_gate_blocks_a_violating_sync_and_sends_nothing(audience_warehouse, tmp_path):
    con = audience_warehouse
    spec = write_spec(
        tmp_path, "partner_export", {"profile_id": "profile_id", "email": "email"}, ["export_to_third_party"]
    )
    with pytest.raises(ActivationError) as error:
        activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    message = str(error.value)
    assert "third_party_data_never_exported_to_third_parties" in message and "custom:third_party" in message
    assert "segments.seg_high_value.email (exported as email)" in message and "loyalty__members.email" in message
    assert not (tmp_path / "out").exists()
    # Nothing sent or held; the run is recorded as blocked with the reason.
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 0
    assert con.execute("select count(*) from activation.sync_ledger").fetchone()[0] == 0
    status, recorded = con.execute("select status, message from activation.sync_runs").fetchone()
    assert status == "blocked" and "third_party_data_never_exported_to_third_parties" in recorded
    actor, outcome, details = con.execute(
        "select actor, outcome, details from audit.events where action = 'policy_decision'"
    ).fetchone()
    assert (actor, outcome) == ("policy-test", "denied") and "loyalty__members.email" in details


def test_fields_the_audience_uses_count_even_when_not_exported(audience_warehouse, tmp_path, monkeypatch):
    con = audience_warehouse
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yml").write_text(
        "policies:\n  - name: no_data_science_on_campaign_data\n    deny: [data_science]\n    when: C9\n"
    )
    monkeypatch.setenv("CDP_POLICIES_DIR", str(policies))
    spec = write_spec(tmp_path, "lab", {"profile_id": "profile_id", "emails_opened": "emails_opened"}, ["data_science"])
    with pytest.raises(ActivationError, match=r"label C9 on column segments.seg_high_value.emails_opened"):
        activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    allowed = write_spec(tmp_path, "crm", {"profile_id": "profile_id", "email": "email"}, ["email_targeting"])
    result = activation.run_sync(con, allowed, run_id="r2", base_dir=tmp_path)
    assert result.sent == 2
    events = con.execute("select action, outcome from audit.events order by occurred_at").fetchall()
    assert events == [
        ("policy_decision", "denied"),
        ("sync_run", "blocked"),
        ("policy_decision", "allowed"),
        ("sync_run", "succeeded"),
    ]


def test_policy_check_lists_every_violation_of_syncs_and_audiences(audience_warehouse, tmp_path):
    con = audience_warehouse
    specs = {
        "partner_export": write_spec(
            tmp_path, "partner_export", {"profile_id": "profile_id"}, ["export_to_third_party"]
        ),
        "undeclared": write_spec(tmp_path, "undeclared", {"profile_id": "profile_id"}, []),
    }
    report = check_all(con, specs)
    # The sync exports only the profile id: clean. The audience holds a third-party email: reported.
    assert not [v for v in report.violations if v.subject.startswith("sync")]
    assert {(v.subject, v.label, v.column) for v in report.violations} == {
        ("audience segments.seg_high_value", "custom:third_party", "segments.seg_high_value.email")
    }
    assert report.undeclared == ["undeclared"]
    assert "1 violation(s) over 2 sync(s) and 1 audience(s)" in report.lines()[-1]


def test_the_global_suppression_list_applies_to_every_sync(audience_warehouse, tmp_path):
    con = audience_warehouse
    spec = write_spec(tmp_path, "crm", {"profile_id": "profile_id", "email": "email"}, ["email_targeting"])
    assert activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path).sent == 2
    suppress(con, {sha256("bo@example.com"): "email"}, reason="do_not_contact")
    result = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (result.suppressed, result.removed, result.unchanged) == (1, 1, 1)
    held = [k for (k,) in con.execute("select record_key from activation.sync_state").fetchall()]
    assert held == ["p1"]
    assert "bo@example.com" not in (tmp_path / "out" / "crm__current.csv").read_text()


def test_every_synced_audience_has_a_blocking_policy_check_in_dagster():
    from orchestration.definitions import defs

    checks = {
        key.asset_key.to_user_string()
        for key in defs.resolve_asset_graph().asset_check_keys
        if key.name == "data_usage_policies"
    }
    audiences = {spec.audience.replace(".", "/") for spec in activation.load_sync_specs().values()}
    assert checks == audiences


def test_labels_are_computed_once_per_build_and_again_when_a_column_or_contract_changes(
    audience_warehouse, labelled_contracts, tmp_path, monkeypatch
):
    """Every sync and policy check of a run refreshes the labels; only the first after a change computes them."""
    import cdp.governance.labels as labels_module

    computed = []

    class CountingLineage(LabelLineage):
        def __init__(self, *args, **kwargs):
            computed.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(labels_module, "LabelLineage", CountingLineage)
    con = audience_warehouse
    before = con.execute("select * from governance.column_labels order by all").fetchall()
    assert refresh_column_labels(con) == len(before) and refresh_column_labels(con) == len(before)
    assert computed == [] and con.execute("select * from governance.column_labels order by all").fetchall() == before
    # A new column of the build: labelled by the next refresh.
    con.execute("alter table segments.seg_high_value add column phone varchar")
    refresh_column_labels(con)
    assert computed == [1]
    phone = con.execute(
        "select labels from governance.column_labels where model = 'seg_high_value' and column_name = 'phone'"
    ).fetchone()
    assert phone is not None and "I1" in phone[0]
    # A contract changed (first-party loyalty again): the labels are computed from it.
    contracts = tmp_path / "contracts_changed"
    shutil.copytree(labelled_contracts, contracts)
    loyalty = yaml.safe_load((contracts / "loyalty__members.yml").read_text())
    loyalty["party"] = "first"
    (contracts / "loyalty__members.yml").write_text(yaml.safe_dump(loyalty, sort_keys=False))
    monkeypatch.setenv("CDP_CONTRACTS_DIR", str(contracts))
    refresh_column_labels(con)
    assert computed == [1, 1]
    email = con.execute(
        "select labels from governance.column_labels where model = 'seg_high_value' and column_name = 'email' "
        "and usage = 'output'"
    ).fetchone()[0]
    assert "custom:third_party" not in email
