"""`cdp bench-load`: the loader on N event rows from landing files, next to a floor measured in the
same run (polars read + DuckDB insert, no checks). Each measurement runs in its own process (peak
memory from wait4)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from tools.bench.pipeline import run_measured

FLOOR_SCRIPT = """
import sys, duckdb, polars as pl
from pathlib import Path
landing, warehouse = Path(sys.argv[1]), sys.argv[2]
con = duckdb.connect(warehouse)
first = True
for path in sorted(landing.rglob('*.csv')):
    frame = pl.read_csv(path, infer_schema=False)
    con.register('incoming', frame.to_arrow())
    con.execute(('create table floor as ' if first else 'insert into floor ') + 'select * from incoming')
    con.unregister('incoming')
    first = False
"""

LOADER_SCRIPT = """
import sys, duckdb
from pathlib import Path
import data_contracts
landing, warehouse = Path(sys.argv[1]), sys.argv[2]
contract = data_contracts.load_contracts()['web__events']
with duckdb.connect(warehouse) as con:
    report = data_contracts.load_table(con, contract, landing, load_id='bench', run_expectations=False)
    assert report.rows_read == report.rows_accepted + report.rows_quarantined
"""


def write_event_files(landing: Path, rows: int, files: int = 10, seed: int = 7) -> None:
    """Web-event CSV files (the web__events contract's columns), 1 in 10,000 rows bad."""
    rng = np.random.default_rng(seed)
    directory = landing / "web" / "events"
    directory.mkdir(parents=True, exist_ok=True)
    per_file = rows // files
    types = np.array(["page_view", "product_view", "add_to_cart", "login"])
    for number in range(files):
        start = number * per_file
        ids = np.arange(start, start + per_file)
        seconds = rng.integers(0, 86400 * 365, per_file)
        occurred = (np.datetime64("2025-07-01T00:00:00") + seconds.astype("timedelta64[s]")).astype(str)
        frame = pl.DataFrame(
            {
                "event_id": pl.Series(ids).cast(pl.String).str.zfill(10).str.replace(r"^", "WE"),
                "cookie_id": pl.Series(rng.integers(0, rows // 20 + 1, per_file)).cast(pl.String).str.zfill(12),
                "customer_id": pl.Series([None] * per_file, dtype=pl.String),
                "event_type": types[rng.integers(0, 4, per_file)],
                "page_url": "/dresses",
                "occurred_at": pl.Series(occurred) + "Z",
            }
        )
        bad = rng.random(per_file) < 1e-4
        frame = frame.with_columns(
            pl.when(pl.Series(bad)).then(pl.lit("not a time")).otherwise(pl.col("occurred_at")).alias("occurred_at")
        )
        frame.write_csv(directory / f"events_{number:03d}.csv")


def run_load_benchmark(rows: int, echo: Callable[[str], None] = print) -> None:
    work = Path(tempfile.mkdtemp(prefix="cdp-bench-load-"))
    try:
        write_event_files(work / "landing", rows)
        size_mib = sum(p.stat().st_size for p in (work / "landing").rglob("*.csv")) / 2**20
        echo(f"cdp bench-load: {rows:,} web events in 10 CSV files ({size_mib:,.0f} MiB)")
        echo(f"{'':<28}{'wall s':>10}{'rows/s':>14}{'peak RSS MiB':>14}")
        figures = {}
        for name, script in (("floor (read + insert)", FLOOR_SCRIPT), ("loader (contract checks)", LOADER_SCRIPT)):
            warehouse = work / f"{name.split()[0]}.duckdb"
            seconds, peak, _ = run_measured(
                [sys.executable, "-c", script, str(work / "landing"), str(warehouse)], env=None
            )
            figures[name] = seconds
            echo(f"{name:<28}{seconds:>10.1f}{rows / seconds:>14,.0f}{peak:>14,.0f}")
        ratio = figures["loader (contract checks)"] / figures["floor (read + insert)"]
        echo(f"loader / floor: {ratio:.2f}x the floor's time (goal: <= 2x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
