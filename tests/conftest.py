"""Shared fixtures: workspaces (tests/support/workspace.py), the shared pipeline runs, real servers."""

from __future__ import annotations

import os

import pytest

from support.workspace import DEMO_AS_OF, PROJECT_ROOT, Workspace  # noqa: F401  (re-exported for tests)

# Pipeline runs lower their own priority (cdp/serving/batch_priority.py), for good: in a test process
# that runs jobs in process, every later test would run at nice 10 on a machine shared with others.
# The tests of that default set it themselves.
os.environ.setdefault("CDP_RUN_PRIORITY", "normal")


@pytest.fixture(scope="session")
def make_workspace(tmp_path_factory):
    def make(name: str) -> Workspace:
        return Workspace(tmp_path_factory.mktemp(name))

    return make


@pytest.fixture(scope="session")
def runs(make_workspace):
    """Three pipeline runs on a generated dataset, shared by every module (tests/pipeline_runs.py)."""
    from support.pipeline_runs import build_pipeline_runs

    return build_pipeline_runs(make_workspace("e2e"))


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (tools/local_postgres.py): installed
    from the OS packages if missing; skipped loudly only if it truly cannot start."""
    from tools.local_postgres import LocalPostgres, PostgresUnavailable, wait_until_ready

    server = LocalPostgres()
    try:
        server.start()
        wait_until_ready(server.dsn)
    except PostgresUnavailable as error:
        pytest.skip(f"!!! PostgreSQL could not start, PostgreSQL destination tests NOT RUN: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def destination_server():
    """One HTTP server implementing the webhook, ad audience and email tool APIs, with faults."""
    from support.destination_servers import DestinationServer

    server = DestinationServer().start()
    yield server
    server.stop()


E2E_FIXTURES = {"runs", "make_workspace"}


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/, and any test that builds a workspace or uses the shared pipeline
    runs, is marked e2e: `make test-fast` (-m "not e2e") skips them."""
    for item in items:
        if "/e2e/" in str(item.path) or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
