"""Encryption at rest, the whole pipeline (issue 19 item 10): with CDP_WAREHOUSE_ENCRYPTION_KEY set,
`cdp run` loads, builds, syncs every destination and publishes; the warehouse and the serving store
hold no plaintext identifier; a following `cdp sync` finds nothing to send (the first run's syncs were
committed, not re-sent in full). tests/unit/cdp/test_encryption.py covers the file format alone."""

from __future__ import annotations

import duckdb
import polars as pl

from cdp.warehouse import ENCRYPTION_KEY_ENV, attach
from support.workspace import DEMO_AS_OF, Workspace

KEY = "encrypted pipeline test key 7f3a"
PEOPLE = 1000  # with seed 3 (as test_add_a_source): reject rates within the contracts


def test_the_whole_pipeline_runs_encrypted_and_publishes_and_syncs(make_workspace):
    workspace = Workspace(make_workspace("encrypted").data_dir, {ENCRYPTION_KEY_ENV: KEY})
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", "3", "--as-of", DEMO_AS_OF)
    workspace.cdp("run")
    with duckdb.connect(":memory:") as con:
        attach(con, workspace.warehouse, "warehouse", read_only=True, key=KEY)
        attach(con, workspace.serving_store, "store", read_only=True, key=KEY)
        runs = con.execute(
            "select sync_name, status, sent, failed from warehouse.activation.sync_runs order by 1"
        ).fetchall()
        held = dict(
            con.execute("select sync_name, count(*) from warehouse.activation.sync_state group by 1").fetchall()
        )
        published = con.execute("select count(*) from store.serving.publications").fetchone()[0]
        profiles = con.execute("select count(*) from store.profiles.profiles").fetchone()[0]
    assert runs and all(status == "succeeded" and failed == 0 for _, status, _, failed in runs), runs
    assert {name: sent for name, _, sent, _ in runs} == held, "every row sent is committed in the state"
    assert published == 1 and profiles > 0
    emails = pl.read_csv(workspace.data_dir / "truth" / "persons.csv", infer_schema=False)["email"].drop_nulls()
    sample = [e.lower().encode() for e in emails.head(50)]
    for path in (workspace.warehouse, workspace.serving_store):
        data = path.read_bytes().lower()
        assert not [e for e in sample if e in data], f"{path.name} holds plaintext emails"
    again = workspace.cdp("sync")
    for line in again.stdout.splitlines():
        assert "sent       0" in line, f"the second sync re-sent rows: {line}"
