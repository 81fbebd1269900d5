"""`cdp bench-serve`'s API part on a small hand-made store: `cdp serve` in its own process, the load
generator in another, and a report with p50/p95/p99/max, errors, the load average, the cost split from
the server's Server-Timing and CPU per request. The load generator counts an answer other than the
expected one as an error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_profile_read_model import make_warehouse, tables

from cdp.serving.publish import publish
from support.workspace import PROJECT_ROOT
from tools.bench.serving import _start_server, _stop, bench_api, bench_requests


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_MASKING_KEY", "bench-serve-test-key")
    make_warehouse(tmp_path / "warehouse.duckdb")
    publish(tmp_path / "warehouse.duckdb", tmp_path / "serving" / "published.duckdb", run_id="bench", tables=tables())
    return tmp_path


def test_bench_api_reports_every_figure_the_issue_asks_for(data_dir):
    lines: list[str] = []
    store = data_dir / "serving" / "published.duckdb"
    phases = bench_api(data_dir, store, rate=50, duration=2, during_run=False, echo=lines.append, warmup=0)
    text = "\n".join(lines)
    assert len(phases) == 1 and len(phases[0].samples) == 100 and phases[0].errors == []
    for figure in ("p50", "p95", "p99", "max", "0 errors", "load average", "read model lookup", "HTTP round trip"):
        assert figure in text, f"{figure!r} missing from:\n{text}"
    assert "CPU per request: server" in text and "load generator" in text
    samples = phases[0].samples
    assert {s[3] for s in samples} <= {200, 404} and 200 in {s[3] for s in samples}
    # The server's timings came through: lookup within app within the round trip, per answered lookup.
    found = [s for s in samples if s[3] == 200]
    assert all(0 <= s[5] <= s[4] <= s[2] for s in found), found[:3]


def test_the_load_generator_counts_unexpected_answers_as_errors(data_dir, tmp_path):
    store = data_dir / "serving" / "published.duckdb"
    requests = bench_requests(store, 10, unknown_share=0.0)
    assert {expected for _, expected in requests} == {200}
    wrong = [(path, 404) for path, _ in requests[:3]] + [("/profiles/email/nobody@nowhere.invalid", 200)]
    server, port = _start_server(data_dir, store, workers=1)
    try:
        spec, result = tmp_path / "spec.json", tmp_path / "result.json"
        spec.write_text(json.dumps({"api_key": "bench-full-key", "requests": wrong}))
        subprocess.run(
            [sys.executable, "-m", "tools.bench.loadgen", str(spec), str(result), "--port", str(port)]
            + ["--rate", "20", "--duration", "0.2"],
            check=True,
            cwd=PROJECT_ROOT,
            timeout=60,
        )
    finally:
        _stop(server)
    errors = json.loads(result.read_text())["errors"]
    assert len(errors) == 4 and sum("200 (expected 404)" in e for e in errors) == 3, errors
    assert any("404 (expected 200)" in e for e in errors), errors
