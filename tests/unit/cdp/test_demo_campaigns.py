"""The demo's campaigns (cdp/demo/campaigns.py, `cdp demo`): the simulated people answer what the campaign
syncs delivered, the effect campaign's with an extra purchase at the planted rate, the null campaign's not
at all; the generator's normal output stays byte for byte the same. The pipeline itself is replaced by a
recorder here (tests/e2e/test_campaigns.py runs it for real)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import polars as pl
from click.testing import CliRunner

from cdp.demo.campaigns import CAMPAIGN_EFFECTS, RESPONSE_PROBABILITY, write_campaign_responses
from cdp.demo.generator import generate_demo

AS_OF = dt.date(2026, 6, 30)


def digests(root) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def deliver(data_dir, persons: pl.DataFrame) -> None:
    """What the two campaign syncs would have written: every other person's email, phones to the SMS tool."""
    email_dir, sms_dir = data_dir / "destinations" / "email_offer", data_dir / "destinations" / "sms_reminder"
    email_dir.mkdir(parents=True, exist_ok=True)
    sms_dir.mkdir(parents=True, exist_ok=True)
    reached = persons[::2]
    (email_dir / "email_offer_to_esp__current.jsonl").write_text(
        "".join(json.dumps({"profile_id": f"x{i}", "email": e.upper()}) + "\n" for i, e in enumerate(reached["email"]))
    )
    pl.DataFrame({"profile_id": [f"y{i}" for i in range(reached.height)], "phone": reached["phone_e164"]}).write_csv(
        sms_dir / "sms_reminder_to_sms_tool__current.csv"
    )


def test_cdp_demo_sends_the_campaigns_four_weeks_earlier_then_runs_as_of_the_day(tmp_path, monkeypatch):
    import cdp.cli.pipeline as pipeline
    from cdp.cli import main

    data_dir = tmp_path / "data"
    monkeypatch.setenv("CDP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CDP_AS_OF", AS_OF.isoformat())
    runs: list[str] = []

    def run_pipeline_and_report() -> None:
        runs.append(pipeline.os.environ["CDP_AS_OF"])
        if len(runs) == 1:  # the launch run's syncs deliver
            deliver(data_dir, pl.read_csv(data_dir / "truth" / "persons.csv", infer_schema=False))

    monkeypatch.setattr(pipeline, "_run_pipeline_and_report", run_pipeline_and_report)
    result = CliRunner().invoke(main, ["demo", "--people", "400", "--seed", "5"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert runs == ["2026-06-02", "2026-06-30"], "launch as of four weeks earlier, then as of the day"
    assert "campaign summer_email_offer     reached 200 people" in result.output
    effects = {row["campaign"]: row for row in pl.read_csv(data_dir / "truth" / "campaign_effects.csv").to_dicts()}
    persons = pl.read_csv(data_dir / "truth" / "persons.csv", infer_schema=False)
    phones = set(persons[::2]["phone_e164"].to_list()) - {None, ""}
    assert effects["sms_reminder"]["receivers"] == persons.filter(pl.col("phone_e164").is_in(sorted(phones))).height
    assert effects["sms_reminder"]["responders"] == 0
    assert 5 <= effects["summer_email_offer"]["responders"] <= 40  # 0.10 of 200
    assert effects["summer_email_offer"]["exposed_at"] == "2026-06-03 00:00:00"

    # The normal output is what `cdp generate` writes for the same arguments; responses are extra files.
    plain = tmp_path / "plain"
    generate_demo(plain, people=400, seed=5, as_of=AS_OF)
    demo_files, plain_files = digests(data_dir / "landing"), digests(plain / "landing")
    extra = sorted(set(demo_files) - set(plain_files))
    assert extra == [
        "webshop/order_lines/order_lines_campaign_responses_2026-06-03.parquet",
        "webshop/orders/orders_campaign_responses_2026-06-03.jsonl",
    ]
    assert {name: demo_files[name] for name in plain_files} == plain_files


def test_responses_are_orders_of_the_reached_people_inside_the_window(tmp_path):
    generate_demo(tmp_path, people=2000, seed=3, as_of=AS_OF)
    persons = pl.read_csv(tmp_path / "truth" / "persons.csv", infer_schema=False)
    exposed_at = dt.datetime(2026, 6, 3)
    reached = persons[:1000]
    responses = write_campaign_responses(
        tmp_path, exposed_at, {"summer_email_offer": reached["email"].to_list(), "sms_reminder": ["+15550000000"]}
    )
    assert responses.receivers == {"summer_email_offer": 1000, "sms_reminder": 0}
    # 1000 Bernoulli(0.10) draws: 100 expected, 4 standard deviations either side.
    assert abs(responses.responders["summer_email_offer"] - 1000 * RESPONSE_PROBABILITY) < 4 * (1000 * 0.1 * 0.9) ** 0.5
    orders = pl.read_ndjson(responses.orders_file)
    assert orders.height == responses.responders["summer_email_offer"]
    assert set(orders["email"]) <= set(reached["email"]) and set(orders["status"]) == {"completed"}
    window = next(e.window_days for e in CAMPAIGN_EFFECTS if e.campaign == "summer_email_offer")
    times = orders["ordered_at"].str.to_datetime("%Y-%m-%dT%H:%M:%SZ")
    assert times.min() > exposed_at and times.max() < exposed_at + dt.timedelta(days=window)
    truth = pl.read_csv(tmp_path / "truth" / "campaign_responses.csv")
    assert set(truth.filter(pl.col("responded"))["order_id"]) == set(orders["order_id"])
    again = write_campaign_responses(
        tmp_path, exposed_at, {"summer_email_offer": reached["email"].to_list(), "sms_reminder": []}
    )
    assert again.responders == responses.responders, "same inputs, same responses"
