"""`cdp bench-sync`: diff and sync throughput on an N-row audience, first a full sync and then a
change of a share of the rows, to PostgreSQL and to an HTTP server, each next to a floor measured in
the same run: a plain COPY of the same rows into the same table shape, and the HTTP server's raw
request rate (the same signed batches POSTed back to back, no engine). Medians of --repeats."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

import activation
from activation.destinations.webhook import signature
from activation.inbox import WebhookInbox
from orchestration.local_postgres import LocalPostgres, wait_until_ready

FIELDS = ("profile_id", "email", "first_name", "last_name", "lifetime_revenue")
HTTP_BATCH = 1000


def _spec(directory: Path, name: str, destination: str) -> activation.SyncSpec:
    path = directory / f"{name}.yml"
    fields = "".join(f"  {f}: {f}\n" for f in FIELDS)
    path.write_text(f"name: {name}\naudience: segments.seg_bench\nprimary_key: profile_id\nmode: mirror\n"
                    f"guard: {{max_remove_share: 1}}\nfields:\n{fields}destination:\n{destination}")
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


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_sync_benchmark(rows: int, *, change_share: float, repeats: int, echo: Callable[[str], None]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cdp-bench-sync-"))
    try:
        with duckdb.connect(str(workdir / "w.duckdb")) as con, LocalPostgres() as pg:
            wait_until_ready(pg.dsn)
            _make_audience(con, rows)
            echo(f"audience: {rows:,} rows, {len(FIELDS)} fields; change: {change_share:.0%} of rows; "
                 f"medians of {repeats}; {os.cpu_count()} cores")
            diff_spec = _spec(workdir, "bench_diff", "  type: file\n  format: csv\n  path: out\n")
            diff_s = _median([_timed(lambda: activation.plan_sync(con, diff_spec)) for _ in range(repeats)])
            echo(f"diff (first sync, all rows added):   {diff_s:6.2f} s  ({rows / diff_s:,.0f} rows/s)  goal < 5 s")
            _bench_postgres(con, workdir, pg, rows, change_share, repeats, echo)
            _make_audience(con, rows)
            _bench_http(con, workdir, rows, change_share, repeats, echo)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _reset(con: duckdb.DuckDBPyConnection, sync_name: str) -> None:
    for table in ("sync_state", "sync_ledger", "sync_runs"):
        con.execute(f"delete from activation.{table} where sync_name = ?", [sync_name])


def _bench_postgres(con, workdir: Path, pg: LocalPostgres, rows: int, change_share: float, repeats: int, echo) -> None:
    import psycopg

    os.environ["CDP_BENCH_PG_DSN"] = pg.dsn
    spec = _spec(workdir, "bench_pg", "  type: postgres\n  dsn_env: CDP_BENCH_PG_DSN\n  table: bench.audience\n")
    columns = ", ".join(f"{f} text" for f in FIELDS)
    data = con.execute(f"select {', '.join(f'cast({f} as varchar)' for f in FIELDS)} from segments.seg_bench").fetchall()
    with psycopg.connect(pg.dsn, autocommit=True) as pgc:
        pgc.execute("create schema if not exists bench")
        pgc.execute(f"create table bench.copy_floor ({columns}, primary key (profile_id))")

        def copy_floor() -> None:
            pgc.execute("truncate bench.copy_floor")
            with pgc.transaction(), pgc.cursor() as cursor, cursor.copy(
                    f"copy bench.copy_floor ({', '.join(FIELDS)}) from stdin") as copy:
                for row in data:
                    copy.write_row(row)

        floor_s = _median([_timed(copy_floor) for _ in range(repeats)])
        del data

        def full_sync() -> None:
            _reset(con, spec.name)
            pgc.execute("drop table if exists bench.audience")
            activation.run_sync(con, spec, run_id="full", base_dir=workdir)

        full_s = _median([_timed(full_sync) for _ in range(repeats)])
        assert pgc.execute("select count(*) from bench.audience").fetchone()[0] == rows
    changed = _change(con, change_share)
    result = activation.run_sync(con, spec, run_id="change", base_dir=workdir)
    change_s = result.duration_s
    assert result.changed == changed and result.sent == changed
    floor_rate, full_rate = rows / floor_s, rows / full_s
    echo(f"PostgreSQL floor (COPY, same rows and table shape): {floor_s:6.2f} s  {floor_rate:>10,.0f} rows/s")
    echo(f"PostgreSQL full sync (diff + send + ledger):        {full_s:6.2f} s  {full_rate:>10,.0f} rows/s  "
         f"= {full_rate / floor_rate:.0%} of COPY (goal >= 50%)")
    echo(f"PostgreSQL {change_share:.0%} change ({changed:,} rows):            {change_s:6.2f} s  "
         f"{changed / change_s:>10,.0f} changed rows/s  ({rows / change_s:,.0f} audience rows/s)")


def _bench_http(con, workdir: Path, rows: int, change_share: float, repeats: int, echo) -> None:
    import json

    import httpx

    secret = "bench-secret"
    os.environ["CDP_BENCH_WEBHOOK_SECRET"] = secret
    inbox = WebhookInbox(workdir / "inbox", secret, persist=False).start()
    try:
        spec = _spec(workdir, "bench_http", f"  type: webhook\n  url: {inbox.url}\n  secret_env: CDP_BENCH_WEBHOOK_SECRET\n"
                                            f"  batch_size: {HTTP_BATCH}\n")
        # Floor: the same operations as the engine sends (same JSON shape), POSTed back to back.
        sample = con.execute(f"select to_json(struct_pack({', '.join(f'{f} := {f}' for f in FIELDS)}))::varchar "
                             f"from segments.seg_bench").fetchall()
        bodies = []
        for start in range(0, len(sample), HTTP_BATCH):
            operations = [{"op": "upsert", "key": str(i), "idempotency_key": f"floor-{i}", "data": json.loads(r)}
                          for i, (r,) in enumerate(sample[start:start + HTTP_BATCH], start=start)]
            bodies.append(json.dumps({"sync": "floor", "run_id": "floor", "batch": start, "operations": operations},
                                     separators=(",", ":")).encode())
        del sample

        def raw_requests() -> None:
            inbox.seen.clear()
            inbox.held.clear()
            with httpx.Client(base_url=inbox.url) as client:
                for body in bodies:
                    client.post("", content=body, headers={"Content-Type": "application/json",
                                                           "X-CDP-Signature": signature(secret, body)}).raise_for_status()

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
        changed = _change(con, change_share)
        result = activation.run_sync(con, spec, run_id="change", base_dir=workdir)
        assert result.sent == changed
        floor_rate, full_rate = rows / floor_s, rows / full_s
        echo(f"HTTP floor (raw signed POSTs, {requests:,} x {HTTP_BATCH} rows):  {floor_s:6.2f} s  {floor_rate:>10,.0f} rows/s "
             f"({requests / floor_s:,.0f} requests/s)")
        echo(f"HTTP full sync (diff + send + ledger):              {full_s:6.2f} s  {full_rate:>10,.0f} rows/s  "
             f"= {full_rate / floor_rate:.0%} of the raw request rate")
        echo(f"HTTP {change_share:.0%} change ({changed:,} rows):                  {result.duration_s:6.2f} s  "
             f"{changed / result.duration_s:>10,.0f} changed rows/s  ({rows / result.duration_s:,.0f} audience rows/s)")
    finally:
        inbox.stop()
