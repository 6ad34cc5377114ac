"""The query core, without I/O, shared by the in-memory engine and both Redis readers: what a
lookup's arguments mean (``resolve``), how many customers one call may ask for (``distinct``,
``resolve_rows``), and features from a customer's tiles. The readers add only the fetching."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import CohortTooLarge
from .features import TRADEOFF_FIELDS, flat_features
from .settings import EngineSettings
from .tiles import TileAggregate
from .timeparse import parse_as_of
from .windows import validate_days

MAX_COHORT_SIZE = 10_000  # distinct customers (or rows) per cohort or point-in-time call


def resolve(days: object, as_of: object, settings: EngineSettings, *, now: float) -> tuple[int, float]:
    """A lookup's window length in days (None: 30) and its moment (None: now), validated."""
    return validate_days(days, settings), parse_as_of(as_of, now=now)


def distinct(customer_ids: Iterable[str]) -> list[str]:
    """The distinct ids of a cohort in first-seen order; ``CohortTooLarge`` past the bound."""
    unique = list(dict.fromkeys(customer_ids))
    if len(unique) > MAX_COHORT_SIZE:
        raise CohortTooLarge(f"a cohort holds at most {MAX_COHORT_SIZE} customers, got {len(unique)}")
    return unique


def resolve_rows(
    rows: Iterable[tuple[str, object]], days: object, settings: EngineSettings, *, now: float
) -> list[tuple[str, tuple[int, float]]]:
    """Point-in-time rows (customer, as_of) resolved; ``CohortTooLarge`` past the bound."""
    resolved = [(customer, resolve(days, as_of, settings, now=now)) for customer, as_of in rows]
    if len(resolved) > MAX_COHORT_SIZE:
        raise CohortTooLarge(f"at most {MAX_COHORT_SIZE} rows per call, got {len(resolved)}")
    return resolved


def rows_from_tiles(
    rows: list[tuple[str, tuple[int, float]]],
    tiles_of: Mapping[str, Mapping[int, TileAggregate] | None],
    settings: EngineSettings,
) -> list[dict[str, Any] | None]:
    """Each row's flat features exactly as of its own time; None where the tiles are missing
    (an unreadable customer)."""
    out: list[dict[str, Any] | None] = []
    for customer, (days, as_of) in rows:
        tiles = tiles_of.get(customer)
        out.append(None if tiles is None else flat_features(customer, tiles, days=days, as_of=as_of, settings=settings))
    return out


def tradeoff_of(features: Mapping[str, Any]) -> dict[str, Any]:
    """The trade-off indicators of a flat feature record."""
    return {name: features[name] for name in TRADEOFF_FIELDS}
