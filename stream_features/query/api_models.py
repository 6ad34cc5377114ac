"""The HTTP API's bodies as typed models: the OpenAPI document other teams generate clients from.

Responses are documented with these models but not validated through them at run time (the
routes return plain dicts that msgspec serialises once, as fast as before); the contract tests
and schemathesis hold the two together. Requests are validated strictly: no silent coercion of
``true`` to 1 or of a number to a string.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    WithJsonSchema,
    create_model,
)

from ..core.limits import MAX_UNIX_SECONDS
from ..core.timeparse import MIN_AS_OF_SECONDS

# What the HTTP API accepts as a time, exactly as the OpenAPI document says: an RFC 3339
# date-time from year 1, or Unix seconds as digits (query) or a number (body). Python callers
# may pass any ISO 8601 shape; over HTTP the typed contract is the narrower one.
AS_OF_DIGITS = r"^[0-9]{1,11}(\.[0-9]{1,9})?$"
AS_OF_YEAR = r"^([1-9][0-9]{3}|0[1-9][0-9]{2})-"  # year 0100 or later
AS_OF_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time", "pattern": AS_OF_YEAR},
        {"type": "string", "pattern": AS_OF_DIGITS},
    ],
    "description": "RFC 3339 date-time (year 0100 or later) or Unix seconds (default now)",
}
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_DIGITS = re.compile(AS_OF_DIGITS)
# A customer id in a path or a cohort: 1..256 characters, not only ASCII whitespace. (An id the
# consumer would refuse, e.g. over 256 UTF-8 bytes, simply has no history.)
CUSTOMER_ID_PATTERN = r"[^ \t\n\r\f\v]"
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=CUSTOMER_ID_PATTERN)]


def _whole_number(value: object) -> object:
    """JSON Schema's integer: 30 and 30.0, never true or "30" (strict mode does the rest)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


def checked_as_of(value: str | float | None) -> str | float | None:
    """``value`` if it is in the documented syntax; else ``ValueError``."""
    if value is None or isinstance(value, int | float):
        return value
    if _DIGITS.match(value) or _RFC3339.match(value):
        return value
    raise ValueError("as_of must be an RFC 3339 date-time or Unix seconds")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: str = Field(description="machine-readable code, e.g. invalid_query, state_unreadable")
    message: str = Field(description="what is wrong, for people")


class PurchaseMetrics(BaseModel):
    purchase_count: int
    total_purchase_value: float
    average_order_value: float
    purchase_frequency: float = Field(description="purchases per 30 days")
    purchase_recency_days: float | None


class EngagementMetrics(BaseModel):
    session_count: int
    session_frequency: float = Field(description="sessions per 30 days")
    average_session_duration: float = Field(description="seconds")
    device_usage: dict[str, int]
    primary_device: str | None


class CartMetrics(BaseModel):
    converted_cart_count: int
    abandoned_cart_count: int
    cart_count: int
    cart_conversion_ratio: float
    abandoned_cart_value: float


class SupportMetrics(BaseModel):
    support_ticket_count: int
    average_response_time_hours: float
    escalation_count: int
    escalation_ratio: float


class RetentionIndicators(BaseModel):
    engagement_short: float
    engagement_long: float
    high_short_term_activity: bool
    declining_engagement: bool
    support_risk: bool
    cart_abandonment_risk: bool
    retention_concern: bool
    activity_trend: Literal["inactive", "declining", "growing", "stable"]


class FlatFeatures(RetentionIndicators, SupportMetrics, CartMetrics, EngagementMetrics, PurchaseMetrics):
    """SPEC §4 "flat features" of one customer over a window of ``window_days`` days at ``as_of``:
    the summary's sections side by side (one definition of each field)."""

    customer_id: str
    as_of: str = Field(description="ISO 8601, UTC, with Z")
    window_days: int
    has_history: bool


class Summary(BaseModel):
    """The same values nested, plus the profile attributes."""

    customer_id: str
    as_of: str
    window_days: int
    has_history: bool
    purchase_metrics: PurchaseMetrics
    engagement_metrics: EngagementMetrics
    cart_metrics: CartMetrics
    support_metrics: SupportMetrics
    retention_indicators: RetentionIndicators
    metadata: dict[str, Any]


class CohortFeatures(RootModel[dict[str, FlatFeatures]]):
    """Flat features by customer id (unreadable customers left out)."""


class CohortSummary(BaseModel):
    customer_count: int
    means: dict[str, float | None] = Field(description="mean of each numeric feature; null when no customer has one")
    flag_rates: dict[str, float] = Field(description="share of customers with each flag true")
    activity_trend_counts: dict[str, int]


class ActivityDay(BaseModel):
    start: str = Field(description="ISO 8601 start of the day's tiles")
    events: int


class Activity(BaseModel):
    customer_id: str
    as_of: str
    days: list[ActivityDay]


class CoreBuild(BaseModel):
    """The Rust core's build: crate version, git commit (or ``unknown``), cargo profile, compiler."""

    version: str
    commit: str
    profile: str
    rustc: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="the stream-features package version")
    core: CoreBuild


class Ready(BaseModel):
    status: Literal["ready"]


class Replay(BaseModel):
    """A replay under way: records still to read again, and since when."""

    records: int
    since: str = Field(description="RFC 3339 date-time, UTC")


class Status(BaseModel):
    """The status page's data (``stream_features.query.status``)."""

    topic: str
    group: str
    error: str | None
    points: list[dict[str, float]]
    lag: int | None
    committed: int | None
    dead_letters: int | None
    partitions: list[dict[str, Any]]
    freshness: dict[str, float | None]
    replay: Replay | None = Field(
        None, description="Redis went back in time and the consumer is replaying the records it lost (else null)"
    )
    dead_letters_by_reason: dict[str, int]
    dead_letters_last_5_minutes: dict[str, int]
    recent_dead_letters: dict[str, list[dict[str, Any]]]
    redis: dict[str, Any]


class CohortRequest(BaseModel):
    """Strict: ``"days": true`` or ``"as_of": false`` are 422, not 1 and 0."""

    model_config = ConfigDict(strict=True, extra="forbid")

    customer_ids: list[CustomerId] = Field(..., description="at most 10,000 distinct ids")
    days: int | None = Field(None, description="window length in whole days, 1..retention_days (default 30)")
    as_of: str | float | None = Field(None, description="RFC 3339 date-time or Unix seconds (default now)")


def cohort_request_model(retention_days: int) -> type[CohortRequest]:
    """The request body with this deployment's bounds written into the schema."""
    as_of_schema: dict[str, Any] = {
        "anyOf": [
            *AS_OF_SCHEMA["anyOf"],
            {"type": "number", "minimum": MIN_AS_OF_SECONDS, "maximum": MAX_UNIX_SECONDS},
            {"type": "null"},
        ]
    }
    # A type built at run time: typed as a value, so type checkers of every pydantic agree.
    days_type: Any = (
        Annotated[
            WholeNumber,
            Field(ge=1, le=retention_days),
            WithJsonSchema({"type": "integer", "minimum": 1, "maximum": retention_days}),
        ]
        | None
    )
    model: type[CohortRequest] = create_model(
        "CohortRequest",
        __base__=CohortRequest,
        days=(days_type, Field(None, description="window length in whole days (default 30)")),
        as_of=(
            str | float | None,
            Field(None, description=AS_OF_SCHEMA["description"], json_schema_extra=as_of_schema),
        ),
    )
    return model


class PointInTimeRow(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    customer_id: CustomerId
    as_of: str | float = Field(description="RFC 3339 date-time or Unix seconds: this row's own time")


class PointInTimeResponse(BaseModel):
    """One entry per row, in row order; null where the customer's stored state is unreadable."""

    rows: list[FlatFeatures | None]


def point_in_time_request_model(retention_days: int) -> type[BaseModel]:
    """``{"rows": [{customer_id, as_of}], "days": N}``, at most 10,000 rows, with this
    deployment's bounds in the schema."""
    row_as_of: dict[str, Any] = {
        "anyOf": [
            *AS_OF_SCHEMA["anyOf"],
            {"type": "number", "minimum": MIN_AS_OF_SECONDS, "maximum": MAX_UNIX_SECONDS},
        ]
    }
    row = create_model(
        "PointInTimeRow",
        __base__=PointInTimeRow,
        as_of=(str | float, Field(description="this row's own time", json_schema_extra=row_as_of)),
    )
    days_type = Annotated[
        WholeNumber,
        Field(ge=1, le=retention_days),
        WithJsonSchema({"type": "integer", "minimum": 1, "maximum": retention_days}),
    ]
    model: type[BaseModel] = create_model(
        "PointInTimeRequest",
        __config__=ConfigDict(strict=True, extra="forbid"),
        rows=(list[row], Field(..., max_length=10_000, description="at most 10,000 rows")),  # type: ignore[valid-type]
        days=(days_type | None, Field(None, description="window length in whole days (default 30)")),
    )
    return model


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error statuses, all with the error model."""
    meaning = {
        400: "a bad query: days out of range, an unparsable as_of, a bad customer id",
        409: "the customer's stored state is unreadable (state_unreadable): repair it",
        413: "a body over 4 MiB (body_too_large) or a cohort over 10,000 ids (cohort_too_large)",
        422: "a body or parameter of the wrong shape or type (invalid_request)",
        500: "an unexpected error (internal)",
        503: "Redis is unavailable (unavailable / not_ready)",
    }
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}
