"""The CLI as an operator meets it: live progress on a terminal and silence in a pipe, expected errors
as one line without a traceback, and `cdp profile show` laid out for a 120-column terminal (issue 21)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from support.workspace import DEMO_AS_OF, PROJECT_ROOT


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("CDP_PROGRESS", "COLUMNS")},
        "CDP_DATA_DIR": str(data_dir),
        "CDP_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "CDP_SERVING_STORE": str(data_dir / "serving" / "published.duckdb"),
        "CDP_AS_OF": DEMO_AS_OF,
        **extra,
    }


def cdp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdp.cli", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def on_a_terminal(env: dict[str, str], *args: str) -> str:
    """Run `cdp ARGS` with stdout and stderr on a pseudo-terminal; everything it drew."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", *args],
        cwd=PROJECT_ROOT,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=600)
    os.close(leader)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def small_landing(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("progress")
    result = cdp(env_for(data_dir), "generate", "--people", "60", "--seed", "5", "--as-of", DEMO_AS_OF)
    assert result.returncode == 0, result.stderr
    return data_dir


def test_load_shows_live_progress_on_a_terminal_and_nothing_in_a_pipe(small_landing, tmp_path):
    drawn = on_a_terminal(env_for(small_landing), "load", "--no-expectations")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    # The live display: the command, the stage (step n of N: one per source table), elapsed time.
    assert "cdp load" in plain and re.search(r"step \d+ of 11", plain) and "elapsed 0:" in plain, plain[-2000:]
    assert "load crm__contacts" in plain

    piped = cdp(env_for(small_landing), "load", "--no-expectations")
    assert piped.returncode == 0, piped.stderr
    assert "step " not in piped.stderr and "elapsed" not in piped.stderr and "\x1b[" not in piped.stderr + piped.stdout
    assert "crm__contacts" in piped.stdout  # the per-table lines are still printed


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode not in (0, 1), (result.returncode, result.stdout, result.stderr)
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    return message


def test_expected_errors_are_one_message_without_a_traceback(tmp_path):
    # A missing data folder: named, nothing created.
    missing = tmp_path / "no" / "such" / "data"
    message = one_line_error(cdp(env_for(missing), "load"))
    assert f"no landing folder at {missing / 'landing'}" in message and "CDP_DATA_DIR" in message
    assert not missing.exists()
    message = one_line_error(cdp(env_for(missing), "segments", "list"))
    assert f"no warehouse at {missing / 'warehouse.duckdb'}" in message

    # A wrong encryption key on a plain warehouse.
    import duckdb

    data_dir = tmp_path / "plain"
    data_dir.mkdir()
    duckdb.connect(str(data_dir / "warehouse.duckdb")).close()
    message = one_line_error(cdp(env_for(data_dir, CDP_WAREHOUSE_ENCRYPTION_KEY="not-the-key"), "segments", "list"))
    assert "CDP_WAREHOUSE_ENCRYPTION_KEY does not open it" in message

    # An invalid sync spec: the file, what was found and what to do; a valid sync is not held up by it.
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    (syncs / "typo.yml").write_text(
        "name: typo\naudience: segments.seg_high_value\nprimary_key: profile_id\nmode: mirorr\n"
        "fields: {id: profile_id}\ndestination: {type: file, format: csv, path: out/typo}\n"
    )
    result = cdp(env_for(data_dir, CDP_SYNCS_DIR=str(syncs)), "sync", "typo")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "typo.yml" in result.stderr and "mirorr" in result.stderr and "mirror" in result.stderr, result.stderr


def test_profile_show_fits_120_columns_and_reads_top_factors_as_words():
    from cdp.serving.profile_card import render_profile

    stamp = "2025-08-17T12:39:13Z"
    document = {
        "profile_id": "prf_0123456789abcdef",
        "published_run_id": "6462db18-ae55-48d8-b5d7-d3611f88ece6",
        "identities": [
            {
                "namespace": "email",
                "value": "a.very.long.email.address.of.someone@subdomain.example-company.com",
                "first_seen_at": "2024-12-20T19:42:30Z",
                "last_seen_at": stamp,
                "record_count": 1234,
                "source_tables": "crm__contacts,preferences__consents,webshop__orders,esp__email_events,support__tickets",
            }
        ],
        "attributes": {
            "profile_id": "prf_0123456789abcdef",
            "first_name": "Maximiliane-Theresa",
            "street": "1 Long Road",
        },
        "attribute_sources": {
            "first_name": {
                "record_id": "loyalty__members:LOYALTY-MEMBER-000000012345",
                "merge_rule": "source_precedence",
                "updated_at": stamp,
                "source_table": "loyalty__members",
            }
        },
        "consents": [{"purpose": "marketing_email", "value": "y", "decided_at": stamp}],
        "traits": {"last_purchase_at": stamp, "lifetime_revenue": 754.39},
        "predictions": {
            "purchase_top_factors_30d": '[{"feature": "days_since_last_purchase", "value": 12.0, "direction": "down"},'
            ' {"feature": "orders_90d", "value": 3.0, "direction": "up"},'
            ' {"feature": "email_clicks_30d", "value": 0.0, "direction": "down"}]',
            "churn_top_factors_90d": [{"feature": "tenure_days", "value": 400.0, "direction": "up"}],
        },
        "segments": [f"audience_number_{i}" for i in range(12)],
        "recent_events": [
            {
                "occurred_at": stamp,
                "event_type": "directMarketing.emailClicked",
                "channel": "email",
                "source_table": "esp__email_events",
                "order_total": None,
                "currency_code": None,
            }
        ],
    }
    text = render_profile(document, width=120)
    too_long = [line for line in text.splitlines() if len(line) > 120]
    assert not too_long, too_long
    for line in text.splitlines():  # a timestamp is never cut at the end of a line
        assert not re.search(r"\d{4}-\d{2}-\d{2}T?$", line) and not re.match(r"\s*\d{2}:\d{2}:\d{2}Z", line), line
    assert text.count(stamp) >= 5
    assert "[{" not in text and '"feature"' not in text
    assert "days_since_last_purchase 12 (lowers), orders_90d 3 (raises), email_clicks_30d 0 (lowers)" in text
    assert "tenure_days 400 (raises)" in text
    assert "loyalty__members:LOYALTY-MEMBER-000000012345  source_precedence  " + stamp in text
