"""Shared fixtures: workspaces (tests/support/workspace.py), the shared pipeline runs, real servers."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

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


@pytest.fixture
def server(destination_server, monkeypatch):
    """The destination server with a clean state for this test, and the secrets sync specs name by env var."""
    destination_server.reset_state()
    if destination_server.server is None:
        destination_server.start()
    monkeypatch.setenv("TEST_HOOK_SECRET", destination_server.secret)
    monkeypatch.setenv("TEST_API_TOKEN", destination_server.token)
    return destination_server


E2E_FIXTURES = {"runs", "make_workspace"}
# With pytest-xdist (`make test` runs two workers): where the workers write each test's work unit for the
# controller's scheduler. (xdist's own --dist loadgroup reads groups from node ids, which pytest 9 no longer
# lets a plugin change.)
WORK_UNITS_ENV = "CDP_TEST_WORK_UNITS"


def pytest_configure(config):
    """Before any worker starts: compile the audiences and parse the dbt project once (workers that found
    the manifest stale at once would all write it), and say where the workers write the work units."""
    if hasattr(config, "workerinput"):
        return
    from cdp.dbt import prepare_manifest

    prepare_manifest()
    if getattr(config.option, "numprocesses", None):
        os.environ[WORK_UNITS_ENV] = str(Path(tempfile.mkdtemp(prefix="cdp-test-units-")) / "units.json")


def pytest_unconfigure(config):
    """The controller removes the work units' directory it made."""
    units_file = os.environ.get(WORK_UNITS_ENV)
    if units_file and not hasattr(config, "workerinput"):
        shutil.rmtree(Path(units_file).parent, ignore_errors=True)


def work_unit(item: pytest.Item) -> str:
    """Every user of the shared pipeline runs is one unit (one worker builds them once); every other module
    is its own unit, so a module fixture is built on one worker only."""
    return "pipeline_runs" if "runs" in getattr(item, "fixturenames", ()) else item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/, and any test that builds a workspace or uses the shared pipeline
    runs, is marked e2e: `make test-fast` (-m "not e2e") skips them. The shared runs' users go first:
    they are the longest unit."""
    for item in items:
        if "/e2e/" in str(item.path) or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: work_unit(item) != "pipeline_runs")
    units_file = os.environ.get(WORK_UNITS_ENV)
    if units_file and hasattr(config, "workerinput"):
        written = Path(f"{units_file}.{config.workerinput['workerid']}")
        written.write_text(json.dumps({item.nodeid: work_unit(item) for item in items}))
        written.replace(units_file)  # every worker collects the same tests: the last one wins, whole


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: pytest -p no:xdist still runs
def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling over our work units (whole units to one worker, in collection order)."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        _units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._units is None:  # read once every worker has collected (scheduling starts after)
                self._units = json.loads(Path(os.environ[WORK_UNITS_ENV]).read_text())
            return self._units.get(nodeid) or nodeid.split("::")[0]

    return WorkUnitScheduling(config, log)
