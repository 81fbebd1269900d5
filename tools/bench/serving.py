"""`cdp bench-serve`: what publishing and serving cost, on the build warehouse of a data dir.

1. Publish the serving store (median of N), its size next to the build warehouse's.
2. A reader in this process queries the store throughout one more publication: errors and latency.
3. The alternatives measured in the same run, when their extensions are installed
   (`pip install -e ".[bench]"`): a DuckLake catalog (sqlite) and an encrypted snapshot file, with a
   check for plaintext PII in what each writes.
4. The profile API under load: `cdp serve` in its own process, lookups by identifier at a fixed rate
   from 127.0.0.1 (bounded by rate x duration), optionally while a pipeline run executes on the same
   data dir (that run is killed with SIGKILL afterwards, and the store is checked to be intact).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from cdp.serving.publish import latest_publication, publish, published_tables
from cdp.serving.store import PublishedStore
from tools.bench.pipeline import BENCH_AS_OF

BENCH_KEY = "bench-full-key"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _sample_email(warehouse: Path) -> str | None:
    """The smallest email: a value that column statistics (min/max) would hold."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select min(email) from profiles.profiles").fetchone()[0]


def bench_publish(warehouse: Path, store: Path, repeats: int, echo: Callable[[str], None]) -> None:
    seconds, documents = [], []
    for i in range(repeats):
        publication = publish(warehouse, store, run_id=f"bench-publish-{i}")
        seconds.append(publication.seconds)
        documents.append(publication.documents_seconds)
    record = latest_publication(store)
    profiles = record["row_counts"].get("profiles.profiles", 0)
    echo(
        f"publish (snapshot file): median {statistics.median(seconds):.2f} s of {repeats} "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}) for {profiles:,} profiles, "
        f"{sum(record['row_counts'].values()):,} rows in {len(record['row_counts'])} tables; of which "
        f"profile documents {statistics.median(documents):.2f} s"
    )
    echo(
        f"  disk: serving store {_size(store) / 2**20:,.0f} MiB; build warehouse {_size(warehouse) / 2**20:,.0f} MiB; "
        f"peak during publish = store + the new file ({2 * _size(store) / 2**20:,.0f} MiB)"
    )


def bench_reader_during_publish(warehouse: Path, store: Path, echo: Callable[[str], None]) -> None:
    reader = PublishedStore(store, pool_size=1)
    latencies, errors, runs = [], [], set()
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                with reader.cursor() as cursor:
                    run_id = cursor.execute(
                        "select run_id from serving.publications order by published_at desc limit 1"
                    ).fetchone()[0]
                    cursor.execute("select count(*) from profiles.profiles").fetchone()
                runs.add(run_id)
            except Exception as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - started)

    thread = threading.Thread(target=read_loop)
    thread.start()
    time.sleep(0.5)
    publication = publish(warehouse, store, run_id="bench-publish-under-readers")
    time.sleep(0.5)
    stop.set()
    thread.join()
    reader.close()
    echo(
        f"reader during publish ({publication.seconds:.2f} s): {len(latencies):,} reads, {len(errors)} errors, "
        f"p50 {_percentile(latencies, 0.5) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
        f"runs seen {len(runs)} (old, then new)"
    )


def bench_alternatives(warehouse: Path, workdir: Path, echo: Callable[[str], None]) -> None:
    try:
        import duckdb_extensions
    except ImportError:
        echo("alternatives skipped: install the bench extra (pip install -e '.[bench]') for DuckLake and encryption")
        return
    tables = published_tables()
    email = _sample_email(warehouse)

    def copy_all(con: duckdb.DuckDBPyConnection, catalog: str) -> None:
        for table in tables:
            con.execute(f"create schema if not exists {catalog}.{table.schema}")
            con.execute(f"create table {catalog}.{table.relation} as select * from build.{table.relation}")

    def plaintext(paths: list[Path]) -> bool:
        return bool(email) and any(
            email.encode() in p.read_bytes()
            for root in paths
            for p in ([root] if root.is_file() else root.rglob("*"))
            if p.is_file()
        )

    for name in ("ducklake", "sqlite", "httpfs"):
        duckdb_extensions.import_extension(name)
    # DuckLake: one transaction is one snapshot; readers in other processes see the old one until commit.
    lake_dir = workdir / "lake"
    lake_dir.mkdir()
    with duckdb.connect(":memory:") as con:
        con.execute("load ducklake; load sqlite")
        con.execute(f"attach '{warehouse}' as build (read_only)")
        started = time.perf_counter()
        con.execute(
            f"attach 'ducklake:sqlite:{lake_dir / 'catalog.sqlite'}' as lake (data_path '{lake_dir / 'data'}/')"
        )
        con.execute("begin")
        copy_all(con, "lake")
        con.execute("commit")
        lake_seconds = time.perf_counter() - started
    echo(
        f"alternative DuckLake (sqlite catalog): {lake_seconds:.2f} s, {_size(lake_dir) / 2**20:,.0f} MiB; "
        f"plaintext email in catalog: {plaintext([lake_dir / 'catalog.sqlite'])}"
    )
    encrypted = workdir / "encrypted.duckdb"
    with duckdb.connect(":memory:") as con:
        con.execute("load httpfs")  # DuckDB writes encrypted files only with httpfs' OpenSSL loaded
        con.execute(f"attach '{warehouse}' as build (read_only)")
        started = time.perf_counter()
        con.execute(f"attach '{encrypted}' as enc (encryption_key 'bench-only-key')")
        copy_all(con, "enc")
        con.execute("detach enc")
        encrypted_seconds = time.perf_counter() - started
    echo(
        f"alternative encrypted snapshot file: {encrypted_seconds:.2f} s, {_size(encrypted) / 2**20:,.0f} MiB; "
        f"plaintext email in file: {plaintext([encrypted])}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _identifiers(store: Path, count: int, seed: int = 7) -> list[tuple[str, str]]:
    with duckdb.connect(":memory:") as con:
        con.execute(f"attach '{store}' as published (read_only)")
        rows = con.execute(
            "select namespace, identity_value from published.profiles.profile_identities "
            f"where namespace in ('email', 'phone', 'cookie_id') order by hash(identity_value || '{seed}') limit {count}"
        ).fetchall()
    random.Random(seed).shuffle(rows)
    return rows


async def _load(
    port: int, identifiers: list[tuple[str, str]], rate: float, duration: float, workers: int = 32
) -> tuple[list[float], list[str]]:
    """Open-loop load: request i is due at i / rate. A bounded pool of workers sends them; latency is
    measured from when a request was due, so a server that falls behind shows it (no coordinated
    omission), and the generator's own cost stays flat."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    total = int(rate * duration)
    next_index = 0
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"X-API-Key": BENCH_KEY},
        timeout=10,
        limits=httpx.Limits(max_connections=workers),
    ) as client:
        begin = time.perf_counter()

        async def worker() -> None:
            nonlocal next_index
            while next_index < total:
                i = next_index
                next_index += 1
                due = begin + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                namespace, value = identifiers[i % len(identifiers)]
                try:
                    response = await client.get(f"/profiles/{namespace}/{value}")
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {namespace}")
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies, errors


def bench_api(
    data_dir: Path,
    store: Path,
    rate: float,
    duration: float,
    during_run: bool,
    echo: Callable[[str], None],
    workers: int = 1,
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CDP_DATA_DIR": str(data_dir),
        "CDP_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "CDP_SERVING_STORE": str(store),
        "CDP_API_KEYS_FULL": BENCH_KEY,
        "CDP_AS_OF": BENCH_AS_OF,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = None
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"`cdp serve` did not answer on port {port} within 60 s")
        identifiers = _identifiers(store, 20_000)
        published_before = latest_publication(store)["run_id"]
        if during_run:
            # The batch run at lower CPU priority than the API, as a box shared by both should be set up.
            run = subprocess.Popen(
                [sys.executable, "-m", "cdp.cli", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=lambda: os.nice(10),
            )
            time.sleep(15)  # into the loads and the dbt build
        # Warm-up at the same rate, not measured: DuckDB loads index and table blocks on first touch.
        asyncio.run(_load(port, identifiers[::-1], rate, min(15.0, duration)))
        latencies, errors = asyncio.run(_load(port, identifiers, rate, duration))
        still_running = run is not None and run.poll() is None
        echo(
            f"API lookups by identifier at {rate:.0f}/s for {duration:.0f} s"
            f"{' while a pipeline run executes (nice 10)' if during_run else ''}, {workers} server process(es): "
            f"{len(latencies):,} requests, "
            f"{len(errors)} errors, p50 {_percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p90 {_percentile(latencies, 0.9) * 1000:.1f} ms, p99 {_percentile(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms" + (f"; first errors: {errors[:3]}" if errors else "")
        )
        if run is not None:
            echo(f"  pipeline run still running at the end of the load: {still_running}")
            if still_running:
                run.send_signal(signal.SIGKILL)
                run.wait()
                echo(
                    f"  killed it with SIGKILL; store still holds {latest_publication(store)['run_id']} "
                    f"(before: {published_before})"
                )
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        server.terminate()
        server.wait(timeout=30)


def run_serving_benchmark(
    data_dir: Path,
    repeats: int,
    rate: float,
    duration: float,
    during_run: bool,
    echo: Callable[[str], None] = print,
    workers: int = 1,
) -> None:
    warehouse = data_dir / "warehouse.duckdb"
    if not warehouse.exists():
        raise FileNotFoundError(f"no build warehouse at {warehouse}; run `cdp bench --keep` or `cdp run` first")
    store = data_dir / "serving" / "published.duckdb"
    echo(f"cdp bench-serve: build warehouse {warehouse}")
    if repeats > 0:
        bench_publish(warehouse, store, repeats, echo)
        bench_reader_during_publish(warehouse, store, echo)
        workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-serve-", dir=data_dir))
        try:
            bench_alternatives(warehouse, workdir, echo)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    elif latest_publication(store) is None:
        raise FileNotFoundError(f"--repeats 0 serves the existing store, but nothing is published at {store}")
    if rate > 0:
        bench_api(data_dir, store, rate, duration, during_run, echo, workers=workers)
