"""The HTTP layer the API destinations share: timeouts, exponential backoff with jitter, Retry-After
on 429 (and 503), retries of 5xx and connection errors, a request rate limit. Other 4xx are final:
the caller treats the rows as rejected with the server's reason."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from activation.spec import SyncSpec

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpPolicy:
    batch_size: int = 500
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_s: float = 0.5  # first retry waits about this long, doubling each time, with jitter
    max_backoff_s: float = 30.0  # also caps a server's Retry-After
    rate_limit_per_s: float | None = None

    @classmethod
    def from_spec(cls, spec: SyncSpec) -> HttpPolicy:
        defaults = cls()
        return cls(
            **{
                name: type(getattr(defaults, name) or 0.0)(spec.setting(name))
                if spec.setting(name) is not None
                else getattr(defaults, name)
                for name in cls.__dataclass_fields__
            }
        )

    def backoff(self, attempt: int) -> float:
        """Equal jitter: half the exponential delay for sure, the other half at random, so many
        clients retrying together spread out."""
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, moment.timestamp() - time.time())


class RateLimiter:
    """At most `per_second` requests per second (evenly spaced), across threads."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            wait = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if wait > 0:
            time.sleep(wait)


@dataclass(frozen=True)
class HttpOutcome:
    """The last response (or transport error) of a request after its retries."""

    status: int | None  # None: no response (timeout, connection refused or reset)
    body: Any  # parsed JSON, or the text when not JSON, or None
    error: str | None  # set when the request did not succeed: what went wrong, last attempt
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """Worth retrying on the next run (the server was down, overloaded or slow)."""
        return self.status is None or self.status in RETRYABLE_STATUS

    def reason(self) -> str:
        if isinstance(self.body, dict):
            for key in ("error", "detail", "message", "title"):
                if self.body.get(key):
                    return f"HTTP {self.status}: {self.body[key]}"
        return f"HTTP {self.status}: {str(self.body)[:300]}" if self.status else str(self.error)


class HttpClient:
    def __init__(self, base_url: str, policy: HttpPolicy, headers: dict[str, str] | None = None):
        self.policy = policy
        self.limiter = RateLimiter(policy.rate_limit_per_s)
        self.client = httpx.Client(base_url=base_url, timeout=policy.timeout_s, headers=headers or {})

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: dict[str, str] | None = None,
        sign: Any = None,
        content: bytes | None = None,
    ) -> HttpOutcome:
        """Send with retries. `sign(body_bytes) -> headers` adds a signature per attempt (fresh timestamp).
        `content`: the JSON body already serialized (instead of `payload`)."""
        body = (
            content
            if content is not None
            else json.dumps(payload, separators=(",", ":")).encode()
            if payload is not None
            else None
        )
        status, parsed, error = None, None, None
        for attempt in range(1, self.policy.max_attempts + 1):
            self.limiter.wait()
            request_headers = {"Content-Type": "application/json", **(headers or {}), **(sign(body) if sign else {})}
            wait = None
            try:
                response = self.client.request(method, path, content=body, headers=request_headers)
            except httpx.TransportError as failure:  # timeouts, refused and reset connections
                status, parsed, error = None, None, f"{type(failure).__name__}: {failure or 'no response'}"
            else:
                status, parsed = response.status_code, _parse(response)
                if status not in RETRYABLE_STATUS:
                    return HttpOutcome(status, parsed, None if response.is_success else f"HTTP {status}", attempt)
                error = f"HTTP {status}"
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt < self.policy.max_attempts:
                time.sleep(min(wait, self.policy.max_backoff_s) if wait is not None else self.policy.backoff(attempt))
        return HttpOutcome(
            status, parsed, f"{error} after {self.policy.max_attempts} attempts", self.policy.max_attempts
        )

    def close(self) -> None:
        self.client.close()


def _parse(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
