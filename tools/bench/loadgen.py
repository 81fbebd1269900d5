"""The profile API's load generator, run as its own process by `cdp bench-serve`.

Open loop: request i is due at i / rate, whether or not earlier ones were answered; a pool of
keep-alive connections sends them, and latency is measured from when a request was due, so a server
that falls behind shows it (no coordinated omission). HTTP/1.1 is spoken directly over asyncio
streams: a general client (httpx) costs around a millisecond of CPU per request, which on a 2-core
machine would be taken from the server it measures.

    python -m tools.bench.loadgen REQUESTS.json RESULT.json --port N --rate R --duration S

REQUESTS.json: {"api_key": ..., "requests": [[path, expected_status], ...]}. RESULT.json: per request
[due offset s, latency ms (from due), round trip ms (sent to answered), status or 0, app ms, lookup ms]
(the last two from the server's Server-Timing header, -1 when absent), the errors, and this process's
CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

TIMEOUT_S = 10.0


def _server_timing(headers: list[bytes]) -> tuple[float, float]:
    app = lookup = -1.0
    for line in headers:
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"server-timing":
            continue
        for metric in value.decode().split(","):
            label, _, duration = metric.strip().partition(";dur=")
            if label == "app":
                app = float(duration)
            elif label == "lookup":
                lookup = float(duration)
    return app, lookup


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes):
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status, lines[1:]


async def run_load(
    host: str, port: int, api_key: str, requests: list[tuple[str, int]], rate: float, duration: float, connections: int
) -> dict:
    total = int(rate * duration)
    encoded = [
        (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {api_key}\r\n\r\n".encode(), expected)
        for path, expected in requests
    ]
    samples: list[list[float]] = []
    errors: list[str] = []
    next_index = 0
    begin = time.perf_counter() + 0.05

    async def worker() -> None:
        nonlocal next_index
        reader = writer = None
        while next_index < total:
            i = next_index
            next_index += 1
            due = begin + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            request, expected = encoded[i % len(encoded)]
            sent = time.perf_counter()
            status, app, lookup = 0, -1.0, -1.0
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
                status, headers = await asyncio.wait_for(_exchange(reader, writer, request), TIMEOUT_S)
                app, lookup = _server_timing(headers)
                if status != expected:
                    errors.append(f"{status} (expected {expected}) for request {i}")
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                errors.append(f"{type(error).__name__}: {error} for request {i}")
                if writer is not None:
                    writer.close()
                reader = writer = None
            answered = time.perf_counter()
            samples.append([due - begin, (answered - due) * 1000, (answered - sent) * 1000, status, app, lookup])
        if writer is not None:
            writer.close()

    started_cpu = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(connections)))
    ended_cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ended_cpu.ru_utime - started_cpu.ru_utime) + (ended_cpu.ru_stime - started_cpu.ru_stime)
    return {"samples": samples, "errors": errors, "cpu_s": cpu, "wall_s": time.perf_counter() - begin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requests", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    spec = json.loads(args.requests.read_text())
    try:
        from uvloop import run  # uvicorn's event loop too: the same cost per request on both ends
    except ImportError:
        run = asyncio.run
    result = run(
        run_load(
            args.host,
            args.port,
            spec["api_key"],
            [tuple(r) for r in spec["requests"]],
            args.rate,
            args.duration,
            args.connections,
        )
    )
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
