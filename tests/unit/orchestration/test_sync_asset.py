"""The sync asset in Dagster: a sync that delivers nothing it tried fails the asset (issue 19 item 3),
so the run is red in Dagster as in the CLI."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

import activation
from orchestration.assets.activation import build_sync_asset
from orchestration.resources import WarehouseResource


def test_a_sync_that_delivers_nothing_fails_its_asset(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TEST_HOOK_SECRET", "s3cret")
    spec_path = tmp_path / "refused.yml"
    spec_path.write_text(
        "name: refused\naudience: segments.seg_test\nprimary_key: profile_id\nmode: mirror\n"
        "fields:\n  profile_id: profile_id\n  email: email\n"
        "destination:\n  type: webhook\n  url: http://127.0.0.1:9/hook\n  secret_env: TEST_HOOK_SECRET\n"
        "  timeout_s: 0.5\n  max_attempts: 2\n  backoff_s: 0.01\n"
    )
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema segments")
        con.execute("create table segments.seg_test as select 'p1' as profile_id, 'a@example.com' as email")
    asset = build_sync_asset(activation.load_sync_spec(spec_path))
    with pytest.raises(dg.Failure, match="nothing delivered"):
        dg.materialize([asset], resources={"warehouse": WarehouseResource(path=str(warehouse))})
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select status from activation.sync_runs").fetchall() == [("failed",)]
