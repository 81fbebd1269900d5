"""Shared fixtures: workspaces (tests/support/workspace.py), the shared pipeline runs, real servers."""

from __future__ import annotations

import pytest

from support.workspace import DEMO_AS_OF, PROJECT_ROOT, Workspace  # noqa: F401  (re-exported for tests)


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


def pytest_configure(config):
    """Before any worker starts (pytest-xdist), compile the audiences and parse the dbt project once:
    workers that found the manifest stale at once would all write it."""
    if not hasattr(config, "workerinput"):
        from cdp.dbt import prepare_manifest

        prepare_manifest()


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/, and any test that builds a workspace or uses the shared pipeline
    runs, is marked e2e: `make test-fast` (-m "not e2e") skips them.

    For `--dist loadgroup`: every user of the shared runs is one group, run first (it is the longest);
    every other module is its own group, so a module fixture is built on one worker only."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "/e2e/" in str(item.path) or E2E_FIXTURES & fixtures:
            item.add_marker(pytest.mark.e2e)
        group = "pipeline_runs" if "runs" in fixtures else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: "runs" not in getattr(item, "fixturenames", ()))
