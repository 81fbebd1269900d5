"""A file beyond its contract's reject rate blocks its table until the data is fixed or the failure is
accepted, not for one run only (issue 19 item 15). A file that could not be read at all is a warning
that stays until it is delivered again or accepted; it never blocks."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

import data_contracts
from data_contracts import load_contract
from orchestration.assets.sources import FILES_READABLE, REJECT_RATE, source_load_checks

CONTRACT = """\
source: shop
table: orders
primary_key: [order_id]
max_reject_rate: 0.1
columns:
  order_id: {type: string, required: true}
  total_amount: {type: decimal, required: true, max: 100}
"""


def orders_csv(good: int, bad: int, start: int = 0) -> str:
    lines = [f"O{start + i},{'1.00' if i < good else '500.00'}" for i in range(good + bad)]
    return "order_id,total_amount\n" + "\n".join(lines) + "\n"


@pytest.fixture
def setup(tmp_path: Path):
    contracts_dir = tmp_path / "contracts"
    contracts_dir.mkdir()
    (contracts_dir / "shop__orders.yml").write_text(CONTRACT)
    contract = load_contract(contracts_dir / "shop__orders.yml")
    landing = tmp_path / "landing"
    (landing / "shop" / "orders").mkdir(parents=True)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    return contract, landing, con


def drop(landing: Path, name: str, text: str) -> None:
    (landing / "shop" / "orders" / name).write_text(text)


def checks(con, contract, landing, load_id: str) -> dict[str, dg.AssetCheckResult]:
    report = data_contracts.load_table(con, contract, landing, load_id=load_id)
    return {check.check_name: check for check in source_load_checks(contract, report)}


def test_a_reject_rate_failure_stays_failed_while_nothing_new_arrives(setup):
    contract, landing, con = setup
    drop(landing, "a.csv", orders_csv(good=8, bad=2))  # 20% > 10%
    first = checks(con, contract, landing, "run-1")[REJECT_RATE]
    assert not first.passed and first.severity == dg.AssetCheckSeverity.ERROR

    second = checks(con, contract, landing, "run-2")[REJECT_RATE]  # nothing new to load
    assert not second.passed, "a blocking failure must not pass on the next run"
    assert "shop/orders/a.csv" in second.description and "cdp quarantine accept" in second.description

    drop(landing, "b.csv", orders_csv(good=10, bad=0, start=100))  # a good file does not fix a bad one
    assert not checks(con, contract, landing, "run-3")[REJECT_RATE].passed


def test_delivering_the_corrected_file_again_clears_the_failure(setup):
    contract, landing, con = setup
    drop(landing, "a.csv", orders_csv(good=8, bad=2))
    assert not checks(con, contract, landing, "run-1")[REJECT_RATE].passed
    drop(landing, "a.csv", orders_csv(good=10, bad=0))  # same name, fixed content
    assert checks(con, contract, landing, "run-2")[REJECT_RATE].passed


def test_a_contract_fix_and_a_replay_clear_the_failure(setup, tmp_path):
    contract, landing, con = setup
    drop(landing, "a.csv", orders_csv(good=8, bad=2))
    assert not checks(con, contract, landing, "run-1")[REJECT_RATE].passed
    fixed = tmp_path / "fixed" / "shop__orders.yml"
    fixed.parent.mkdir()
    fixed.write_text(CONTRACT.replace("max: 100", "max: 1000"))
    fixed_contract = load_contract(fixed)
    data_contracts.replay_quarantine(con, fixed_contract, load_id="replay-1")
    assert checks(con, fixed_contract, landing, "run-2")[REJECT_RATE].passed


def test_an_accepted_failure_passes_and_the_acceptance_is_recorded(setup):
    contract, landing, con = setup
    drop(landing, "a.csv", orders_csv(good=8, bad=2))
    assert not checks(con, contract, landing, "run-1")[REJECT_RATE].passed
    data_contracts.accept_file(
        con, contract, "shop/orders/a.csv", reason="known bad export, ticket 42", accepted_by="ana"
    )
    assert checks(con, contract, landing, "run-2")[REJECT_RATE].passed
    assert con.execute("select file_path, reason, accepted_by from audit.load_acceptances").fetchall() == [
        ("shop/orders/a.csv", "known bad export, ticket 42", "ana")
    ]
    drop(landing, "b.csv", orders_csv(good=5, bad=5, start=100))  # a new bad file blocks again
    assert not checks(con, contract, landing, "run-3")[REJECT_RATE].passed


def test_accepting_a_file_that_is_not_failing_says_so(setup):
    contract, landing, con = setup
    drop(landing, "a.csv", orders_csv(good=8, bad=2))
    checks(con, contract, landing, "run-1")
    with pytest.raises(data_contracts.ContractError, match=r"shop/orders/nope.csv.*nothing to accept.*a.csv"):
        data_contracts.accept_file(con, contract, "shop/orders/nope.csv", reason="x", accepted_by="ana")


def test_a_file_rejected_whole_warns_until_delivered_again(setup):
    contract, landing, con = setup
    drop(landing, "a.csv", "order_id\nO1\n")  # a required column missing: rejected whole
    first = checks(con, contract, landing, "run-1")
    assert first[REJECT_RATE].passed, "a file rejected whole changed nothing: it does not block"
    assert not first[FILES_READABLE].passed and first[FILES_READABLE].severity == dg.AssetCheckSeverity.WARN
    assert "shop/orders/a.csv" in first[FILES_READABLE].description
    assert not checks(con, contract, landing, "run-2")[FILES_READABLE].passed, "the warning stays"
    drop(landing, "a.csv", orders_csv(good=3, bad=0))
    assert checks(con, contract, landing, "run-3")[FILES_READABLE].passed


def test_cdp_quarantine_status_and_accept(setup, tmp_path):
    from cdp.cli.app import main

    contract, landing, con = setup
    drop(landing, "a.csv", orders_csv(good=8, bad=2))
    data_contracts.load_table(con, contract, landing, load_id="run-1")
    con.close()
    env = {
        "CDP_DATA_DIR": str(tmp_path),
        "CDP_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "CDP_CONTRACTS_DIR": str(contract.path.parent),
    }
    runner = CliRunner()
    status = runner.invoke(main, ["quarantine", "status"], env=env)
    assert status.exit_code == 0, status.output
    assert "shop__orders" in status.output and "shop/orders/a.csv" in status.output and "20.00%" in status.output

    refused = runner.invoke(main, ["quarantine", "accept", "shop__orders", "shop/orders/a.csv"], env=env)
    assert refused.exit_code != 0 and "--reason" in refused.output

    accepted = runner.invoke(
        main, ["quarantine", "accept", "shop__orders", "shop/orders/a.csv", "--reason", "ticket 42"], env=env
    )
    assert accepted.exit_code == 0, accepted.output
    assert "accepted" in accepted.output
    assert "nothing blocks" in runner.invoke(main, ["quarantine", "status"], env=env).output
