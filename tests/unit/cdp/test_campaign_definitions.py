"""Campaign definitions (dbt_project/campaigns/*.yml): checked against the project's audiences and syncs,
every mistake named with the file, the key, what was found and what to write; rendered into the
generated macro the analytics models read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import activation
from cdp.campaigns import CampaignError, load_campaigns, render_campaign_catalogue
from cdp.campaigns.definition import CATALOGUE_MACRO, Split, load_campaign, profile_event_columns
from cdp.settings import DBT_PROJECT_DIR, PROJECT_ROOT

VALID = """\
name: {name}
description: Test.
audience: email_offer_test
syncs: [email_offer_to_esp]
starts_at: 2026-06-01
ends_at: 2026-06-14
goal:
  description: A purchase.
  aggregate: count
  where: {{event_type: commerce.purchases, commerce_order_status: completed}}
  window_days: 14
"""
AUDIENCES = {
    "email_offer_test": (Split("email", 50, False), Split("holdout", 50, True)),
    "high_value": (),
    "likely_buyers": None,  # a SQL audience
    "all_holdout": (Split("holdout", 100, True),),
}


def load(tmp_path: Path, text: str, name: str = "test_campaign"):
    path = tmp_path / f"{name}.yml"
    path.write_text(text)
    return load_campaign(path, AUDIENCES, activation.load_sync_specs(), profile_event_columns())


def test_a_valid_definition_loads_with_its_audience_splits(tmp_path):
    campaign = load(tmp_path, VALID.format(name="test_campaign"))
    assert (campaign.audience, campaign.syncs, campaign.goal.window_days) == (
        "email_offer_test",
        ("email_offer_to_esp",),
        14,
    )
    assert campaign.goal.where == {"event_type": ("commerce.purchases",), "commerce_order_status": ("completed",)}
    assert [s.name for s in campaign.splits if s.is_holdout] == ["holdout"]
    assert str(campaign.starts_at) == "2026-06-01" and str(campaign.ends_at) == "2026-06-14"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("audience: email_offer_test", "audience: nowhere"), r"audience: found 'nowhere'; expected one of the"),
        (("audience: email_offer_test", "audience: high_value"), r"high_value, which has no holdout split"),
        (("audience: email_offer_test", "audience: likely_buyers"), r"likely_buyers, which has no holdout split"),
        (("audience: email_offer_test", "audience: all_holdout"), r"all_holdout, whose splits are all holdouts"),
        (("[email_offer_to_esp]", "[high_value_to_csv]"), r"sync high_value_to_csv, which sends segments.seg_high"),
        (("[email_offer_to_esp]", "[nope]"), r"syncs: found unknown sync 'nope'"),
        (("ends_at: 2026-06-14", "ends_at: 2026-05-14"), r"ends_at: found 2026-05-14, before starts_at 2026-06-01"),
        (("ends_at: 2026-06-14", "ends_at: soon"), r"ends_at: found 'soon'; expected a date, YYYY-MM-DD"),
        (("window_days: 14", "window_days: 0"), r"goal.window_days: found 0; expected a whole number of days 1..365"),
        (("aggregate: count", "aggregate: avg"), r"goal.aggregate: found 'avg'; expected one of count, sum"),
        (("aggregate: count", "aggregate: sum"), r"aggregate sum with neither `of` nor `measure`; expected one of"),
        (("aggregate: count", "aggregate: count\n  of: revenue"), r"`of`/`measure` with aggregate count"),
        (
            ("aggregate: count", "aggregate: sum\n  of: channel"),
            r"goal.of: found 'channel'; expected revenue or a numeric",
        ),
        (("event_type: commerce.purchases", "colour: red"), r"goal.where.colour: found an unknown column"),
        (("description: Test.", "descripton: Test."), r"unknown key\(s\) descripton; expected only name, description"),
    ],
)
def test_mistakes_name_the_file_the_key_and_what_to_write(tmp_path, change, message):
    old, new = change
    text = VALID.format(name="test_campaign")
    assert old in text
    with pytest.raises(CampaignError, match=message) as raised:
        load(tmp_path, text.replace(old, new))
    assert str(tmp_path / "test_campaign.yml") in str(raised.value)


def test_a_sync_that_sends_the_holdout_cannot_measure_a_campaign(tmp_path, monkeypatch):
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    spec = (activation.spec.SYNCS_DIR / "email_offer_to_esp.yml").read_text()
    (syncs / "email_offer_to_esp.yml").write_text(spec + "send_holdout: true\n")
    monkeypatch.setenv("CDP_SYNCS_DIR", str(syncs))
    with pytest.raises(CampaignError, match=r"send_holdout: true, which sends the holdout too"):
        load(tmp_path, VALID.format(name="test_campaign"))


def test_the_name_is_the_file_name(tmp_path):
    with pytest.raises(CampaignError, match=r"name: found 'other'; expected 'test_campaign'"):
        load(tmp_path, VALID.format(name="other"))


def test_the_generated_catalogue_is_up_to_date():
    """macros/campaign_catalogue.sql is generated from dbt_project/campaigns/: committed stale, the
    analytics models would measure campaigns that are no longer declared."""
    assert (DBT_PROJECT_DIR / CATALOGUE_MACRO).read_text() == render_campaign_catalogue(load_campaigns()), (
        "run any cdp command (e.g. `cdp campaigns list`) to regenerate dbt_project/macros/campaign_catalogue.sql"
    )


def test_the_demo_campaigns_measure_one_sync_each_against_a_half_holdout():
    campaigns = {c.name: c for c in load_campaigns()}
    assert set(campaigns) == {"summer_email_offer", "sms_reminder"}
    assert campaigns["sms_reminder"].goal.of == "revenue"
    for campaign in campaigns.values():
        assert {(s.percent, s.is_holdout) for s in campaign.splits} == {(50, False), (50, True)}


def test_the_cli_reports_a_broken_definition_in_one_line(tmp_path):
    (tmp_path / "broken.yml").write_text(VALID.format(name="broken").replace("window_days: 14", "window_days: x"))
    result = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "campaigns", "list"],
        cwd=PROJECT_ROOT,
        env={**__import__("os").environ, "CDP_CAMPAIGNS_DIR": str(tmp_path), "CDP_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: campaign {tmp_path / 'broken.yml'}: goal.window_days: found 'x'")
    assert "Traceback" not in result.stderr


def test_a_wrong_campaign_fails_only_itself(tmp_path):
    """One broken file is left out and named; the other campaigns still load (and are measured)."""
    (tmp_path / "good.yml").write_text(VALID.format(name="good"))
    (tmp_path / "broken.yml").write_text(
        VALID.format(name="broken").replace("syncs: [email_offer_to_esp]", "syncs: [nope]")
    )
    broken: dict = {}
    assert [c.name for c in load_campaigns(tmp_path, broken=broken)] == ["good"]
    assert list(broken) == ["broken"] and "syncs: found unknown sync 'nope'" in str(broken["broken"])
    with pytest.raises(CampaignError, match="unknown sync 'nope'"):
        load_campaigns(tmp_path)


def test_the_catalogue_does_not_depend_on_which_syncs_are_configured(tmp_path, monkeypatch):
    """`cdp sync` with another CDP_SYNCS_DIR (as tests and operators use) prepares the dbt manifest,
    which rewrites the catalogue: it must not drop the campaigns whose syncs that directory lacks (nor
    fail the command). The campaigns check names the missing sync."""
    monkeypatch.setenv("CDP_SYNCS_DIR", str(tmp_path))
    committed = (DBT_PROJECT_DIR / CATALOGUE_MACRO).read_text()
    assert render_campaign_catalogue(load_campaigns(broken={}, check_syncs=False)) == committed
    broken: dict = {}
    assert load_campaigns(broken=broken) == []
    assert "unknown sync 'email_offer_to_esp'; expected one of (no syncs)" in str(broken["summer_email_offer"])
