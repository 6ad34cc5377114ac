"""Realistic synthetic events as JSONL: power-law activity, declining and growing customers,
support- and cart-heavy patterns, and a small share of invalid and duplicate records.

Deterministic for a given seed, streamed in time order, memory bounded by the customer count.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

SEGMENTS = 24
DEVICES = ("mobile", "web", "tablet", "app", "smart-tv")
ARCHETYPES = ("stable", "stable", "stable", "declining", "growing", "churned")
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class GeneratorOptions:
    customers: int = 1000
    events: int = 20000
    start: float = 0.0  # Unix seconds
    end: float = 0.0
    seed: int = 7
    invalid_rate: float = 0.01
    duplicate_rate: float = 0.01


@dataclass(frozen=True, slots=True)
class _Customer:
    customer_id: str
    archetype: str
    type_weights: tuple[float, float, float, float, float]
    devices: tuple[str, ...]
    device_weights: tuple[float, ...]
    basket: float


def _segment_factor(archetype: str, segment: int) -> float:
    position = (segment + 0.5) / SEGMENTS
    if archetype == "declining":
        return 2.0 * (1.0 - position) ** 2 + 0.05
    if archetype == "growing":
        return 2.0 * position**2 + 0.05
    if archetype == "churned":
        return 1.0 if position < 0.4 else 0.0
    return 1.0


def _make_customers(rng: random.Random, count: int) -> list[_Customer]:
    customers = []
    for index in range(count):
        support_heavy = rng.random() < 0.1
        cart_heavy = rng.random() < 0.2
        weights = (
            1.0,
            3.0,
            1.6 if cart_heavy else 0.6,
            0.8 if support_heavy else 0.1,
            0.05,
        )
        devices = tuple(rng.sample(DEVICES, k=rng.randint(1, 3)))
        customers.append(
            _Customer(
                customer_id=f"cust-{index:07d}",
                archetype=rng.choice(ARCHETYPES),
                type_weights=weights,
                devices=devices,
                device_weights=tuple(rng.paretovariate(1.5) for _ in devices),
                basket=rng.lognormvariate(3.5, 0.7),
            )
        )
    return customers


def generate_events(options: GeneratorOptions) -> Iterator[bytes]:
    """Yield JSONL lines (without newline), roughly in event-time order."""
    if options.customers < 1 or options.events < 0 or options.end <= options.start:
        raise ValueError("need customers >= 1, events >= 0 and end > start")
    rng = random.Random(options.seed)
    customers = _make_customers(rng, options.customers)
    activity = [rng.paretovariate(1.2) for _ in customers]  # power law: a few very active customers
    segment_weights = [
        list(
            itertools.accumulate(a * _segment_factor(c.archetype, s) for a, c in zip(activity, customers, strict=True))
        )
        for s in range(SEGMENTS)
    ]
    totals = [w[-1] for w in segment_weights]
    grand_total = sum(totals)
    span = (options.end - options.start) / SEGMENTS
    recent: list[dict[str, object]] = []
    produced = 0
    for segment in range(SEGMENTS):
        share = round(options.events * sum(totals[: segment + 1]) / grand_total) - produced
        times = sorted(rng.uniform(0, span) for _ in range(share))
        picks = rng.choices(customers, cum_weights=segment_weights[segment], k=share)
        for offset, customer in zip(times, picks, strict=True):
            produced += 1
            roll = rng.random()
            if roll < options.invalid_rate:
                yield _invalid_line(rng, customer)
                continue
            if roll < options.invalid_rate + options.duplicate_rate and recent:
                yield _encode(rng.choice(recent))
                continue
            event = _event(rng, customer, options.start + segment * span + offset, produced)
            recent.append(event)
            if len(recent) > 200:
                recent.pop(0)
            yield _encode(event)


def _event(rng: random.Random, customer: _Customer, timestamp: float, serial: int) -> dict[str, object]:
    kind = rng.choices(("purchase", "session", "cart", "support", "profile"), weights=customer.type_weights)[0]
    event: dict[str, object] = {
        "type": kind,
        "customer_id": customer.customer_id,
        "event_id": f"ev-{serial:09d}",
        "timestamp": _timestamp(rng, timestamp),
    }
    if kind == "purchase":
        event["amount"] = round(customer.basket * rng.lognormvariate(0, 0.4), 2)
        event["order_id"] = f"o-{serial}"
    elif kind == "session":
        event["duration_seconds"] = round(rng.expovariate(1 / 240), 1)
        event["device"] = rng.choices(customer.devices, weights=customer.device_weights)[0]
    elif kind == "cart":
        converted = rng.random() < (0.25 if customer.type_weights[2] > 1 else 0.6)
        event["status"] = "converted" if converted else "abandoned"
        event["value"] = round(customer.basket * rng.uniform(0.5, 2.0), 2) if rng.random() < 0.9 else None
    elif kind == "support":
        event["response_time_hours"] = round(rng.expovariate(1 / 6), 2) if rng.random() < 0.85 else None
        event["escalated"] = rng.random() < 0.2
    else:
        event["attributes"] = {
            "tier": rng.choice(["bronze", "silver", "gold"]),
            "country": rng.choice(["FR", "DE", "US", "JP"]),
        }
    return event


def _timestamp(rng: random.Random, seconds: float) -> object:
    if rng.random() < 0.2:
        return round(seconds, 3)
    from .core.timeparse import unix_to_iso

    return unix_to_iso(round(seconds, 3))


def _invalid_line(rng: random.Random, customer: _Customer) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return b'{"type": "purchase", "customer_id": "' + customer.customer_id.encode() + b'", '  # cut short
    if kind == 1:
        return _encode({"type": "purchase", "customer_id": customer.customer_id, "timestamp": 0, "amount": -5})
    if kind == 2:
        return _encode({"type": "teleport", "customer_id": customer.customer_id, "timestamp": 0})
    if kind == 3:
        return _encode(
            {"type": "session", "customer_id": customer.customer_id, "timestamp": "not-a-time", "duration_seconds": 10}
        )
    return _encode(["not", "an", "object"])
