"""Alerts reach a real local webhook (Slack-compatible JSON) and a real local SMTP server (aiosmtpd),
driven by the Dagster sensors on real runs: a failed run names the failing step and its message; a
run that finished with a failed check or a sync with failed rows says which (issue 21.6)."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from cdp.alerts import Alert, AlertError, load_alert_config, send


class Webhook:
    """An HTTP server on 127.0.0.1 that accepts JSON posts like Slack's incoming webhooks."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"content_type": self.headers["Content-Type"], "json": json.loads(body)})
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"


@pytest.fixture()
def smtp():
    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd's controller checks its port by connecting: give it a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture()
def webhook():
    with Webhook() as server:
        yield server


def write_config(tmp_path: Path, smtp_port: int, monkeypatch, webhook_url: str) -> Path:
    config = tmp_path / "alerts.yml"
    config.write_text(
        f"""
channels:
  - name: data-team
    type: webhook
    url_env: TEST_ALERT_WEBHOOK_URL
  - name: on-call
    type: email
    smtp_host: 127.0.0.1
    smtp_port: {smtp_port}
    from: cdp@example.org
    to: [data-team@example.org, oncall@example.org]
"""
    )
    monkeypatch.setenv("TEST_ALERT_WEBHOOK_URL", webhook_url)
    monkeypatch.setenv("CDP_ALERTS_FILE", str(config))
    return config


def failing_run(instance: dg.DagsterInstance):
    @dg.asset(key=["raw", "crm__contacts"])
    def loads() -> None:
        raise ValueError("contract crm__contacts: column email missing in contacts_0001.csv")

    @dg.asset(deps=[loads], key=["staging", "stg_crm__contacts"])
    def downstream() -> None:
        pass

    job = dg.Definitions(assets=[loads, downstream]).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=False)


def test_a_failed_run_alerts_the_webhook_and_the_mailbox_with_its_reason(tmp_path, monkeypatch, webhook, smtp):
    from orchestration.sensors import alert_on_run_failure

    inbox, port = smtp
    write_config(tmp_path, port, monkeypatch, webhook.url)
    with dg.instance_for_test() as instance:
        result = failing_run(instance)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_event=failure, dagster_instance=instance, dagster_run=run
        ).for_run_failure()
        alert_on_run_failure(context)
    assert len(webhook.received) == 1
    posted = webhook.received[0]
    assert posted["content_type"] == "application/json"
    text = posted["json"]["text"]
    assert f"cdp run {result.run_id}" in text and "failed" in text.splitlines()[0]
    assert "raw/crm__contacts: ValueError: contract crm__contacts: column email missing in contacts_0001.csv" in text
    assert len(inbox.messages) == 1
    recipients, message = inbox.messages[0]
    assert sorted(recipients) == ["data-team@example.org", "oncall@example.org"]
    assert str(message["Subject"]).strip().startswith(f"[cdp] cdp run {result.run_id}")
    assert "column email missing" in message.get_content()


def test_failed_checks_and_incomplete_syncs_of_a_finished_run_alert(tmp_path, monkeypatch, webhook, smtp):
    from orchestration.sensors import alert_on_failed_checks_and_syncs

    inbox, port = smtp
    write_config(tmp_path, port, monkeypatch, webhook.url)

    @dg.asset(
        key=["raw", "web__events"],
        check_specs=[dg.AssetCheckSpec("fresh_within_contract", asset=dg.AssetKey(["raw", "web__events"]))],
    )
    def events():
        yield dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    passed=False,
                    severity=dg.AssetCheckSeverity.WARN,
                    description="newest occurred_at: 2026-05-01; contract allows 48 hours",
                )
            ]
        )

    @dg.asset(key=["activation", "lapsed_buyers_to_webhook"])
    def sync():
        return dg.MaterializeResult(metadata={"status": "partial", "sent": 990, "failed": 10, "rejected": 0})

    with dg.instance_for_test() as instance:
        job = dg.Definitions(assets=[events, sync]).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance)
        run = instance.get_run_by_id(result.run_id)
        success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_failed_checks_and_syncs",
            dagster_event=success,
            dagster_instance=instance,
            dagster_run=run,
        )
        alert_on_failed_checks_and_syncs(context)
    texts = [item["json"]["text"] for item in webhook.received]
    assert any("raw/web__events:fresh_within_contract (warn): newest occurred_at" in t for t in texts), texts
    assert any("sync lapsed_buyers_to_webhook: status partial, 10 row(s) failed" in t for t in texts), texts
    assert len(inbox.messages) == 2


def test_a_refused_delivery_names_the_channel_and_other_channels_still_get_it(tmp_path, monkeypatch, smtp):
    inbox, port = smtp
    with Webhook(status=500) as broken:
        write_config(tmp_path, port, monkeypatch, broken.url)
        with pytest.raises(
            AlertError, match=r"alert channel data-team: the webhook answered 500.*delivered to on-call"
        ):
            send(Alert("run_failure", "cdp run x failed", ("dbt model profiles: Binder Error",)))
    assert len(inbox.messages) == 1


def test_no_config_sends_nothing_and_a_bad_config_names_file_key_and_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_ALERTS_FILE", str(tmp_path / "alerts.yml"))
    with pytest.raises(AlertError, match="does not exist"):
        load_alert_config()
    monkeypatch.delenv("CDP_ALERTS_FILE")
    assert load_alert_config(tmp_path / "none.yml") is None
    bad = tmp_path / "alerts.yml"
    bad.write_text("channels:\n  - {name: x, type: slack, url_env: X}\n")
    with pytest.raises(AlertError, match=r"alerts.yml: channels\[0\].type: 'slack'; allowed: webhook, email"):
        load_alert_config(bad)
    bad.write_text("channels:\n  - {name: x, type: webhook, url: 'https://hooks.example/secret'}\n")
    with pytest.raises(AlertError, match=r"unknown key\(s\) url; allowed: name, type, url_env"):
        load_alert_config(bad)
    bad.write_text("channels:\n  - {name: x, type: webhook, url_env: UNSET_ALERT_URL_VARIABLE}\n")
    with pytest.raises(AlertError, match="UNSET_ALERT_URL_VARIABLE .* is not set"):
        send(Alert("run_failure", "t"), load_alert_config(bad))


def test_a_stale_serving_store_alerts_once(tmp_path, monkeypatch, webhook, smtp):
    from orchestration.assets.serving import serving_store_freshness_sensor

    inbox, port = smtp
    write_config(tmp_path, port, monkeypatch, webhook.url)
    monkeypatch.setenv("CDP_SERVING_STORE", str(tmp_path / "never-published.duckdb"))
    with dg.instance_for_test() as instance:
        first = serving_store_freshness_sensor(dg.build_sensor_context(instance=instance))
        again = serving_store_freshness_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert first.cursor == "nothing published" and again.cursor == first.cursor
    assert len(webhook.received) == 1 and len(inbox.messages) == 1
    assert "cdp serving store is stale" in webhook.received[0]["json"]["text"]
    assert "nothing published at" in webhook.received[0]["json"]["text"]
