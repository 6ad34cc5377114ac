"""The event contract (SPEC §2): bytes or a mapping in, a typed event or ``InvalidEvent`` out.

msgspec decodes the JSON (fast, in C); the rules are checked here in one place so that every
rejection carries a precise reason code for the dead-letter topic.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec

from ..errors import InvalidEvent, ReasonCode
from .limits import (
    EVENT_TYPES,
    MAX_CUSTOMER_ID_BYTES,
    MAX_DEVICE_CHARS,
    MAX_EVENT_ID_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_NUMERIC_VALUE,
    MAX_UNIX_SECONDS,
    MIN_UNIX_SECONDS,
    UNKNOWN_DEVICE,
)
from .metadata import sanitize_attributes
from .timeparse import datetime_to_unix, parse_timestamp


class _EventBase(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    timestamp: float  # Unix seconds
    event_id: str | None = None


class PurchaseEvent(_EventBase, frozen=True, kw_only=True, tag="purchase"):
    kind: ClassVar[str] = "purchase"
    amount: float
    order_id: str | None = None


class SessionEvent(_EventBase, frozen=True, kw_only=True, tag="session"):
    kind: ClassVar[str] = "session"
    duration_seconds: float
    device: str = UNKNOWN_DEVICE


class CartEvent(_EventBase, frozen=True, kw_only=True, tag="cart"):
    kind: ClassVar[str] = "cart"
    converted: bool
    value: float | None = None


class SupportEvent(_EventBase, frozen=True, kw_only=True, tag="support"):
    kind: ClassVar[str] = "support"
    response_time_hours: float | None = None
    escalated: bool = False


class ProfileEvent(_EventBase, frozen=True, kw_only=True, tag="profile"):
    kind: ClassVar[str] = "profile"
    attributes: dict[str, Any]


Event = PurchaseEvent | SessionEvent | CartEvent | SupportEvent | ProfileEvent

# float_hook: a number too large for a float (1e400) becomes inf instead of failing the whole
# message, so an unknown field holding it is ignored and a known one is judged non_finite.
_decoder: Final = msgspec.json.Decoder(float_hook=float)


def decode_event(data: bytes, *, now: float, max_future_skew_seconds: float = 86400.0) -> Event:
    """Decode one Kafka message value. Raises ``InvalidEvent`` (keeping ``data``) on any breach.

    Well-formed events take msgspec's typed path (validation in C); anything it refuses goes
    through ``validate_event``, which names the exact reason. Both give the same event.
    """
    try:
        return _decode(data, now=now, max_future_skew_seconds=max_future_skew_seconds)
    except InvalidEvent:
        raise
    except Exception as exc:  # the last resort: a record's bytes never raise anything else
        raise InvalidEvent("internal_error", f"{type(exc).__name__}: {str(exc)[:200]}", data) from None


def _decode(data: bytes, *, now: float, max_future_skew_seconds: float) -> Event:
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidEvent("too_large", f"message is {len(data)} bytes, limit {MAX_MESSAGE_BYTES}", data)
    try:
        fast = fast_decode(data, now=now, max_future_skew_seconds=max_future_skew_seconds)
        if fast is not None:
            return fast
        obj = _decoder.decode(data)
    except RecursionError:
        raise InvalidEvent("too_large", "JSON is nested too deeply", data) from None
    except msgspec.DecodeError:
        raise InvalidEvent("malformed_json", "message is not valid UTF-8 JSON", data) from None
    return validate_event(obj, now=now, max_future_skew_seconds=max_future_skew_seconds, raw=data)


def validate_event(obj: object, *, now: float, max_future_skew_seconds: float = 86400.0, raw: object = None) -> Event:
    """Check a decoded JSON value against SPEC §2 and build the typed event."""
    raw = obj if raw is None else raw
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"event must be a JSON object, got {type(obj).__name__}", raw)
    check = _Checker(obj, raw)
    event_type = check.required("type", str)
    if event_type not in EVENT_TYPES:
        raise InvalidEvent("unknown_type", f"type must be one of {', '.join(EVENT_TYPES)}", raw)
    customer_id = check.customer_id()
    timestamp = check.timestamp()
    if timestamp > now + max_future_skew_seconds:
        raise InvalidEvent("future_timestamp", "timestamp is further ahead of the clock than allowed", raw)
    event_id = check.optional_string("event_id", MAX_EVENT_ID_CHARS)
    common: dict[str, Any] = {"customer_id": customer_id, "timestamp": timestamp, "event_id": event_id}
    if event_type == "purchase":
        # `value` is the seed's name: used when `amount` is absent or null.
        field = "value" if obj.get("amount") is None and obj.get("value") is not None else "amount"
        return PurchaseEvent(amount=check.number(field), order_id=check.optional_id("order_id"), **common)
    if event_type == "session":
        return SessionEvent(duration_seconds=check.number("duration_seconds"), device=check.device(), **common)
    if event_type == "cart":
        status: str = check.required("status", str)
        if status not in ("converted", "abandoned"):
            raise InvalidEvent("bad_value", "status must be 'converted' or 'abandoned'", raw)
        return CartEvent(converted=status == "converted", value=check.number("value", optional=True), **common)
    if event_type == "support":
        escalated = obj.get("escalated", False)
        if escalated is None:
            escalated = False
        if not isinstance(escalated, bool):
            raise InvalidEvent("bad_type", "escalated must be a boolean", raw)
        return SupportEvent(
            response_time_hours=check.number("response_time_hours", optional=True),
            escalated=escalated,
            **common,
        )
    attributes = check.required("attributes", dict)
    return ProfileEvent(attributes=sanitize_attributes(attributes), **common)


class _Checker:
    """Field checks for one event, each raising ``InvalidEvent`` with the right reason."""

    def __init__(self, obj: dict[str, Any], raw: object) -> None:
        self.obj = obj
        self.raw = raw

    def fail(self, reason: ReasonCode, message: str) -> InvalidEvent:
        return InvalidEvent(reason, message, self.raw)

    def required(self, name: str, kind: type) -> Any:
        if name not in self.obj or self.obj[name] is None:
            raise self.fail("missing_field", f"{name} is required")
        value = self.obj[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail("bad_type", f"{name} must be {_kind_name(kind)}")
        return value

    def customer_id(self) -> str:
        value: str = self.required("customer_id", str)
        if not value.strip():
            raise self.fail("bad_customer_id", "customer_id is blank")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise self.fail("bad_customer_id", "customer_id is not valid UTF-8") from None
        if size > MAX_CUSTOMER_ID_BYTES:
            raise self.fail("bad_customer_id", f"customer_id is {size} bytes, limit {MAX_CUSTOMER_ID_BYTES}")
        return value

    def timestamp(self) -> float:
        if "timestamp" not in self.obj or self.obj["timestamp"] is None:
            raise self.fail("missing_field", "timestamp is required")
        value = self.obj["timestamp"]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail("bad_type", "timestamp must be an ISO 8601 string or Unix seconds")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail("non_finite", "timestamp is not finite")
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise self.fail("bad_timestamp", str(exc)) from None

    def number(self, name: str, *, optional: bool = False) -> Any:
        value = self.obj.get(name)
        if value is None:
            if optional:
                return None
            raise self.fail("missing_field", f"{name} is required")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail("bad_type", f"{name} must be a JSON number")
        number = float(value) if isinstance(value, float) or abs(value) < 2**53 else None
        if number is None or not math.isfinite(number):
            raise self.fail("non_finite" if number is not None else "too_large", f"{name} is out of range")
        if number < 0:
            raise self.fail("negative_value", f"{name} must be >= 0")
        if number > MAX_NUMERIC_VALUE:
            raise self.fail("too_large", f"{name} exceeds {MAX_NUMERIC_VALUE:g}")
        return number + 0.0  # folds -0.0 into 0.0 so sums print the same everywhere

    def optional_string(self, name: str, max_chars: int) -> str | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail("bad_type", f"{name} must be a string")
        if len(value) > max_chars:
            raise self.fail("too_large", f"{name} is longer than {max_chars} characters")
        return self.text(name, value) or None

    def text(self, name: str, value: str) -> str:
        """A string JSON let through that is not Unicode text (a lone surrogate escape) is bad_value."""
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise self.fail("bad_value", f"{name} is not valid Unicode text") from None
        return value

    def optional_id(self, name: str) -> str | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail("bad_type", f"{name} must be a string or integer")
        return str(value)[:MAX_EVENT_ID_CHARS]

    def device(self) -> str:
        value = self.obj.get("device")
        if value is None:
            return UNKNOWN_DEVICE
        if not isinstance(value, str):
            raise self.fail("bad_type", "device must be a string")
        if len(value) > MAX_DEVICE_CHARS:
            raise self.fail("too_large", f"device is longer than {MAX_DEVICE_CHARS} characters")
        return self.text("device", value).strip().lower() or UNKNOWN_DEVICE


_Number = Annotated[float, msgspec.Meta(ge=0, le=MAX_NUMERIC_VALUE)]
_Id = Annotated[str, msgspec.Meta(max_length=MAX_EVENT_ID_CHARS)]


class _Wire(msgspec.Struct, tag_field="type", kw_only=True):
    customer_id: str
    timestamp: datetime | float  # RFC 3339 parsed in C, as parse_timestamp does first
    event_id: _Id | None = None


class _WirePurchase(_Wire, tag="purchase"):
    amount: _Number | None = None
    value: _Number | None = None
    order_id: str | int | None = None


class _WireSession(_Wire, tag="session"):
    duration_seconds: _Number
    device: Annotated[str, msgspec.Meta(max_length=MAX_DEVICE_CHARS)] | None = None


class _WireCart(_Wire, tag="cart"):
    status: Literal["converted", "abandoned"]
    value: _Number | None = None


class _WireSupport(_Wire, tag="support"):
    response_time_hours: _Number | None = None
    escalated: bool | None = False


_wire_decoder: Final = msgspec.json.Decoder(_WirePurchase | _WireSession | _WireCart | _WireSupport)


def fast_decode(data: bytes, *, now: float, max_future_skew_seconds: float) -> Event | None:
    """The typed fast path for common, valid events; None means "ask validate_event"."""
    try:
        wire = _wire_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    customer_id = wire.customer_id
    if not customer_id.strip() or (len(customer_id) > 64 and len(customer_id.encode()) > MAX_CUSTOMER_ID_BYTES):
        return None
    stamp = wire.timestamp
    timestamp = stamp + 0.0 if type(stamp) is float else datetime_to_unix(stamp)  # + 0.0: -0.0 is 0.0
    if not MIN_UNIX_SECONDS <= timestamp <= MAX_UNIX_SECONDS or timestamp > now + max_future_skew_seconds:
        return None
    event_id = wire.event_id or None
    if isinstance(wire, _WirePurchase):
        amount = wire.amount if wire.amount is not None else wire.value
        if amount is None:
            return None
        order_id = None if wire.order_id is None else str(wire.order_id)[:MAX_EVENT_ID_CHARS]
        return PurchaseEvent(
            customer_id=customer_id, timestamp=timestamp, event_id=event_id, amount=amount + 0.0, order_id=order_id
        )
    if isinstance(wire, _WireSession):
        device = (wire.device or "").strip().lower() or UNKNOWN_DEVICE
        return SessionEvent(
            customer_id=customer_id,
            timestamp=timestamp,
            event_id=event_id,
            duration_seconds=wire.duration_seconds + 0.0,
            device=device,
        )
    if isinstance(wire, _WireCart):
        value = None if wire.value is None else wire.value + 0.0
        return CartEvent(
            customer_id=customer_id,
            timestamp=timestamp,
            event_id=event_id,
            converted=wire.status == "converted",
            value=value,
        )
    hours = None if wire.response_time_hours is None else wire.response_time_hours + 0.0
    return SupportEvent(
        customer_id=customer_id,
        timestamp=timestamp,
        event_id=event_id,
        response_time_hours=hours,
        escalated=bool(wire.escalated),
    )


def _kind_name(kind: type) -> str:
    return {str: "a string", dict: "a JSON object", bool: "a boolean"}.get(kind, kind.__name__)
