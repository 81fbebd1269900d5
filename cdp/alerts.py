"""Alerts: tell people when a run, a blocking check, a sync or the serving store's freshness fails.

Configured in YAML (`alerts.yml` in the project, or the file CDP_ALERTS_FILE names); secrets only
through `*_env` keys naming environment variables, never in the file:

    channels:
      - name: data-team                # a Slack-compatible incoming webhook: POST {"text": ...}
        type: webhook
        url_env: CDP_ALERT_WEBHOOK_URL
      - name: on-call
        type: email                    # SMTP (STARTTLS and login when configured)
        smtp_host: smtp.example.com
        smtp_port: 587
        starttls: true
        username_env: CDP_SMTP_USER
        password_env: CDP_SMTP_PASSWORD
        from: cdp@example.com
        to: [data-team@example.com]
        events: [run_failure, sync_failure]   # optional; default every event

The Dagster sensors in orchestration/sensors.py build the alerts and call `send`; `cdp alerts test`
sends a test alert to every channel. Plain Python, no Dagster.
"""

from __future__ import annotations

import json
import os
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from cdp.errors import CdpError
from cdp.settings import PROJECT_ROOT

ALERTS_FILE_ENV = "CDP_ALERTS_FILE"
EVENTS = ("run_failure", "check_failure", "sync_failure", "freshness", "test")
CHANNEL_KEYS = {
    "webhook": ("name", "type", "url_env", "events", "timeout_s"),
    "email": (
        "name",
        "type",
        "smtp_host",
        "smtp_port",
        "starttls",
        "username_env",
        "password_env",
        "from",
        "to",
        "events",
        "timeout_s",
    ),
}


class AlertError(CdpError):
    """An alert configuration is invalid, or an alert could not be delivered."""


@dataclass(frozen=True)
class Alert:
    event: str  # one of EVENTS
    title: str
    lines: tuple[str, ...] = ()
    run_id: str | None = None

    def text(self) -> str:
        return "\n".join([self.title, *(f"• {line}" for line in self.lines)])


@dataclass(frozen=True)
class Channel:
    name: str
    type: str
    settings: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = EVENTS

    def secret(self, key: str, file: Path) -> str | None:
        variable = self.settings.get(key)
        if not variable:
            return None
        value = os.environ.get(str(variable))
        if not value:
            raise AlertError(
                f"alert channel {self.name} ({file}): environment variable {variable} ({key}) is not set or "
                f"empty; export it (secrets never sit in the file)"
            )
        return value


@dataclass(frozen=True)
class AlertConfig:
    file: Path
    channels: tuple[Channel, ...]


def alerts_file() -> Path:
    return Path(os.environ.get(ALERTS_FILE_ENV) or PROJECT_ROOT / "alerts.yml")


def _fail(file: Path, where: str, found: str, allowed: str) -> AlertError:
    return AlertError(f"{file}: {where}: {found}; allowed: {allowed}")


def load_alert_config(file: Path | None = None) -> AlertConfig | None:
    """The alert configuration, or None when there is no file (no alerts configured)."""
    file = file or alerts_file()
    if not file.exists():
        if os.environ.get(ALERTS_FILE_ENV):
            raise AlertError(f"{ALERTS_FILE_ENV} names {file}, which does not exist; create it or unset the variable")
        return None
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise AlertError(f"{file}: not valid YAML ({error})") from None
    if not isinstance(document, dict) or set(document) - {"channels"}:
        raise _fail(
            file, "top level", f"keys {sorted(document) if isinstance(document, dict) else document!r}", "channels"
        )
    channels = []
    for index, item in enumerate(document.get("channels") or []):
        where = f"channels[{index}]"
        if not isinstance(item, dict):
            raise _fail(file, where, repr(item), "a mapping with name and type")
        kind = item.get("type")
        if kind not in CHANNEL_KEYS:
            raise _fail(file, f"{where}.type", repr(kind), ", ".join(CHANNEL_KEYS))
        unknown = sorted(set(item) - set(CHANNEL_KEYS[kind]))
        if unknown:
            raise _fail(file, where, f"unknown key(s) {', '.join(unknown)}", ", ".join(CHANNEL_KEYS[kind]))
        required = ("name", "url_env") if kind == "webhook" else ("name", "smtp_host", "from", "to")
        missing = [key for key in required if not item.get(key)]
        if missing:
            raise _fail(file, where, f"missing {', '.join(missing)}", ", ".join(CHANNEL_KEYS[kind]))
        events = tuple(item.get("events") or EVENTS)
        bad = [event for event in events if event not in EVENTS]
        if bad:
            raise _fail(file, f"{where}.events", ", ".join(map(str, bad)), ", ".join(EVENTS))
        if kind == "email" and not isinstance(item["to"], list | str):
            raise _fail(file, f"{where}.to", repr(item["to"]), "an address or a list of addresses")
        settings = {k: v for k, v in item.items() if k not in ("name", "type", "events")}
        channels.append(Channel(str(item["name"]), kind, settings, (*events, "test")))
    return AlertConfig(file, tuple(channels))


def _post_webhook(channel: Channel, alert: Alert, file: Path) -> None:
    url = channel.secret("url_env", file)
    body = json.dumps({"text": alert.text()}).encode()  # Slack's incoming-webhook payload
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=float(channel.settings.get("timeout_s", 10))) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise AlertError(f"alert channel {channel.name}: the webhook answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise AlertError(f"alert channel {channel.name}: the webhook could not be reached ({error})") from None


def _send_email(channel: Channel, alert: Alert, file: Path) -> None:
    settings = channel.settings
    recipients = [settings["to"]] if isinstance(settings["to"], str) else [str(a) for a in settings["to"]]
    message = EmailMessage()
    message["Subject"] = f"[cdp] {alert.title}"
    message["From"] = str(settings["from"])
    message["To"] = ", ".join(recipients)
    message.set_content(alert.text())
    username, password = channel.secret("username_env", file), channel.secret("password_env", file)
    try:
        with smtplib.SMTP(
            str(settings["smtp_host"]), int(settings.get("smtp_port", 25)), timeout=float(settings.get("timeout_s", 10))
        ) as smtp:
            if settings.get("starttls"):
                smtp.starttls()
            if username:
                smtp.login(username, password or "")
            smtp.send_message(message, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as error:
        raise AlertError(
            f"alert channel {channel.name}: SMTP {settings['smtp_host']}:{settings.get('smtp_port', 25)} "
            f"refused or unreachable ({error})"
        ) from None


def send(alert: Alert, config: AlertConfig | None = None) -> list[str]:
    """Send the alert to every channel that takes its event; returns the channels reached. Tries every
    channel, then raises AlertError naming those that failed."""
    config = config if config is not None else load_alert_config()
    if config is None:
        return []
    reached, errors = [], []
    for channel in config.channels:
        if alert.event not in channel.events:
            continue
        try:
            (_post_webhook if channel.type == "webhook" else _send_email)(channel, alert, config.file)
            reached.append(channel.name)
        except AlertError as error:
            errors.append(str(error))
    if errors:
        raise AlertError("; ".join(errors) + (f" (delivered to {', '.join(reached)})" if reached else ""))
    return reached
