"""The HTTP API (SPEC §6): FastAPI over the async Redis reader. Errors map to HTTP status here only."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import msgspec
import redis.asyncio as aioredis
from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.responses import JSONResponse as StarletteJSONResponse
from prometheus_client import generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import redaction
from ..config import ServiceConfig, async_read_redis_client
from ..errors import CohortTooLarge, InvalidQuery, StateUnreadable
from ..metrics import ApiMetrics
from ..version import build_info
from . import api_models as models
from .api_auth import BearerAuth, declare_security, open_paths, read_tokens
from .api_models import (
    AS_OF_SCHEMA,
    CUSTOMER_ID_PATTERN,
    CohortRequest,
    checked_as_of,
    cohort_request_model,
    errors,
    point_in_time_request_model,
)
from .fast_path import FeaturesFastPath
from .reader import AsyncFeatureReader

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
# The largest body a request may send: a full cohort of 256-byte ids (escaped) fits with room.
MAX_BODY_BYTES = 4 * 1024 * 1024


class JSONResponse(StarletteJSONResponse):
    """msgspec-encoded JSON: several times faster than the stdlib encoder on feature records.
    (A JSONResponse subclass, so the OpenAPI document describes bodies as JSON schemas.)"""

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


CustomerIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        pattern=CUSTOMER_ID_PATTERN,
        description="1..256 characters, not blank",
        examples=["cust-0000042"],
    ),
]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def create_app(
    config: ServiceConfig,
    *,
    redis_client: Any = None,
    status: Any = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the app. ``redis_client`` (redis.asyncio) defaults to one for ``config.read_url``
    (the replica lookups read from when ``REDIS_READ_URL`` is set, else the primary)."""
    client = redis_client or async_read_redis_client(config, socket_timeout=2, socket_connect_timeout=2)
    reader = AsyncFeatureReader(client, config.engine, prefix=config.key_prefix, clock=clock)
    metrics = ApiMetrics.create()
    build = build_info()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if status is not None:
            await status.start()
        yield
        if status is not None:
            await status.stop()
        await client.aclose()

    app = FastAPI(
        title="stream_features",
        version=build["version"],
        description="Customer-activity features from streaming aggregates: counts, sums, ratios and "
        "descriptive flags over any window, as of any time.",
        default_response_class=JSONResponse,
        lifespan=lifespan,
    )
    app.state.reader = reader
    app.state.metrics = metrics

    # Outermost last: metrics see every answer (401s too); unauthenticated bodies are never read;
    # the hot route's ordinary requests (GETs, which read no body) skip the body limit and the
    # framework (fast_path.py).
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(FeaturesFastPath, reader=reader, routes=app.router, max_days=config.engine.retention_days)
    if config.api_tokens_file:
        tokens = read_tokens(config.api_tokens_file)
        redaction.register(tokens)
        unguarded = open_paths(config.protect_metrics)
        app.add_middleware(BearerAuth, tokens=tokens, open_paths=unguarded)
        plain_openapi = app.openapi
        app.openapi = lambda: declare_security(plain_openapi(), unguarded)  # type: ignore[method-assign]
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    @app.exception_handler(CohortTooLarge)
    async def too_large(_request: Request, exc: CohortTooLarge) -> JSONResponse:
        return _error(413, "cohort_too_large", str(exc))

    @app.exception_handler(InvalidQuery)
    async def bad_query(_request: Request, exc: InvalidQuery) -> JSONResponse:
        return _error(400, "invalid_query", str(exc))

    @app.exception_handler(StateUnreadable)
    async def unreadable(_request: Request, exc: StateUnreadable) -> JSONResponse:
        # 409: the request is fine, the stored state is not; retrying does not help, a repair does.
        log.warning("%s", exc)
        message = f"{exc}; repair it with: stream-features repair CUSTOMER_ID"
        return _error(409, "state_unreadable", message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors()[:5]:
            if error.get("type") == "json_invalid":
                problems.append("body: not valid JSON")
                continue
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {error.get('msg')}")
        return _error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing and body-reading errors (404, 405, an undecodable body) in the one error model.
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        response = _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(aioredis.RedisError)
    async def store_down(_request: Request, exc: aioredis.RedisError) -> JSONResponse:
        log.warning("redis error: %s", exc)
        return _error(503, "unavailable", "the feature store is unavailable; retry shortly")

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal", "internal error")

    retention = config.engine.retention_days
    days_query = Query(None, ge=1, le=retention, description="window length in whole days (default 30)")
    as_of_query = Query(None, description=AS_OF_SCHEMA["description"], json_schema_extra=AS_OF_SCHEMA)
    activity_days = Query(None, ge=1, le=retention, description="days to chart (default 90)")
    Body_ = cohort_request_model(retention)

    lookup = errors(400, 409, 422, 500, 503)

    @app.get(
        "/v1/customers/{customer_id:path}/features",
        summary="Flat features of one customer",
        response_model=None,
        responses={200: {"model": models.FlatFeatures}, **lookup},
    )
    async def customer_features(
        customer_id: CustomerIdPath, days: int | None = days_query, as_of: str | None = as_of_query
    ) -> Any:
        return JSONResponse(await reader.get_features(customer_id, days=days, as_of=_as_of(as_of)))

    @app.get(
        "/v1/customers/{customer_id:path}/summary",
        summary="Nested feature summary with profile metadata",
        response_model=None,
        responses={200: {"model": models.Summary}, **lookup},
    )
    async def customer_summary(
        customer_id: CustomerIdPath, days: int | None = days_query, as_of: str | None = as_of_query
    ) -> Any:
        return JSONResponse(await reader.get_summary(customer_id, days=days, as_of=_as_of(as_of)))

    @app.get(
        "/v1/customers/{customer_id:path}/activity",
        summary="Events per day over the last N days (charts)",
        response_model=None,
        responses={200: {"model": models.Activity}, **lookup},
    )
    async def customer_activity(
        customer_id: CustomerIdPath, days: int | None = activity_days, as_of: str | None = as_of_query
    ) -> Any:
        days = 90 if days is None else days
        return JSONResponse(await reader.get_daily_activity(customer_id, days=days, as_of=_as_of(as_of)))

    cohort = errors(400, 413, 422, 500, 503)

    async def cohort_features(request: CohortRequest = Body(...)) -> Any:  # noqa: B008
        found = await reader.get_cohort_features(request.customer_ids, days=request.days, as_of=_as_of(request.as_of))
        return JSONResponse(found)

    async def cohort_summary(request: CohortRequest = Body(...)) -> Any:  # noqa: B008
        found = await reader.get_cohort_summary(request.customer_ids, days=request.days, as_of=_as_of(request.as_of))
        return JSONResponse(found)

    # The body model carries this deployment's bounds (retention): FastAPI reads it from the
    # annotation, so the annotation is set before the routes are registered.
    for route, summary, model in (
        (cohort_features, "Flat features for many customers in one call", models.CohortFeatures),
        (cohort_summary, "Means, flag rates and trend counts over a cohort", models.CohortSummary),
    ):
        route.__annotations__["request"] = Body_
        path = "/v1/cohorts/features" if route is cohort_features else "/v1/cohorts/summary"
        app.post(path, summary=summary, response_model=None, responses={200: {"model": model}, **cohort})(route)

    PointInTime = point_in_time_request_model(retention)

    async def features_at(request: Any = Body(...)) -> Any:  # noqa: B008
        rows = [(row.customer_id, _as_of(row.as_of)) for row in request.rows]
        return JSONResponse({"rows": await reader.get_features_at(rows, days=request.days)})

    features_at.__annotations__["request"] = PointInTime
    app.post(
        "/v1/features/at",
        summary="Flat features of many (customer, as_of) rows, each exactly as of its own time",
        response_model=None,
        responses={200: {"model": models.PointInTimeResponse}, **cohort},
    )(features_at)

    @app.get("/healthz", summary="The process is up", response_model=None, responses={200: {"model": models.Health}})
    async def healthz() -> Any:
        return {"status": "ok", **build}

    @app.get(
        "/readyz",
        summary="The Redis server lookups read from answers with current data",
        response_model=None,
        responses={200: {"model": models.Ready}, **errors(503)},
    )
    async def readyz() -> Any:
        try:
            problem = await reader.readiness_problem()
        except (aioredis.RedisError, OSError):
            return _error(503, "not_ready", "Redis is not reachable")
        if problem is not None:
            return _error(503, "not_ready", problem)
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    if status is not None:
        status.mount(app)
    else:

        @app.get("/", include_in_schema=False)
        async def index() -> Response:
            return HTMLResponse('<a href="/docs">API docs</a>')

    return app


class _MetricsMiddleware:
    """Latency and status per route template, as plain ASGI (no per-request task or body copy)."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled children, looked up once per route and status (labels() costs a lock and a
        # tuple build per call, a measurable share of a lookup).
        self._latency: dict[str, Any] = {}
        self._counts: dict[tuple[str, int], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            latency = self._latency.get(route)
            if latency is None:
                latency = self._latency[route] = self.metrics.lookup_seconds.labels(route)
            latency.observe(time.perf_counter() - started)
            count = self._counts.get((route, status))
            if count is None:
                count = self._counts[route, status] = self.metrics.requests.labels(route, str(status))
            count.inc()


class _BodyLimit:
    """413 for a body over ``limit`` bytes, before it is read into memory: Content-Length is
    checked up front, a chunked body as it streams in."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await self._refuse(send)
                return
        received = 0
        refused = False

        async def counting_receive() -> Any:
            # Past the limit: answer 413 now, and tell the app the client left (it stops reading).
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if not refused:  # the app's own answer to a refused body is dropped
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Any) -> None:
        body = _encoder.encode({"error": "body_too_large", "message": f"request body over {self.limit} bytes"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _as_of(value: str | float | None) -> object:
    """``value`` if it is in the documented syntax (then ``parse_timestamp`` reads it as
    everywhere); else the same 422 as any other schema violation."""
    try:
        return checked_as_of(value)
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("query", "as_of"), "msg": str(exc), "type": "value_error"}]) from None


def create_app_from_env() -> FastAPI:
    """The app for ``serve --workers N``: each worker process builds its own from the
    environment the CLI prepared (flags included), status page per ``STREAM_FEATURES_STATUS``."""
    import os

    from ..config import config_from_env
    from ..logs import configure_logging
    from .status import StatusSampler

    configure_logging(os.environ.get("STREAM_FEATURES_LOG_LEVEL", "info"))
    config = config_from_env()
    status = StatusSampler(config) if os.environ.get("STREAM_FEATURES_STATUS", "1") == "1" else None
    return create_app(config, status=status)
