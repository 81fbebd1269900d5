"""Fixtures the activation tests share: a warehouse file per test (the destination server: tests/conftest.py)."""

import duckdb
import pytest


@pytest.fixture
def con(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as connection:
        yield connection
