"""Fixtures the activation tests share: a warehouse file per test and the destination servers."""

import duckdb
import pytest


@pytest.fixture
def con(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as connection:
        yield connection


@pytest.fixture
def server(destination_server, monkeypatch):
    destination_server.reset_state()
    if destination_server.server is None:
        destination_server.start()
    monkeypatch.setenv("TEST_HOOK_SECRET", destination_server.secret)
    monkeypatch.setenv("TEST_API_TOKEN", destination_server.token)
    return destination_server
