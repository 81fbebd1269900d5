"""`cdp bench-sync`: diff and sync throughput on an N-row audience, first a full sync and then a
change of a share of the rows, to PostgreSQL and to an HTTP server, each next to a floor measured in
the same run: a plain COPY of the same rows into the same table shape, and the HTTP server's raw
request rate (the same signed batches POSTed back to back, no engine). Medians of --repeats; the load
average is printed next to the figures (the floors absorb the load of the same moment). With drt-core
installed (`pip install .[bench]`), drt syncs the same audience to the same PostgreSQL side by side."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

import activation
from activation.destinations.webhook import signature
from activation.inbox import WebhookInbox
from tools.local_postgres import LocalPostgres, wait_until_ready

FIELDS = ("profile_id", "email", "first_name", "last_name", "lifetime_revenue")
HTTP_BATCH = 1000


def _spec(directory: Path, name: str, destination: str) -> activation.SyncSpec:
    path = directory / f"{name}.yml"
    fields = "".join(f"  {f}: {f}\n" for f in FIELDS)
    path.write_text(
        f"name: {name}\naudience: segments.seg_bench\nprimary_key: profile_id\nmode: mirror\n"
        f"guard: {{max_remove_share: 1}}\nfields:\n{fields}destination:\n{destination}"
    )
    return activation.load_sync_spec(path)


def _make_audience(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    con.execute("create schema if not exists segments")
    con.execute(f"""
        create or replace table segments.seg_bench as
        select printf('p%09d', i) as profile_id, printf('user%d@example.com', i) as email,
               'First' || (i % 997) as first_name, 'Last' || (i % 1009) as last_name,
               round((i % 100000) / 7.0, 2)::decimal(18, 2) as lifetime_revenue
        from range({rows}) as t(i)""")
    con.execute("checkpoint")  # else the first timed statement pays for writing the audience table


def _change(con: duckdb.DuckDBPyConnection, share: float) -> int:
    step = max(1, round(1 / share))
    return con.execute(f"""
        update segments.seg_bench set first_name = first_name || '-changed'
        where cast(substr(profile_id, 2) as bigint) % {step} = 0""").fetchone()[0]


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _load() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else ""


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_sync_benchmark(
    rows: int,
    *,
    change_share: float,
    repeats: int,
    echo: Callable[[str], None],
    http: bool = True,
    drt: bool = True,
    http_repeats: int | None = None,
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-sync-"))
    try:
        with duckdb.connect(str(workdir / "w.duckdb")) as con, LocalPostgres() as pg:
            wait_until_ready(pg.dsn)
            _make_audience(con, rows)
            echo(
                f"audience: {rows:,} rows, {len(FIELDS)} fields; change: {change_share:.0%} of rows; "
                f"medians of {repeats}; {os.cpu_count()} cores; {_load()}"
            )
            diff_spec = _spec(workdir, "bench_diff", "  type: file\n  format: csv\n  path: out\n")
            # The diff alone (the audience is written and checkpointed before; rows stay structs: JSON and
            # COPY text are rendered as the sync sends, and counted in the sync figures below).
            # Its floor, same moment: copying the audience once (every diff reads and materializes it).
            copy_s = _median(
                [
                    _timed(
                        lambda: con.execute(
                            "create or replace temp table bench_copy as select * from segments.seg_bench"
                        )
                    )
                    for _ in range(repeats)
                ]
            )
            con.execute("drop table bench_copy")
            diff_s = _median([_timed(lambda: activation.plan_sync(con, diff_spec)) for _ in range(repeats)])
            echo(f"diff floor (copy of the audience table):   {copy_s:6.2f} s")
            echo(
                f"diff (first sync, all rows added):   {diff_s:6.2f} s  ({rows / diff_s:,.0f} rows/s)  "
                f"= {diff_s / copy_s:.1f}x the floor; goal < 5 s  [{_load()}]"
            )
            _bench_postgres(con, workdir, pg, rows, change_share, repeats, echo)
            if drt:
                _make_audience(con, rows)
                _bench_drt(con, workdir, pg, rows, change_share, echo)
            if http:
                _make_audience(con, rows)
                _bench_http(con, workdir, rows, change_share, http_repeats or repeats, echo)
            echo(_load())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _reset(con: duckdb.DuckDBPyConnection, sync_name: str) -> None:
    """A first sync again: fresh state tables (deleting 1M rows from the keyed state and then inserting
    the same keys again measures DuckDB's delete path, not a first sync)."""
    for table in ("sync_state", "sync_ledger", "sync_runs"):
        con.execute(f"drop table if exists activation.{table}")
    activation.ensure_state_tables(con)


def _bench_postgres(con, workdir: Path, pg: LocalPostgres, rows: int, change_share: float, repeats: int, echo) -> None:
    import psycopg

    os.environ["CDP_BENCH_PG_DSN"] = pg.dsn
    spec = _spec(workdir, "bench_pg", "  type: postgres\n  dsn_env: CDP_BENCH_PG_DSN\n  table: bench.audience\n")
    columns = ", ".join(f"{f} text" for f in FIELDS)
    data = con.execute(
        f"select {', '.join(f'cast({f} as varchar)' for f in FIELDS)} from segments.seg_bench"
    ).fetchall()
    text = (
        con.execute(
            f"select {activation.diff.copy_text_sql(list(FIELDS), 's')} from "
            f"(select struct_pack({', '.join(f'{f} := {f}' for f in FIELDS)}) as s from segments.seg_bench)"
        )
        .pl()
        .to_series()
        .str.join("\n")[0]
        + "\n"
    )
    with psycopg.connect(pg.dsn, autocommit=True) as pgc:
        pgc.execute("create schema if not exists bench")
        pgc.execute(f"create table bench.copy_floor ({columns}, primary key (profile_id))")

        def copy_rows() -> None:  # what a client streaming tuples does
            pgc.execute("truncate bench.copy_floor")
            with (
                pgc.transaction(),
                pgc.cursor() as cursor,
                cursor.copy(f"copy bench.copy_floor ({', '.join(FIELDS)}) from stdin") as copy,
            ):
                for row in data:  # noqa: F821 (deleted after the timings)
                    copy.write_row(row)

        def copy_text() -> None:  # the server's own COPY speed: the text rendered beforehand
            pgc.execute("truncate bench.copy_floor")
            with (
                pgc.transaction(),
                pgc.cursor() as cursor,
                cursor.copy(f"copy bench.copy_floor ({', '.join(FIELDS)}) from stdin") as copy,
            ):
                copy.write(text)  # noqa: F821

        rows_s = _median([_timed(copy_rows) for _ in range(repeats)])
        floor_s = _median([_timed(copy_text) for _ in range(repeats)])
        del data, text

        def full_sync() -> None:
            _reset(con, spec.name)
            pgc.execute("drop table if exists bench.audience")
            activation.run_sync(con, spec, run_id="full", base_dir=workdir)

        full_s = _median([_timed(full_sync) for _ in range(repeats)])
        assert pgc.execute("select count(*) from bench.audience").fetchone()[0] == rows
        changes = []
        for repeat in range(repeats):  # each repeat changes the same share of rows again
            changed = _change(con, change_share)
            result = activation.run_sync(con, spec, run_id=f"change{repeat}", base_dir=workdir)
            assert result.changed == changed and result.sent == changed
            changes.append(result.duration_s)
        change_s = _median(changes)
        assert (
            pgc.execute("select count(*) from bench.audience where first_name like '%-changed'").fetchone()[0]
            == changed
        )
    floor_rate, rows_rate, full_rate = rows / floor_s, rows / rows_s, rows / full_s
    echo(
        f"PostgreSQL floor (COPY of pre-rendered text, same rows and table shape): {floor_s:6.2f} s  {floor_rate:>10,.0f} rows/s"
    )
    echo(
        f"PostgreSQL COPY via psycopg write_row per tuple (previous floor):         {rows_s:6.2f} s  {rows_rate:>10,.0f} rows/s"
    )
    echo(
        f"PostgreSQL full sync (diff + send + state + ledger):                      {full_s:6.2f} s  {full_rate:>10,.0f} rows/s  "
        f"= {full_rate / floor_rate:.0%} of COPY text, {full_rate / rows_rate:.0%} of COPY write_row (goal >= 50%)  [{_load()}]"
    )
    echo(
        f"PostgreSQL {change_share:.0%} change ({changed:,} rows), whole run:                        {change_s:6.2f} s  "
        f"{changed / change_s:>10,.0f} changed rows/s  ({rows / change_s:,.0f} audience rows/s)"
    )


def _bench_drt(con, workdir: Path, pg: LocalPostgres, rows: int, change_share: float, echo) -> None:
    """drt-core (a maintained reverse-ETL library) syncing the same audience to the same PostgreSQL:
    its DuckDB source and postgres destination, mode upsert, through its own `drt run`."""
    try:
        import drt  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError:
        echo("drt: not installed (pip install '.[bench]' for drt-core and psycopg2-binary); skipped")
        return
    con.execute("checkpoint")
    project, home = workdir / "drt_project", workdir / "drt_home"
    (project / "syncs").mkdir(parents=True)
    (home / ".drt").mkdir(parents=True)
    # drt reads the warehouse through its own connection: a copy, so ours stays open.
    shutil.copy(workdir / "w.duckdb", workdir / "drt.duckdb")
    (home / ".drt" / "profiles.yml").write_text(f"default:\n  type: duckdb\n  database: {workdir / 'drt.duckdb'}\n")
    (project / "drt_project.yml").write_text("name: bench\nprofile: default\n")
    (project / "syncs" / "bench_drt.yml").write_text(
        "name: bench_drt\n"
        f'model: "select {", ".join(FIELDS[:-1])}, cast(lifetime_revenue as varchar) as lifetime_revenue '
        'from segments.seg_bench"\n'
        "destination:\n  type: postgres\n  connection_string_env: DRT_PG_DSN\n  table: bench.drt_audience\n"
        "  upsert_key: [profile_id]\nsync:\n  mode: upsert\n  batch_size: 10000\n"
    )
    import psycopg

    with psycopg.connect(pg.dsn, autocommit=True) as pgc:
        pgc.execute("create schema if not exists bench")
        pgc.execute(
            f"create table if not exists bench.drt_audience ({', '.join(f'{f} text' for f in FIELDS)}, "
            "primary key (profile_id))"
        )
        env = {**os.environ, "HOME": str(home), "DRT_PG_DSN": f"postgresql://{pg.user}@127.0.0.1:{pg.port}/postgres"}
        command = [
            sys.executable,
            "-c",
            "import sys; from drt.cli.main import app; sys.argv[0] = 'drt'; app()",
            "run",
            "--select",
            "bench_drt",
            "--quiet",
        ]

        def drt_run() -> float:
            started = time.perf_counter()
            done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=3600)
            elapsed = time.perf_counter() - started
            if done.returncode:
                raise RuntimeError(f"drt run failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
            return elapsed

        full_s = drt_run()
        held = pgc.execute("select count(*) from bench.drt_audience").fetchone()[0]
        changed = _change(con, change_share)
        con.execute("checkpoint")
        shutil.copy(workdir / "w.duckdb", workdir / "drt.duckdb")
        change_s = drt_run()
        applied = pgc.execute("select count(*) from bench.drt_audience where first_name like '%-changed'").fetchone()[0]
    echo(
        f"drt {drt.__version__ if hasattr(drt, '__version__') else ''} full sync (upsert, batch 10,000):        "
        f"{full_s:6.2f} s  {rows / full_s:>10,.0f} rows/s  ({held:,} rows held)  [{_load()}]"
    )
    echo(
        f"drt {change_share:.0%} change ({changed:,} rows), whole run:                               {change_s:6.2f} s  "
        f"resends all {rows:,} rows (no diff against what PostgreSQL holds for a DuckDB source); {applied:,} changed rows applied"
    )


def _bench_http(con, workdir: Path, rows: int, change_share: float, repeats: int, echo) -> None:
    import json

    import httpx

    secret = "bench-secret"
    os.environ["CDP_BENCH_WEBHOOK_SECRET"] = secret
    inbox = WebhookInbox(workdir / "inbox", secret, persist=False).start()
    try:
        spec = _spec(
            workdir,
            "bench_http",
            f"  type: webhook\n  url: {inbox.url}\n  secret_env: CDP_BENCH_WEBHOOK_SECRET\n"
            f"  batch_size: {HTTP_BATCH}\n",
        )
        # Floor: the same operations as the engine sends (same JSON shape), POSTed back to back.
        sample = con.execute(
            f"select to_json(struct_pack({', '.join(f'{f} := {f}' for f in FIELDS)}))::varchar from segments.seg_bench"
        ).fetchall()
        bodies = []
        for start in range(0, len(sample), HTTP_BATCH):
            operations = [
                {"op": "upsert", "key": str(i), "idempotency_key": f"floor-{i}", "data": json.loads(r)}
                for i, (r,) in enumerate(sample[start : start + HTTP_BATCH], start=start)
            ]
            bodies.append(
                json.dumps(
                    {"sync": "floor", "run_id": "floor", "batch": start, "operations": operations},
                    separators=(",", ":"),
                ).encode()
            )
        del sample

        def raw_requests() -> None:
            inbox.seen.clear()
            inbox.held.clear()
            with httpx.Client(base_url=inbox.url) as client:
                for body in bodies:  # noqa: F821
                    client.post(
                        "",
                        content=body,
                        headers={"Content-Type": "application/json", "X-CDP-Signature": signature(secret, body)},
                    ).raise_for_status()

        floor_s = _median([_timed(raw_requests) for _ in range(repeats)])
        requests = len(bodies)
        del bodies

        def full_sync() -> None:
            _reset(con, spec.name)
            inbox.seen.clear()
            inbox.held.clear()
            activation.run_sync(con, spec, run_id="full", base_dir=workdir)

        full_s = _median([_timed(full_sync) for _ in range(repeats)])
        assert len(inbox.held) == rows
        durations = []
        for repeat in range(repeats):
            changed = _change(con, change_share)
            result = activation.run_sync(con, spec, run_id=f"change{repeat}", base_dir=workdir)
            assert result.sent == changed
            durations.append(result.duration_s)
        change_s = _median(durations)
        floor_rate, full_rate = rows / floor_s, rows / full_s
        echo(
            f"HTTP floor (raw signed POSTs, {requests:,} x {HTTP_BATCH} rows):  {floor_s:6.2f} s  {floor_rate:>10,.0f} rows/s "
            f"({requests / floor_s:,.0f} requests/s)"
        )
        echo(
            f"HTTP full sync (diff + send + state + ledger):      {full_s:6.2f} s  {full_rate:>10,.0f} rows/s  "
            f"= {full_rate / floor_rate:.0%} of the raw request rate  [{_load()}]"
        )
        echo(
            f"HTTP {change_share:.0%} change ({changed:,} rows), whole run:       {change_s:6.2f} s  "
            f"{changed / change_s:>10,.0f} changed rows/s  ({rows / change_s:,.0f} audience rows/s)"
        )
    finally:
        inbox.stop()
