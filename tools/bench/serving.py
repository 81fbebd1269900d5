"""`cdp bench-serve`: what publishing and serving cost, on the build warehouse of a data dir.

1. Publish the serving store (median of N), its size next to the build warehouse's.
2. A reader in this process queries the store throughout one more publication: errors and latency.
3. The alternatives measured in the same run, when their extensions are installed
   (`pip install -e ".[bench]"`): a DuckLake catalog (sqlite) and an encrypted snapshot file, with a
   check for plaintext PII in what each writes.
4. The lookup alone, in process: the profile read model's probe next to DuckDB's ART index probe.
5. The profile API under load: `cdp serve` in its own process, and the load generator
   (tools/bench/loadgen.py) in another, sending lookups by identifiers of every namespace (5% unknown)
   at a fixed rate from 127.0.0.1, open loop, bounded by rate x duration; idle, then optionally during a
   pipeline run on the same data dir at each CDP_RUN_PRIORITY asked for (each run is killed with SIGKILL
   once measured, and the store is checked to be intact). Each phase reports p50/p95/p99/max, errors,
   the load average, the per-request cost split (the server's Server-Timing: lookup and app; the round
   trip; from when due) and the CPU per request of the server and of the load generator.
"""

from __future__ import annotations

import contextlib
import json
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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import duckdb

from cdp.serving.documents import sql_literal
from cdp.serving.publish import latest_publication, publish, published_tables
from cdp.serving.readmodel import read_model_path
from cdp.serving.store import PublishedStore
from cdp.settings import PROJECT_ROOT
from cdp.warehouse import attach
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
    seconds, steps = [], []
    for i in range(repeats):
        # written from scratch each time (what a run that changed every table does), as docs/serving.md measures
        publication = publish(warehouse, store, run_id=f"bench-publish-{i}", reuse=False)
        seconds.append(publication.seconds)
        steps.append(publication.step_seconds)
    record = latest_publication(store)
    profiles = record["row_counts"].get("profiles.profiles", 0)
    echo(
        f"publish (snapshot file + profile read model): median {statistics.median(seconds):.2f} s of {repeats} "
        f"(min {min(seconds):.2f}, max {max(seconds):.2f}) for {profiles:,} profiles, "
        f"{sum(record['row_counts'].values()):,} rows in {len(record['row_counts'])} tables; {_load_average()}"
    )
    echo(
        "  steps, median s: "
        + ", ".join(f"{name} {statistics.median(s[name] for s in steps):.2f}" for name in steps[0])
        + " (copy: tables sorted and indexed; read_model: documents rendered and written)"
    )
    echo(
        f"  disk: serving store {_size(store) / 2**20:,.0f} MiB + read model {_size(read_model_path(store)) / 2**20:,.0f} MiB; "
        f"build warehouse {_size(warehouse) / 2**20:,.0f} MiB; peak during publish = both twice"
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
    publication = publish(warehouse, store, run_id="bench-publish-under-readers", reuse=False)
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


def _load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def _unknown_value(namespace: str, number: int) -> str:
    """A well-formed identifier no profile holds (the API answers 404)."""
    if namespace == "email":
        return f"nobody-{number}@unknown.invalid"
    if namespace == "phone":
        return f"+1999{number:09d}"
    return f"unknown-{number}-bench"


def bench_requests(store: Path, count: int, unknown_share: float = 0.05, seed: int = 7) -> list[tuple[str, int]]:
    """Lookups by identifiers of every namespace, in the proportions the store holds them, with
    `unknown_share` of well-formed identifiers no profile holds: (path, expected status)."""
    with duckdb.connect(":memory:") as con:
        attach(con, store, "published", read_only=True)
        rows = con.execute(
            "select namespace, identity_value from published.profiles.profile_identities "
            f"using sample reservoir({count} rows) repeatable ({seed})"
        ).fetchall()
    generator = random.Random(seed)
    generator.shuffle(rows)
    requests = []
    for number, (namespace, value) in enumerate(rows):
        if generator.random() < unknown_share:
            requests.append((f"/profiles/{namespace}/{quote(_unknown_value(namespace, number), safe='@+')}", 404))
        else:
            requests.append((f"/profiles/{namespace}/{quote(value, safe='@+')}", 200))
    return requests


def bench_lookups(store: Path, requests: list[tuple[str, int]], echo: Callable[[str], None], count: int = 2000) -> None:
    """The lookup alone, in this process: the read model's probe against DuckDB's ART index probe
    (the first of the two queries the API made before the read model) on the same identifiers."""
    from urllib.parse import unquote

    from cdp.serving.readmodel import ReadModel

    identifiers = [(path.split("/")[2], unquote(path.split("/", 3)[3])) for path, _ in requests[:count]]
    read_model = ReadModel(read_model_path(store))
    con = duckdb.connect(":memory:")
    attach(con, store, "published", read_only=True)
    con.execute("use published")
    for label in ("cold", "warm"):
        probe, duck = [], []
        for namespace, value in identifiers:
            started = time.perf_counter()
            read_model.find(namespace, value)
            probe.append(time.perf_counter() - started)
            started = time.perf_counter()
            con.execute(
                "select namespace, profile_id from profiles.profile_identities "
                f"where identity_value = {sql_literal(value)}"
            ).fetchall()
            duck.append(time.perf_counter() - started)
        echo(
            f"lookup alone ({label}, {len(identifiers):,} identifiers, in process): read model "
            f"p50 {_percentile(probe, 0.5) * 1e6:,.0f} us, p99 {_percentile(probe, 0.99) * 1e6:,.0f} us; "
            f"DuckDB ART probe (one of the two before) p50 {_percentile(duck, 0.5) * 1e6:,.0f} us, "
            f"p99 {_percentile(duck, 0.99) * 1e6:,.0f} us; ratio of medians "
            f"{_percentile(duck, 0.5) / _percentile(probe, 0.5):,.0f}x"
        )
    read_model.close()
    con.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (uvicorn's workers are children of its supervisor)."""
    total = 0.0
    for entry in [pid, *_children(pid)]:
        try:
            total += _cpu_seconds(entry)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return found + [g for c in found for g in _children(c)]


@dataclass
class Phase:
    name: str
    samples: list[list[float]]
    errors: list[str]
    loadgen_cpu_s: float
    server_cpu_s: float
    load_before: str
    load_after: str
    note: str = ""
    run_cpu_s: float | None = None  # CPU the pipeline run (and its children) used during the phase


def _run_loadgen(
    port: int, requests: list[tuple[str, int]], rate: float, duration: float, workdir: Path, name: str
) -> dict:
    spec, result = workdir / f"{name}.requests.json", workdir / f"{name}.result.json"
    spec.write_text(json.dumps({"api_key": BENCH_KEY, "requests": requests}))
    command = [sys.executable, "-m", "tools.bench.loadgen", str(spec), str(result)]
    command += ["--port", str(port), "--rate", str(rate), "--duration", str(duration)]
    subprocess.run(command, check=True, cwd=PROJECT_ROOT, timeout=duration + 120)
    return json.loads(result.read_text())


def _measure(
    name: str,
    server_pid: int,
    port: int,
    requests: list[tuple[str, int]],
    rate: float,
    duration: float,
    warmup: float,
    workdir: Path,
    run_pid: int | None = None,
) -> Phase:
    if warmup > 0:  # the same rate, not measured: first touches of the read model's pages
        _run_loadgen(port, requests[::-1], rate, warmup, workdir, f"{name}-warmup")
    load_before = _load_average()
    server_cpu = _tree_cpu_seconds(server_pid)
    run_cpu = _tree_cpu_seconds(run_pid) if run_pid else None
    result = _run_loadgen(port, requests, rate, duration, workdir, name)
    run_cpu = _tree_cpu_seconds(run_pid) - run_cpu if run_pid else None
    return Phase(
        run_cpu_s=run_cpu,
        name=name,
        samples=result["samples"],
        errors=result["errors"],
        loadgen_cpu_s=result["cpu_s"],
        server_cpu_s=_tree_cpu_seconds(server_pid) - server_cpu,
        load_before=load_before,
        load_after=_load_average(),
    )


def report_phase(phase: Phase, rate: float, duration: float, echo: Callable[[str], None]) -> None:
    latency = [s[1] for s in phase.samples]
    trip = [s[2] for s in phase.samples]
    app = [s[4] for s in phase.samples if s[4] >= 0]
    lookup = [s[5] for s in phase.samples if s[5] >= 0]
    count = len(phase.samples)

    def ms(values: list[float], q: float) -> str:
        return f"{_percentile(values, q):,.2f}" if values else "n/a"

    echo(
        f"API {phase.name}: {count:,} lookups at {rate:.0f}/s for {duration:.0f} s, {len(phase.errors)} errors; "
        f"latency ms p50 {ms(latency, 0.5)}, p95 {ms(latency, 0.95)}, p99 {ms(latency, 0.99)}, "
        f"max {max(latency):,.2f}" + (f"; {phase.note}" if phase.note else "")
    )
    echo(f"  {phase.load_before} before, {phase.load_after} after")
    echo(
        "  per-request cost split, ms (p50 / p99): "
        f"read model lookup {ms(lookup, 0.5)} / {ms(lookup, 0.99)}; "
        f"app in all (routing, auth, lookup, response) {ms(app, 0.5)} / {ms(app, 0.99)}; "
        f"HTTP round trip (server + loopback + client) {ms(trip, 0.5)} / {ms(trip, 0.99)}; "
        f"from when due (adds waiting for a connection) {ms(latency, 0.5)} / {ms(latency, 0.99)}"
    )
    echo(
        f"  CPU per request: server {phase.server_cpu_s / max(count, 1) * 1000:.2f} ms, "
        f"load generator {phase.loadgen_cpu_s / max(count, 1) * 1000:.2f} ms (its own process)"
    )
    if phase.run_cpu_s is not None:
        echo(
            f"  the pipeline run used {phase.run_cpu_s:,.0f} CPU seconds meanwhile "
            f"({phase.run_cpu_s / duration:.2f} of {os.cpu_count()} cores)"
        )
    if phase.errors:
        echo(f"  first errors: {phase.errors[:3]}")


def _start_server(data_dir: Path, store: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {
        **_bench_env(data_dir, store),
        "CDP_API_KEYS_FULL": BENCH_KEY,
        # One client sends every request: lift its rate limit on this server (the default stays 500/s).
        "CDP_API_REQUESTS_PER_S": "1000000",
        "CDP_API_SERVER_TIMING": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"`cdp serve` exited with {server.returncode} before answering")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server, port
        except httpx.HTTPError:
            time.sleep(0.2)
    _stop(server)
    raise RuntimeError(f"`cdp serve` did not answer on port {port} within 120 s")


def _bench_env(data_dir: Path, store: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CDP_DATA_DIR": str(data_dir),
        "CDP_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "CDP_SERVING_STORE": str(store),
        "CDP_AS_OF": BENCH_AS_OF,
        "CDP_PROGRESS": "0",
    }


def _stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with its children (dbt, uvicorn workers)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _start_run(data_dir: Path, store: Path, priority: str) -> tuple[subprocess.Popen, Path]:
    """`cdp run` on the data dir at the given CDP_RUN_PRIORITY; returns once it is building (dbt
    has started on the models): the loads of a data dir loaded before take little CPU."""
    log = data_dir / "logs" / "last_run.log"
    log.unlink(missing_ok=True)
    run = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", "run"],
        env={**_bench_env(data_dir, store), "CDP_RUN_PRIORITY": priority},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise RuntimeError(f"the pipeline run exited with {run.returncode} before its dbt build; see {log}")
        if log.exists() and " model staging." in log.read_text(errors="replace"):
            return run, log
        time.sleep(0.5)
    _stop(run)
    raise RuntimeError("the pipeline run did not reach its dbt build within an hour")


def bench_api(
    data_dir: Path,
    store: Path,
    rate: float,
    duration: float,
    during_run: bool,
    echo: Callable[[str], None],
    workers: int = 1,
    run_priorities: tuple[str, ...] = ("low",),
    warmup: float = 15.0,
    unknown_share: float = 0.05,
    run_data_dir: Path | None = None,
) -> list[Phase]:
    """`run_data_dir`: where the pipeline runs during the load (default: `data_dir`; with --scale, the
    real data dir the scaled store was made from), publishing to its own store."""
    run_data_dir = run_data_dir or data_dir
    run_store = store if run_data_dir == data_dir else run_data_dir / "serving" / "published.duckdb"
    requests = bench_requests(store, 20_000, unknown_share)
    namespaces = sorted({path.split("/")[2] for path, _ in requests})
    echo(
        f"API load: {len(requests):,} distinct lookups ({', '.join(namespaces)}; "
        f"{sum(1 for _, e in requests if e == 404) / len(requests):.1%} unknown, answered 404), "
        f"`cdp serve` with {workers} process(es), load generator in its own process, {warmup:.0f} s warm-up"
    )
    bench_lookups(store, requests, echo)
    phases = []
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-serve-load-"))
    server, port = _start_server(data_dir, store, workers)
    try:
        phase = _measure("idle", server.pid, port, requests, rate, duration, warmup, workdir)
        report_phase(phase, rate, duration, echo)
        phases.append(phase)
        if during_run:
            for priority in run_priorities:
                published_before = (latest_publication(run_store) or {}).get("run_id")
                run, log = _start_run(run_data_dir, run_store, priority)
                try:
                    run_started = time.monotonic()
                    phase = _measure(
                        f"during a pipeline run (CDP_RUN_PRIORITY={priority})",
                        server.pid,
                        port,
                        requests,
                        rate,
                        duration,
                        0.0,
                        workdir,
                        run_pid=run.pid,
                    )
                    still_running = run.poll() is None
                    phase.note = (
                        "the run was building throughout"
                        if still_running
                        else f"the run ENDED (exit {run.returncode}, see {log}) after {time.monotonic() - run_started:.0f} s, "
                        "before the load did: not a figure during a run"
                    )
                finally:
                    _stop(run)
                report_phase(phase, rate, duration, echo)
                phases.append(phase)
                echo(
                    f"  run on {run_data_dir} stopped with SIGKILL afterwards; its store still holds "
                    f"{(latest_publication(run_store) or {}).get('run_id')} (before: {published_before})"
                )
    finally:
        _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    return phases


def run_serving_benchmark(
    data_dir: Path,
    repeats: int,
    rate: float,
    duration: float,
    during_run: bool,
    echo: Callable[[str], None] = print,
    workers: int = 1,
    run_priorities: tuple[str, ...] = ("low",),
    warmup: float = 15.0,
    unknown_share: float = 0.05,
    alternatives: bool = True,
    scale: int = 1,
    run_data_dir: Path | None = None,
) -> None:
    warehouse = data_dir / "warehouse.duckdb"
    if not warehouse.exists():
        raise FileNotFoundError(f"no build warehouse at {warehouse}; run `cdp bench --keep` or `cdp run` first")
    run_data_dir = run_data_dir or data_dir
    if scale > 1:
        from tools.bench.scale import scale_warehouse

        data_dir = data_dir / f"scaled-{scale}"
        warehouse = scale_warehouse(warehouse, data_dir / "warehouse.duckdb", scale, echo)
        if repeats == 0 and latest_publication(data_dir / "serving" / "published.duckdb") is None:
            repeats = 1  # a new scaled warehouse has no store yet
    store = data_dir / "serving" / "published.duckdb"
    echo(f"cdp bench-serve: build warehouse {warehouse}; {_load_average()}")
    if repeats > 0:
        bench_publish(warehouse, store, repeats, echo)
        bench_reader_during_publish(warehouse, store, echo)
        if alternatives:
            workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-serve-", dir=data_dir))
            try:
                bench_alternatives(warehouse, workdir, echo)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    elif latest_publication(store) is None:
        raise FileNotFoundError(f"--repeats 0 serves the existing store, but nothing is published at {store}")
    record = latest_publication(store)
    echo(
        f"store: run {record['run_id']}, {record['row_counts'].get('profiles.profiles', 0):,} profiles, "
        f"{record['row_counts'].get('profile_read_model.identifiers', 0):,} identifiers; "
        f"{_size(store) / 2**20:,.0f} MiB + read model {_size(read_model_path(store)) / 2**20:,.0f} MiB"
    )
    if rate > 0:
        bench_api(
            data_dir,
            store,
            rate,
            duration,
            during_run,
            echo,
            workers=workers,
            run_priorities=run_priorities,
            warmup=warmup,
            unknown_share=unknown_share,
            run_data_dir=run_data_dir,
        )
