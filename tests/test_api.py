"""The HTTP API against real Redis: same answers as the in-memory engine, and every error path."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient

from stream_features import CustomerActivityFeatures, EngineSettings, InvalidEvent, decode_event
from stream_features.config import ServiceConfig
from stream_features.core.events import Event, ProfileEvent
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.api import create_app

from . import reference
from .loaders import load

pytestmark = pytest.mark.integration
NOW = time.time()
AS_OF = NOW - 600


LINES = [
    *generate_events(GeneratorOptions(customers=150, events=3000, start=NOW - 120 * 86400, end=NOW - 3600)),
    b'{"type":"profile","customer_id":"a/b {c} \xf0\x9f\x99\x82","timestamp":%d,"attributes":{"tier":"gold"}}'
    % int(NOW - 7200),
]


@pytest.fixture
def loaded(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> Iterator[tuple[TestClient, CustomerActivityFeatures]]:
    engine = load(redis_client, key_prefix, LINES, now=NOW)
    app = create_app(ServiceConfig(redis_url=redis_url, key_prefix=key_prefix))
    with TestClient(app) as client:
        yield client, engine


def test_customer_routes_equal_the_memory_engine(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    client, engine = loaded
    for customer in engine.customer_ids()[:60]:
        for days in (1, 30, 90, 400):
            response = client.get(
                f"/v1/customers/{quote(customer, safe='')}/features", params={"days": days, "as_of": AS_OF}
            )
            assert response.status_code == 200
            assert response.json() == engine.get_all_features(customer, days, AS_OF)
        summary = client.get(
            f"/v1/customers/{quote(customer, safe='')}/summary", params={"as_of": "2026-01-01T00:00:00Z"}
        )
        assert summary.json() == engine.get_feature_summary(customer, as_of="2026-01-01T00:00:00Z")


def test_daily_activity_equals_the_memory_engine_and_the_window_counts(
    loaded: tuple[TestClient, CustomerActivityFeatures],
) -> None:
    """Events per day for the status page's chart: the sum of the last d days is what a window
    of d days counts (purchases + sessions + carts + tickets + profiles), counted here from the
    raw events by the brute-force reference."""
    client, engine = loaded
    accepted = _accepted_by_customer(LINES)
    high = math.floor(AS_OF / 3600)
    for customer in engine.customer_ids()[:30]:
        response = client.get(f"/v1/customers/{quote(customer, safe='')}/activity", params={"as_of": AS_OF})
        assert response.status_code == 200
        body = response.json()
        assert body == engine.get_daily_activity(customer, as_of=AS_OF)
        assert len(body["days"]) == 90
        for days in (1, 7, 30, 90):
            window = [e for e in accepted[customer] if high - days * 24 < math.floor(e.timestamp / 3600) <= high]
            assert sum(day["events"] for day in body["days"][-days:]) == len(window)
            flat = engine.get_all_features(customer, days, AS_OF)
            counted = flat["purchase_count"] + flat["session_count"] + flat["cart_count"]
            counted += flat["support_ticket_count"] + sum(isinstance(e, ProfileEvent) for e in window)
            assert counted == len(window)


def _accepted_by_customer(lines: list[bytes]) -> dict[str, list[Event]]:
    """Each customer's valid events that the contract keeps (too_late and duplicates dropped)."""
    events: dict[str, list[Event]] = {}
    for line in lines:
        try:
            event = decode_event(line, now=NOW)
        except InvalidEvent:
            continue
        events.setdefault(event.customer_id, []).append(event)
    return {customer: reference.accept_in_order(mine, EngineSettings()) for customer, mine in events.items()}


def test_odd_ids_in_the_path(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    client, _ = loaded
    odd = "a/b {c} 🙂"
    response = client.get(f"/v1/customers/{quote(odd, safe='')}/summary")
    assert response.status_code == 200
    assert response.json()["metadata"] == {"tier": "gold"} and response.json()["customer_id"] == odd
    unknown = client.get("/v1/customers/nobody-here/features").json()
    assert unknown["has_history"] is False and unknown["purchase_count"] == 0


def test_cohort_routes(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    client, engine = loaded
    ids = [*engine.customer_ids()[:100], "nobody", engine.customer_ids()[0]]
    body = {"customer_ids": ids, "days": 60, "as_of": AS_OF}
    features = client.post("/v1/cohorts/features", json=body)
    assert features.status_code == 200
    assert features.json() == engine.get_cohort_features(ids, 60, AS_OF)
    summary = client.post("/v1/cohorts/summary", json=body)
    assert summary.json() == engine.get_cohort_summary(ids, 60, AS_OF)


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        # What the OpenAPI document forbids is 422 invalid_request (days, as_of syntax, ids).
        ("/v1/customers/c/features", {"days": 0}, 422, "invalid_request"),
        ("/v1/customers/c/features", {"days": 401}, 422, "invalid_request"),
        ("/v1/customers/c/features", {"days": "week"}, 422, "invalid_request"),
        ("/v1/customers/c/features", {"as_of": "yesterday"}, 422, "invalid_request"),
        ("/v1/customers/c/summary", {"as_of": "99999999999999"}, 422, "invalid_request"),
        ("/v1/customers/c/summary", {"as_of": "2026-11-26"}, 422, "invalid_request"),  # a date is not a time
        (f"/v1/customers/{'x' * 257}/features", {}, 422, "invalid_request"),
        ("/v1/customers/%20%20/features", {}, 422, "invalid_request"),
        # Syntactically fine, out of range: 400 invalid_query.
        ("/v1/customers/c/summary", {"as_of": "0099-12-31T00:00:00Z"}, 400, "invalid_query"),
        ("/v1/nothing", {}, 404, "not_found"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(
    loaded: tuple[TestClient, CustomerActivityFeatures],
    path: str,
    params: dict[str, object],
    status: int,
    code: str | None,
) -> None:
    client, _ = loaded
    response = client.get(path, params=params)
    assert response.status_code == status
    if code:
        assert response.json()["error"] == code and response.json()["message"]


def test_bad_bodies(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    client, _ = loaded
    for body, status in [
        (b"{not json", 422),
        (b'{"customer_ids": "abc"}', 422),
        (b'{"days": 3}', 422),
        (b'{"customer_ids": ["a"], "days": 0}', 422),
        (b'{"customer_ids": ["a"], "as_of": 1e300}', 400),  # a number, out of range
        (b'{"customer_ids": ["a"], "days": 30.0}', 200),  # JSON Schema's integer
    ]:
        response = client.post("/v1/cohorts/features", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, body
        assert "Traceback" not in response.text and (status == 200 or response.json()["message"])
    huge = {"customer_ids": [f"c{i}" for i in range(10_001)]}
    response = client.post("/v1/cohorts/summary", json=huge)
    assert response.status_code == 413 and response.json()["error"] == "cohort_too_large"


def test_health_ready_metrics_and_docs(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    client, _ = loaded
    assert client.get("/healthz").json()["status"] == "ok"  # and what runs: tests/test_version.py
    assert client.get("/readyz").status_code == 200
    client.get("/v1/customers/c/features")
    metrics = client.get("/metrics").text
    assert 'stream_features_lookup_seconds_count{route="/v1/customers/{customer_id:path}/features"}' in metrics
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/cohorts/features", "/v1/cohorts/summary", "/healthz", "/readyz"} <= set(paths)


def test_redis_down_gives_503_not_a_stack_trace() -> None:
    app = create_app(ServiceConfig(redis_url="redis://127.0.0.1:1/0"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"] == "not_ready"
        response = client.get("/v1/customers/c/features")
        assert response.status_code == 503 and response.json()["error"] == "unavailable"


def test_bodies_are_what_the_openapi_document_says(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    """Every documented body validates against its model, field for field (no missing or
    undocumented fields), and the document names those models."""
    from pydantic import BaseModel

    from stream_features.query import api_models as models

    client, engine = loaded
    spec = client.get("/openapi.json").json()
    customer = engine.customer_ids()[0]
    quoted = quote(customer, safe="")
    cases: list[tuple[str, str, type[BaseModel], object]] = [
        ("get", f"/v1/customers/{quoted}/features", models.FlatFeatures, None),
        ("get", f"/v1/customers/{quoted}/summary", models.Summary, None),
        ("get", f"/v1/customers/{quoted}/activity", models.Activity, None),
        ("post", "/v1/cohorts/summary", models.CohortSummary, {"customer_ids": engine.customer_ids()[:20]}),
        ("get", "/healthz", models.Health, None),
        ("get", "/readyz", models.Ready, None),
        ("get", "/v1/customers/%20/features", models.ErrorBody, None),
    ]
    for method, path, model, body in cases:
        response = client.request(method, path, json=body)
        payload = response.json()
        model.model_validate(payload)
        assert set(payload) == set(model.model_fields), path
    cohort = client.post("/v1/cohorts/features", json={"customer_ids": engine.customer_ids()[:5]}).json()
    for features in models.CohortFeatures.model_validate(cohort).root.values():
        assert set(features.model_dump()) == set(models.FlatFeatures.model_fields)
    documented = spec["paths"]["/v1/customers/{customer_id}/features"]["get"]["responses"]
    assert documented["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FlatFeatures"}
    assert documented["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_requests_are_strict(loaded: tuple[TestClient, CustomerActivityFeatures]) -> None:
    client, _ = loaded
    for body in ({"customer_ids": [], "as_of": False}, {"customer_ids": [], "days": True}, {"customer_ids": "a"}):
        response = client.post("/v1/cohorts/summary", json=body)
        assert response.status_code == 422 and response.json()["error"] == "invalid_request", body
