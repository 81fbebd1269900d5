"""The DuckDB warehouse as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from cdp.warehouse import connect


class WarehouseResource(dg.ConfigurableResource):
    """One DuckDB file. Connections are short-lived: DuckDB locks the file for the process that
    holds it open, and dbt runs in a subprocess between the Python steps."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = connect(self.path, read_only=read_only)  # encrypted when CDP_WAREHOUSE_ENCRYPTION_KEY is set
        try:
            yield con
        finally:
            con.close()
