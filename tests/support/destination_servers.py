"""One real HTTP server on 127.0.0.1 implementing the contracts of the webhook, ad audience and email
tool destinations (as documented in activation/destinations/*.py), with injectable faults: 429 with
Retry-After, 5xx, slow replies (client timeouts), connection resets (before or after applying), and
per-row failures. It applies each operation once per idempotency key and remembers every delivery,
so tests can check the final state and count duplicates independently of the engine's ledger."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from activation.destinations.webhook import SIGNATURE_HEADER, verify_signature

HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DestinationServer:
    def __init__(self, secret: str = "test-secret", token: str = "test-token", port: int = 0):
        self.secret, self.token = secret, token
        self.lock = threading.Lock()
        self.faults: list[dict] = []  # consumed one per request, first in first out
        self.delay_s = 0.0  # added to every request (slow destination)
        self.reset_state()
        self.server: ThreadingHTTPServer | None = None
        self.port = port

    def reset_state(self) -> None:
        self.webhook_held: dict[str, dict] = {}
        self.applied_keys: Counter = Counter()  # idempotency key -> times applied (must stay 1)
        self.deliveries: Counter = Counter()  # idempotency key -> times received (repeats allowed)
        self.requests: list[tuple[str, str, int]] = []  # method, path, rows
        self.request_keys: dict[str, int] = {}  # webhook Idempotency-Key header -> rows of its first request
        self.request_count_by_key: Counter = Counter()  # webhook Idempotency-Key header -> requests carrying it
        self.members: dict[str, set[tuple]] = {}  # audience id -> identifier tuples
        self.contacts: dict[str, dict[str, dict]] = {}  # list id -> email -> contact
        self.faults, self.delay_s = [], 0.0
        self.hits = 0  # every request, faulty ones included
        self.in_flight = 0  # requests being handled now
        self.idle = threading.Condition(self.lock)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> DestinationServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.handle(self, self.command, self.path, body)

            do_POST = do_DELETE = do_GET = _handle  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port (connections are refused) until start() again."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- dispatch --------------------------------------------------------------------------------
    def reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: dict | None = None, headers: dict | None = None
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        try:
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client went away (killed, or timed out): what a real server sees too
            handler.close_connection = True

    def reset_connection(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        handler.connection.close()

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until no request is being handled (e.g. the one in flight when its client was killed)."""
        with self.idle:
            if not self.idle.wait_for(lambda: self.in_flight == 0, timeout=timeout_s):
                raise TimeoutError(f"{self.in_flight} request(s) still being handled after {timeout_s} s")

    def handle(self, handler, method: str, path: str, body: bytes) -> None:
        with self.lock:
            self.in_flight += 1
        try:
            self._handle(handler, method, path, body)
        finally:
            with self.idle:
                self.in_flight -= 1
                self.idle.notify_all()

    def _handle(self, handler, method: str, path: str, body: bytes) -> None:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else {}
            self.hits += 1
        time.sleep(self.delay_s + fault.get("sleep", 0))
        if "status" in fault:
            headers = {"Retry-After": fault["retry_after"]} if "retry_after" in fault else {}
            return self.reply(handler, fault["status"], {"error": f"injected {fault['status']}"}, headers)
        if fault.get("reset"):
            return self.reset_connection(handler)
        if path.startswith("/hook"):
            status, reply = self.webhook(handler, body, fault)
        elif path.startswith("/v1/audiences/"):
            status, reply = self.audience(handler, method, path, body)
        elif path.startswith("/3.0/lists/"):
            status, reply = self.email(handler, method, path, body)
        else:
            status, reply = 404, {"error": f"no route {path}"}
        if fault.get("reset_after_apply"):  # applied, but the client never hears back
            return self.reset_connection(handler)
        self.reply(handler, status, reply)

    # --- webhook -----------------------------------------------------------------------------------
    def webhook(self, handler, body: bytes, fault: dict) -> tuple[int, dict | None]:
        problem = verify_signature(self.secret, body, handler.headers.get(SIGNATURE_HEADER))
        if problem:
            return 401, {"error": problem}
        operations = json.loads(body)["operations"]
        fail_first = fault.get("fail_rows", 0)  # partial batch failure: the first N rows fail this time
        results = []
        with self.lock:
            self.requests.append(("POST", "/hook", len(operations)))
            header = handler.headers.get("Idempotency-Key") or ""
            self.request_keys.setdefault(header, len(operations))
            self.request_count_by_key[header] += 1
            for index, op in enumerate(operations):
                key = str(op["key"])
                if index < fail_first:
                    results.append({"key": key, "status": "failed", "error": "injected row failure"})
                    continue
                email = str((op.get("data") or {}).get("email") or "")
                if op["op"] == "upsert" and email.endswith(".invalid"):
                    results.append(
                        {"key": key, "status": "rejected", "error": f"undeliverable email {email}", "http_status": 422}
                    )
                    continue
                self.deliveries[op["idempotency_key"]] += 1
                if self.applied_keys[op["idempotency_key"]] == 0:
                    if op["op"] == "delete":
                        self.webhook_held.pop(key, None)
                    else:
                        self.webhook_held[key] = op["data"]
                    self.applied_keys[op["idempotency_key"]] += 1
                results.append({"key": key, "status": "ok"})
        return 200, {"results": results}

    # --- ad audience ---------------------------------------------------------------------------------
    def audience(self, handler, method: str, path: str, body: bytes) -> tuple[int, dict]:
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "invalid access token"}
        audience_id = path.split("/")[3]
        payload = json.loads(body)["payload"]
        if any(name not in ("EMAIL_SHA256", "PHONE_SHA256") for name in payload["schema"]):
            return 400, {"error": f"unknown schema {payload['schema']}"}
        invalid = {}
        with self.lock:
            self.requests.append((method, path, len(payload["data"])))
            members = self.members.setdefault(audience_id, set())
            for index, entry in enumerate(payload["data"]):
                if not any(value for value in entry) or any(v is not None and not HEX64.match(v) for v in entry):
                    invalid[str(index)] = "not a SHA-256 hex digest"
                elif method == "POST":
                    members.add(tuple(entry))
                else:
                    members.discard(tuple(entry))
        return 200, {
            "audience_id": audience_id,
            "num_received": len(payload["data"]),
            "num_invalid_entries": len(invalid),
            "invalid_entry_samples": invalid,
        }

    # --- email tool ----------------------------------------------------------------------------------
    def email(self, handler, method: str, path: str, body: bytes) -> tuple[int, dict | None]:
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "API key invalid"}
        parts = path.split("/")
        contacts = self.contacts.setdefault(parts[3], {})
        with self.lock:
            if method == "DELETE":
                self.requests.append((method, path, 1))
                email = next((e for e in contacts if hashlib.md5(e.encode()).hexdigest() == parts[5]), None)
                if email is None:
                    return 404, {"title": "Resource Not Found"}
                del contacts[email]
                return 204, None
            members = json.loads(body)["members"]
            self.requests.append((method, path, len(members)))
            new, updated, errors = [], [], []
            for member in members:
                email = member["email_address"].strip().lower()
                if "@" not in email or email.endswith(".invalid"):
                    errors.append(
                        {
                            "email_address": member["email_address"],
                            "error": "looks fake or invalid",
                            "error_code": "ERROR_GENERIC",
                        }
                    )
                    continue
                (updated if email in contacts else new).append({"email_address": email})
                contacts[email] = {"email_address": email, **member["merge_fields"]}
        return 200, {"new_members": new, "updated_members": updated, "errors": errors, "error_count": len(errors)}
