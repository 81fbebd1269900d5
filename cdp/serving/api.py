"""`cdp serve`: a read-only HTTP API over the serving store (FastAPI on uvicorn).

Every request but /health needs an API key in the X-API-Key header. Keys come from the environment:
CDP_API_KEYS_FULL (comma-separated) see direct identifiers; CDP_API_KEYS_MASKED see what the BI-safe
views show (schema bi: emails as a***@domain, phones as ***12, identifiers as hashes). A missing or
wrong key gets 401 before anything is looked up, so it learns nothing about which profiles exist.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the nested endpoint
# functions, whose dependencies are local names.
import datetime as dt
import hmac
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from cdp.serving.documents import (
    DOCUMENT_EVENTS,
    MASKING_RULES_TABLE,
    NAMESPACE,
    InvalidIdentifier,
    mask_value,
    masking_key,
    recent_events,
    sql_literal,
)
from cdp.serving.documents import normalize_identifier as normalize_identifier_as_stored
from cdp.serving.publish import PUBLICATIONS_TABLE
from cdp.serving.store import PublishedStore, StoreUnavailable

API_KEY_HEADER = "X-API-Key"
FULL_KEYS_ENV = "CDP_API_KEYS_FULL"
MASKED_KEYS_ENV = "CDP_API_KEYS_MASKED"
SEGMENT_NAME = NAMESPACE
# Per client (address): requests per second (a burst of twice that), and wrong or missing keys per
# minute (a burst of that many). Past either, 429 with Retry-After for every request of the client, a
# right key included: a client guessing keys learns nothing more until its budget refills.
REQUESTS_PER_S_ENV = "CDP_API_REQUESTS_PER_S"
FAILED_KEYS_PER_MINUTE_ENV = "CDP_API_FAILED_KEYS_PER_MINUTE"
DEFAULT_REQUESTS_PER_S = 500.0
DEFAULT_FAILED_KEYS_PER_MINUTE = 60.0
MAX_TRACKED_CLIENTS = 10_000
# CDP_API_SERVER_TIMING=1: every response carries a Server-Timing header (app: from the request reaching
# the app to its response starting; lookup: the read model probe), which `cdp bench-serve` splits latency by.
# Off by default: timings are nothing a client needs.
SERVER_TIMING_ENV = "CDP_API_SERVER_TIMING"
log = logging.getLogger("cdp.serving.api")


class ClientBuckets:
    """A token bucket per client: `rate` tokens per second up to `burst`; take() says how long to wait
    (0: go). Forgets the oldest clients past MAX_TRACKED_CLIENTS."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self.lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self.buckets.get(client, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def wait_s(self, client: str) -> float:
        """Seconds until the client has a token again (0: it has one now); takes nothing."""
        with self.lock:
            tokens = self._tokens(client, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, client: str) -> float:
        with self.lock:
            now = time.monotonic()
            tokens = self._tokens(client, now)
            if tokens < 1:
                self.buckets[client] = (tokens, now)
                return (1 - tokens) / self.rate
            self.buckets[client] = (tokens - 1, now)
            if len(self.buckets) > MAX_TRACKED_CLIENTS:
                for stale in list(self.buckets)[: len(self.buckets) - MAX_TRACKED_CLIENTS]:
                    del self.buckets[stale]
            return 0.0


def _too_many(wait_s: float, what: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"too many {what} from this client; retry after the Retry-After seconds"},
        status_code=429,
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


class FrontDoor:
    """What every request meets before FastAPI, as a plain ASGI middleware (the decorator kind,
    BaseHTTPMiddleware, runs each request through a second task and memory streams):
    1. per-client limits (requests, and wrong keys): 429 with Retry-After;
    2. the common lookup answered at once: `fast_path(scope)` returns the stored document of a
       GET /profiles/{namespace}/{value} that will be 200, else None and FastAPI handles the request
       (every error, query parameters, the other routes). In a profile of the API under load, FastAPI's
       routing and dependency injection took about two thirds of the server's CPU per lookup; the
       answer is the same bytes either way (tests compare both);
    3. with `timing`, a Server-Timing header: `lookup` (the read model) and `app` (from here to the
       response's start)."""

    def __init__(self, app, request_budget: ClientBuckets, failed_key_budget: ClientBuckets, timing: bool, fast_path):
        self.app = app
        self.request_budget, self.failed_key_budget, self.timing = request_budget, failed_key_budget, timing
        self.fast_path = fast_path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        client = scope["client"][0] if scope.get("client") else "unknown"
        locked_out = self.failed_key_budget.wait_s(client)
        wait = self.request_budget.take(client) if not locked_out else 0.0
        if locked_out or wait:
            what = "requests with a wrong or missing API key" if locked_out else "requests"
            await _too_many(locked_out or wait, what)(scope, receive, send)
            return
        answered = self.fast_path(scope)
        if answered is not None:
            document, lookup_ms = answered
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(document)).encode())]
            if self.timing:
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"lookup;dur={lookup_ms:.3f}, app;dur={elapsed_ms:.3f}".encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": document})
            return
        if not self.timing:
            await self.app(scope, receive, send)
            return

        async def send_with_timing(message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers = [*message.get("headers", ()), (b"server-timing", f"app;dur={elapsed_ms:.3f}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_timing)


class Scope(StrEnum):
    full = "full"
    masked = "masked"


@dataclass(frozen=True)
class ApiKeys:
    full: frozenset[str]
    masked: frozenset[str]

    @classmethod
    def from_env(cls) -> "ApiKeys":
        def keys(name: str) -> frozenset[str]:
            return frozenset(k.strip() for k in os.environ.get(name, "").split(",") if k.strip())

        return cls(full=keys(FULL_KEYS_ENV), masked=keys(MASKED_KEYS_ENV))

    def scope_of(self, presented: str | None) -> Scope | None:
        if not presented:
            return None
        # compare_digest against every key: the time taken does not tell which keys exist
        full = any(hmac.compare_digest(presented.encode(), key.encode()) for key in self.full)
        masked = any(hmac.compare_digest(presented.encode(), key.encode()) for key in self.masked)
        return Scope.full if full else Scope.masked if masked else None


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when nothing is published")
    run_id: str | None = None
    started_at: dt.datetime | None = None
    published_at: dt.datetime | None = None
    age_seconds: float | None = None
    row_counts: dict[str, int] = {}
    detail: str | None = None


class Identity(BaseModel):
    namespace: str
    value: str = Field(description="masked scope: a stable hash, not the value")
    first_seen_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    record_count: int
    source_tables: str | None


class Consent(BaseModel):
    purpose: str
    value: str = Field(description="y, n or unknown (nobody decided); only y is consent")
    decided_at: dt.datetime | None


class Event(BaseModel):
    event_id: str
    event_type: str = Field(description="XDM eventType, e.g. commerce.purchases")
    occurred_at: dt.datetime | None
    channel: str | None
    source_table: str | None
    order_total: float | None
    currency_code: str | None


class AttributeSource(BaseModel):
    source_table: str
    record_id: str = Field(description="the source record the merge policy took the attribute from")
    merge_rule: str = Field(description="most_recent, least_recent, source_precedence, most_frequent or most_filled")
    updated_at: dt.datetime | None


class Profile(BaseModel):
    profile_id: str
    published_run_id: str
    scope: Scope
    attributes: dict[str, Any] = Field(description="the golden record (table profiles)")
    attribute_sources: dict[str, AttributeSource] = Field(
        default_factory=dict, description="per attribute, where its value came from (table profile_attribute_lineage)"
    )
    traits: dict[str, Any] | None = Field(description="computed traits (table profile_traits)")
    predictions: dict[str, Any] | None = Field(description="predictive traits (table profile_predictions)")
    segments: list[str]
    consents: list[Consent]
    identities: list[Identity]
    recent_events: list[Event]


class SegmentSize(BaseModel):
    name: str
    members: int


class SegmentList(BaseModel):
    published_run_id: str
    segments: list[SegmentSize]


class SegmentMembers(BaseModel):
    segment: str
    published_run_id: str
    scope: Scope
    members: list[dict[str, Any]]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # money as a JSON number, not a string
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # the warehouse keeps UTC; say so (RFC 3339 date-time)
    if "top_factors" in name and isinstance(value, str):
        return json.loads(value)  # the predictions' factor lists are stored as JSON text
    return value


def normalize_identifier(namespace: str, value: str) -> str:
    try:
        return normalize_identifier_as_stored(namespace, value)
    except InvalidIdentifier as error:
        raise HTTPException(422, str(error)) from None


DOCS_ASSETS = "/docs-assets"


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the assets the fastapi-offline package ships, so the pages
    render on an air-gapped laptop; no key needed, as for /openapi.json."""
    from pathlib import Path as FilePath

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = FilePath(fastapi_offline.__file__).parent / "static"
    # ReDoc's bundle draws its footer logo from its CDN: served with the local favicon instead.
    redoc_js = (assets / "redoc.standalone.js").read_text(encoding="utf-8")
    redoc_js = redoc_js.replace("https://cdn.redoc.ly/redoc/logo-mini.svg", f"{DOCS_ASSETS}/favicon.png")

    @app.get(f"{DOCS_ASSETS}/redoc.standalone.js", include_in_schema=False)
    def redoc_bundle() -> Response:
        return Response(redoc_js, media_type="application/javascript")

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def create_app(
    store_path: Path,
    keys: ApiKeys | None = None,
    pool_size: int = 8,
    requests_per_s: float | None = None,
    failed_keys_per_minute: float | None = None,
) -> FastAPI:
    keys = keys or ApiKeys.from_env()
    store = PublishedStore(store_path, pool_size=pool_size)
    requests_per_s = requests_per_s or float(os.environ.get(REQUESTS_PER_S_ENV) or DEFAULT_REQUESTS_PER_S)
    failed_per_minute = failed_keys_per_minute or float(
        os.environ.get(FAILED_KEYS_PER_MINUTE_ENV) or DEFAULT_FAILED_KEYS_PER_MINUTE
    )
    request_budget = ClientBuckets(requests_per_s, 2 * requests_per_s)
    failed_key_budget = ClientBuckets(failed_per_minute / 60.0, failed_per_minute)
    timing = os.environ.get(SERVER_TIMING_ENV, "") not in ("", "0")
    app = FastAPI(
        title="CDP profile API",
        version="1",
        description="Read-only lookups of unified profiles, traits, consents, segments and events from "
        "the last published pipeline run. Send an API key in the X-API-Key header.",
        docs_url=None,  # served below from local assets: the default pages load Swagger UI / ReDoc from a CDN
        redoc_url=None,
    )
    _offline_docs(app)
    api_key_header = APIKeyHeader(
        name=API_KEY_HEADER,
        auto_error=False,
        description="full scope: direct identifiers; masked scope: BI-safe fields",
    )

    def stored_document(request_scope) -> tuple[bytes, float] | None:
        """The document of GET /profiles/{namespace}/{value} (no query, a valid key, a profile that holds
        the identifier) and the lookup's milliseconds; None for anything else, which FastAPI answers."""
        if request_scope["method"] != "GET" or request_scope["query_string"]:
            return None
        parts = request_scope["path"].split("/")
        if len(parts) != 4 or parts[1] != "profiles" or not parts[2] or not parts[3]:
            return None
        presented = next((value for name, value in request_scope["headers"] if name == b"x-api-key"), None)
        granted = keys.scope_of(presented.decode("latin-1")) if presented else None
        if granted is None:
            return None
        try:
            normalized = normalize_identifier_as_stored(parts[2], parts[3])
        except InvalidIdentifier:
            return None
        started = time.perf_counter()
        try:
            found, _ = store.find_profile(parts[2], normalized, granted is Scope.masked)
        except StoreUnavailable:
            return None
        if found is None:
            return None
        return found.document, (time.perf_counter() - started) * 1000

    app.add_middleware(
        FrontDoor,
        request_budget=request_budget,
        failed_key_budget=failed_key_budget,
        timing=timing,
        fast_path=stored_document,
    )

    async def scope(request: Request, presented: Annotated[str | None, Security(api_key_header)]) -> Scope:
        granted = keys.scope_of(presented)
        if granted is None:
            failed_key_budget.take(request.client.host if request.client else "unknown")
            raise HTTPException(
                401, f"missing or invalid API key (header {API_KEY_HEADER})", headers={"WWW-Authenticate": "APIKey"}
            )
        return granted

    @app.exception_handler(StoreUnavailable)
    def store_unavailable(_request, error: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    errors = {
        401: {"model": Problem, "description": "no or wrong API key"},
        429: {"model": Problem, "description": "too many requests, or too many wrong keys, from this client"},
        503: {"model": Problem, "description": "nothing published yet"},
    }

    def schema_of(scope_: Scope, table: str) -> str:
        return (
            f"bi.{table}"
            if scope_ is Scope.masked
            else f"{'segments' if table.startswith('seg') else 'profiles'}.{table}"
        )

    cached_rules: dict[str, dict[str, dict[str, str]]] = {}

    def masking_rules(cursor) -> dict[str, dict[str, str]]:
        """table -> column -> masking, as the publication recorded them (cached per published run)."""
        run_id = published_run_id(cursor)
        if run_id not in cached_rules:
            rules: dict[str, dict[str, str]] = {}
            for table, column, masking in cursor.execute(f"select * from {MASKING_RULES_TABLE}").fetchall():
                rules.setdefault(table, {})[column] = masking
            cached_rules.clear()
            cached_rules[run_id] = rules
        return cached_rules[run_id]

    def published_run_id(cursor) -> str:
        return cursor.execute(f"select run_id from {PUBLICATIONS_TABLE} order by published_at desc limit 1").fetchone()[
            0
        ]

    def rows(cursor, sql: str) -> list[dict[str, Any]]:
        result = cursor.execute(sql)
        names = [d[0] for d in result.description]
        return [{name: _json_value(name, value) for name, value in zip(names, row)} for row in result.fetchall()]

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Health | JSONResponse:
        """The published run (id, when it was built and published, its age, row counts). No key needed."""
        try:
            with store.cursor() as cursor:
                run_id, started_at, published_at, counts = cursor.execute(
                    f"select run_id, started_at, published_at, row_counts from {PUBLICATIONS_TABLE} "
                    "order by published_at desc limit 1"
                ).fetchone()
        except StoreUnavailable as error:
            # No key is needed here: say nothing about where the store is or what the database said.
            log.warning("health: serving store unavailable: %s", error)
            return JSONResponse(
                Health(status="unavailable", detail="nothing readable is published yet").model_dump(mode="json"), 503
            )
        age = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - published_at).total_seconds()
        return Health(
            status="ok",
            run_id=run_id,
            started_at=_json_value("started_at", started_at),
            published_at=_json_value("published_at", published_at),
            age_seconds=round(age, 1),
            row_counts=json.loads(counts),
        )

    @app.get(
        "/profiles/{namespace}/{value}",
        response_model=Profile,
        responses={
            **errors,
            404: {"model": Problem, "description": "no profile has this identifier"},
            422: {"model": Problem, "description": "malformed namespace or value"},
        },
    )
    # async: the lookup is one B-tree probe in the memory-mapped read model (microseconds); a thread pool
    # hop would cost more than it.
    async def get_profile(
        namespace: Annotated[str, PathParam(description="identity namespace, e.g. email, phone, cookie_id, crm_id")],
        value: Annotated[str, PathParam(description="the identifier; emails and phones are normalized first")],
        scope_: Annotated[Scope, Depends(scope)],
        events: Annotated[int, Query(ge=0, le=500, description="how many recent events to include")] = DOCUMENT_EVENTS,
    ) -> Profile:
        """The profile that holds an identifier: attributes, traits, predictions, segments, consents,
        identities and recent events, all from one published run."""
        normalized = normalize_identifier(namespace, value)
        masked = scope_ is Scope.masked
        if events > DOCUMENT_EVENTS:
            return _profile_with_more_events(namespace, normalized, masked, events)
        started = time.perf_counter()
        found, namespaces = store.find_profile(namespace, normalized, masked)
        lookup_ms = (time.perf_counter() - started) * 1000
        if found is None:
            _not_found(namespace, namespaces)
        headers = {"Server-Timing": f"lookup;dur={lookup_ms:.3f}"} if timing else None
        if events == DOCUMENT_EVENTS:
            # Already in the Profile shape, for this scope: the stored bytes are the answer.
            return Response(found.document, media_type="application/json", headers=headers)
        profile = json.loads(found.document)
        profile["recent_events"] = profile["recent_events"][:events]
        return Profile.model_validate(profile)

    def _not_found(namespace: str, namespaces: frozenset[str]) -> None:
        if namespace not in namespaces:
            raise HTTPException(
                422,
                f"unknown identity namespace {namespace[:64]!r}; expected one of: {', '.join(sorted(namespaces))}",
            )
        raise HTTPException(404, f"no profile has this {namespace} identifier; check the value or the namespace")

    def _profile_with_more_events(namespace: str, normalized: str, masked: bool, events: int) -> Profile:
        """More events than a document keeps: read from profile_events of the same publication."""
        with store.session() as (cursor, read_model):
            found = read_model.find(namespace, normalized, masked)
            if found is None:
                _not_found(namespace, read_model.namespaces)
            profile = json.loads(found.document)
            profile["recent_events"] = recent_events(cursor, found.profile_id, events)
            if masked:
                event_masking = masking_rules(cursor).get("profile_events", {}).get("event_id", "hash")
        if masked:
            key = masking_key(store_path)
            for event in profile["recent_events"]:
                event["event_id"] = mask_value(event["event_id"], event_masking, key)
        return Profile.model_validate(profile)

    @app.get("/segments", response_model=SegmentList, responses=errors)
    def list_segments(scope_: Annotated[Scope, Depends(scope)]) -> SegmentList:
        """Every audience with its current size."""
        with store.cursor() as cursor:
            sizes = cursor.execute(
                "select segment_name, count(*) from segments.segment_memberships group by 1 order by 1"
            ).fetchall()
            run_id = published_run_id(cursor)
        return SegmentList(published_run_id=run_id, segments=[SegmentSize(name=n, members=c) for n, c in sizes])

    @app.get(
        "/segments/{name}/members",
        response_model=SegmentMembers,
        responses={
            **errors,
            404: {"model": Problem, "description": "no such segment"},
            422: {"model": Problem, "description": "malformed parameter"},
        },
    )
    def segment_members(
        name: Annotated[str, PathParam(description="segment name as listed by GET /segments")],
        scope_: Annotated[Scope, Depends(scope)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(max_length=64, description="next_after of the previous page")] = None,
    ) -> SegmentMembers:
        """A page of a segment's members in profile id order (keyset paging: stable while you page)."""
        with store.cursor() as cursor:
            known = {
                r[0]
                for r in cursor.execute("select distinct segment_name from segments.segment_memberships").fetchall()
            }
            if name not in known:
                raise HTTPException(404, f"no segment named {name[:64]!r}; GET /segments lists them")
            if after is not None and not after.isprintable():
                raise HTTPException(422, "after must be the next_after value of the previous page")
            table = f"seg_{name}"
            has_table = cursor.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                ["bi" if scope_ is Scope.masked else "segments", table],
            ).fetchone()[0]
            source = (
                schema_of(scope_, table)
                if has_table and SEGMENT_NAME.match(name)
                else f"(select profile_id from segments.segment_memberships where segment_name = {sql_literal(name)})"
            )
            where = f"where profile_id > {sql_literal(after)}" if after else ""
            page = rows(cursor, f"select * from {source} {where} order by profile_id limit {limit + 1}")
            run_id = published_run_id(cursor)
        next_after = page[limit - 1]["profile_id"] if len(page) > limit else None
        return SegmentMembers(
            segment=name, published_run_id=run_id, scope=scope_, members=page[:limit], next_after=next_after
        )

    app.state.store = store
    return app


def app_from_environment() -> FastAPI:
    """The app for `cdp serve`'s worker processes: store path and keys from the environment."""
    from cdp.settings import current_paths

    return create_app(
        current_paths().serving_store, ApiKeys.from_env(), pool_size=int(os.environ.get("CDP_API_POOL_SIZE", "8"))
    )
