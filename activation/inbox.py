"""The webhook inbox: a small receiver of the webhook contract (activation/destinations/webhook.py)
on 127.0.0.1, shipped so the demo pipeline can sync to a real webhook with nothing else running.
It verifies each batch's HMAC signature, drops operations whose idempotency key it has applied,
writes every accepted batch to <dir>/received__<run>__<batch>.jsonl and the rows it holds to
<dir>/held.jsonl (both atomically). Held rows survive restarts; the seen idempotency keys too."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from activation.destinations.webhook import SIGNATURE_HEADER, verify_signature


def _write_lines(path: Path, lines: list[str]) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))
    os.replace(temp_name, path)


class WebhookInbox:
    def __init__(self, directory: Path, secret: str, host: str = "127.0.0.1", port: int = 0, persist: bool = True):
        self.directory, self.secret, self.persist = Path(directory), secret, persist
        self.lock = threading.Lock()
        self.held: dict[str, dict] = {}
        self.seen: set[str] = set()
        self.requests = 0
        if persist:
            self.directory.mkdir(parents=True, exist_ok=True)
            held_path, seen_path = self.directory / "held.jsonl", self.directory / "seen_keys.txt"
            if held_path.exists():
                self.held = {
                    str(row["key"]): row["data"] for row in map(json.loads, held_path.read_text().splitlines())
                }
            if seen_path.exists():
                self.seen = set(seen_path.read_text().split())
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, reply = inbox.receive(body, self.headers.get(SIGNATURE_HEADER))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet: the sync reports what happened
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def receive(self, body: bytes, signature_header: str | None) -> tuple[int, dict]:
        problem = verify_signature(self.secret, body, signature_header)
        if problem:
            return 401, {"error": problem}
        try:
            batch = json.loads(body)
            operations = batch["operations"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "body is not a JSON object with an operations list"}
        with self.lock:
            self.requests += 1
            fresh = [op for op in operations if op["idempotency_key"] not in self.seen]
            for op in fresh:
                if op["op"] == "delete":
                    self.held.pop(str(op["key"]), None)
                else:
                    self.held[str(op["key"])] = op["data"]
                self.seen.add(op["idempotency_key"])
            if self.persist and fresh:
                name = f"received__{batch.get('run_id', 'run')}__{int(batch.get('batch', 0)):05d}.jsonl"
                _write_lines(self.directory / name, [json.dumps(op) for op in fresh])
                _write_lines(
                    self.directory / "held.jsonl",
                    [json.dumps({"key": k, "data": v}) for k, v in sorted(self.held.items())],
                )
                _write_lines(self.directory / "seen_keys.txt", sorted(self.seen))
        # Repeats (a rerun after a crash resends the rows of its uncommitted window) are acknowledged
        # and named: "duplicate" counts as delivered for the sender.
        fresh_keys = {op["idempotency_key"] for op in fresh}
        return 200, {
            "results": [
                {"key": op["key"], "status": "ok" if op["idempotency_key"] in fresh_keys else "duplicate"}
                for op in operations
            ]
        }

    def start(self) -> WebhookInbox:
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-inbox", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def erase_from_inbox(directory: Path, values: set[str]) -> int:
    """Privacy erasure in a local inbox's files (the received log and seen keys, after the held rows
    were deleted through the API): drop every line holding one of the values. Returns lines removed."""
    lowered = [v.lower() for v in values if v]
    removed = 0
    for path in sorted(Path(directory).glob("*")):
        if path.suffix not in (".jsonl", ".txt") or not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if not any(value in line.lower() for value in lowered)]
        if len(kept) != len(lines):
            removed += len(lines) - len(kept)
            _write_lines(path, kept)
    return removed
