"""Webhook: JSON batches POSTed to a URL, signed with HMAC-SHA256.

The contract (what a receiver implements; activation/inbox.py is one):
  POST <url>
  X-CDP-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
  Idempotency-Key: <SHA-256 of the request's row idempotency keys, in order>
  {"sync": ..., "run_id": ..., "batch": n,
   "operations": [{"op": "upsert"|"delete", "key": ..., "idempotency_key": ..., "data": {...}}]}
Reply 2xx with {"results": [{"key": ..., "status": "ok"|"duplicate"|"rejected"|"failed", "error": ...}]}
for per-row outcomes (rows it does not list, and "duplicate", count as delivered; an empty 2xx accepts
the whole batch); 429/5xx are retried; any other 4xx rejects the batch's rows with the reply's reason.

Deduplicate on the per-row idempotency_key: it names one intended operation (a member who leaves and
comes back gets a new one) and is repeated by every retry of that operation, within the run and by
later runs, including after a crash. The request's Idempotency-Key header is the same for retries of a
request within a run, and a rerun after a crash cuts the uncommitted rows into the same requests again
(the change set is sent in a fixed order), so it usually repeats too; but it changes when the rows to
send differ (some failed, the audience changed meanwhile): it is no substitute for the row key."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from activation.destinations import Batch, BatchResult, RowOperation
from activation.destinations.http import HttpClient, HttpOutcome, HttpPolicy
from activation.spec import SyncSpec

SIGNATURE_HEADER = "X-CDP-Signature"
SIGNATURE_TOLERANCE_S = 300


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str | None, now: float | None = None) -> str | None:
    """None when the header signs this body with this secret recently; else what is wrong."""
    try:
        parts = dict(item.split("=", 1) for item in (header or "").split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return f"missing or malformed {SIGNATURE_HEADER} header"
    if abs((now or time.time()) - timestamp) > SIGNATURE_TOLERANCE_S:
        return "signature timestamp outside the tolerance (replayed or clock skew)"
    if not hmac.compare_digest(signature(secret, body, timestamp), header or ""):
        return "signature does not match the body"
    return None


def operation_payload(operation: RowOperation, op: str) -> dict:
    return {"op": op, "key": operation.key, "idempotency_key": operation.idempotency_key, "data": operation.row}


def batch_body(sync_name: str, run_id: str, number: int, operations: list[tuple[RowOperation, str]]) -> bytes:
    """The batch's JSON body, the rows' JSON (rendered in the warehouse) spliced in as they are: no
    parse and re-serialization per row. Same document as json.dumps of the operation_payload list."""
    head = json.dumps({"sync": sync_name, "run_id": run_id, "batch": number}, separators=(",", ":"))[:-1]
    parts = [
        f'{{"op":"{kind}","key":{json.dumps(op.key)},"idempotency_key":{json.dumps(op.idempotency_key)},'
        f'"data":{op.row_json or "null"}}}'
        for op, kind in operations
    ]
    return f'{head},"operations":[{",".join(parts)}]}}'.encode()


@dataclass
class WebhookDestination:
    sync_name: str
    client: HttpClient
    url: str
    secret: str
    policy: HttpPolicy
    inbox: object | None = None  # the built-in receiver this destination started, stopped on close()

    @property
    def batch_size(self) -> int:
        return self.policy.batch_size

    @classmethod
    def from_settings(cls, spec: SyncSpec, base_dir: Path) -> WebhookDestination:
        policy = HttpPolicy.from_spec(spec)
        inbox = None
        if spec.setting("local_inbox"):
            from activation.inbox import WebhookInbox

            # The built-in receiver runs in this process for the duration of the sync: with no
            # secret configured, sender and receiver share a random one (nothing leaves 127.0.0.1).
            secret = spec.secret("secret_env", required=False) or secrets.token_hex(32)
            directory = Path(spec.setting("local_inbox"))
            inbox = WebhookInbox(directory if directory.is_absolute() else Path(base_dir) / directory, secret)
            inbox.start()
            url = inbox.url
        else:
            secret = spec.secret("secret_env")
            url = spec.url()
        return cls(spec.name, HttpClient(url, policy), url, secret, policy, inbox)

    def send(self, batch: Batch) -> BatchResult:
        pending = {op.key: (op, "upsert") for op in batch.upsert_operations}
        pending.update({op.key: (op, "delete") for op in batch.delete_operations})
        rejected: dict[str, str] = {}
        codes: dict[str, int] = {}
        attempts = 0
        outcome: HttpOutcome | None = None
        last_failures: dict[str, str] = {}
        # Rows the receiver reports as failed (a partial batch failure) are resent alone, within the
        # same attempt budget as whole-batch retries.
        while pending and attempts < self.policy.max_attempts:
            if attempts:
                time.sleep(self.policy.backoff(attempts))
            body = batch_body(self.sync_name, batch.run_id, batch.number, list(pending.values()))
            batch_key = hashlib.sha256("".join(op.idempotency_key for op, _ in pending.values()).encode()).hexdigest()
            outcome = self.client.request(
                "POST",
                "",
                headers={"Idempotency-Key": batch_key},
                content=body,
                sign=lambda body: {"X-CDP-Signature": signature(self.secret, body)},
            )
            attempts += outcome.attempts
            if not outcome.ok:
                for key in pending:
                    codes[key] = outcome.status
                if outcome.transient:
                    return BatchResult(
                        failed={k: outcome.reason() for k in pending},
                        rejected=rejected,
                        http_status=codes,
                        attempts=attempts,
                        retries=attempts - 1,
                    )
                rejected.update({k: outcome.reason() for k in pending})
                return BatchResult(rejected=rejected, http_status=codes, attempts=attempts, retries=attempts - 1)
            results = outcome.body.get("results", []) if isinstance(outcome.body, dict) else []
            still_failing = {}
            for item in results:
                key = str(item.get("key"))
                if key not in pending:
                    continue
                if item.get("status") == "rejected":
                    rejected[key] = str(item.get("error") or "rejected by the receiver")
                    codes[key] = int(item.get("http_status") or outcome.status)
                elif item.get("status") == "failed":
                    still_failing[key] = str(item.get("error") or "failed at the receiver")
            pending = {k: v for k, v in pending.items() if k in still_failing}
            last_failures = still_failing
        failed = {k: f"{last_failures[k]} (after {attempts} attempts)" for k in pending} if pending else {}
        return BatchResult(
            failed=failed,
            rejected=rejected,
            http_status=codes,
            default_http_status=outcome.status if outcome else None,
            attempts=attempts,
            retries=max(0, attempts - 1),
        )

    def close(self) -> None:
        self.client.close()
        if self.inbox is not None:
            self.inbox.stop()
