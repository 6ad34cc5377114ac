"""Profile attributes made JSON-safe and bounded, whatever the caller hands in.

Nested, non-serialisable, circular or oversized values must neither crash nor hang: every walk
is bounded by depth, item count and a total node budget, and anything JSON cannot hold becomes
a short string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import msgspec

MAX_ATTRIBUTES: Final = 100
MAX_KEY_CHARS: Final = 128
MAX_STRING_CHARS: Final = 1024
MAX_ITEMS: Final = 100
MAX_DEPTH: Final = 8
MAX_NODES: Final = 5000
MAX_VALUE_BYTES: Final = 4096  # one attribute's JSON; a larger value is stored as TRUNCATED
TRUNCATED: Final = "…"

_encoder: Final = msgspec.json.Encoder()

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def sanitize_attributes(attributes: Mapping[Any, Any]) -> dict[str, JsonValue]:
    """Return a JSON-safe copy of a profile's attributes (first ``MAX_ATTRIBUTES`` keys).

    >>> sanitize_attributes({"tier": "gold", 1: float("nan"), "tags": {"a", "b"}.__class__})
    {'tier': 'gold', '1': None, 'tags': "<class 'set'>"}
    """
    walker = _Walker()
    result: dict[str, JsonValue] = {}
    for key, value in _bounded_items(attributes, MAX_ATTRIBUTES):
        clean = walker.value(value, depth=1, path=(id(attributes),))
        if isinstance(clean, list | dict | str) and len(_encoder.encode(clean)) > MAX_VALUE_BYTES:
            clean = TRUNCATED
        result[_key(key)] = clean
    return result


def _bounded_items(mapping: Mapping[Any, Any], limit: int) -> list[tuple[Any, Any]]:
    items = []
    try:
        for index, item in enumerate(mapping.items()):
            if index >= limit:
                break
            items.append(item)
    except Exception:  # a hostile Mapping: keep what was read
        pass
    return items


def _key(key: object) -> str:
    text = _unicode(key) if isinstance(key, str) else _safe_str(key)
    return text if len(text) <= MAX_KEY_CHARS else text[:MAX_KEY_CHARS] + TRUNCATED


def _unicode(text: str) -> str:
    """Lone surrogates (possible in a Python str, never in UTF-8) become "?"."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8") if not _encodable(text) else text


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _safe_str(value: object) -> str:
    try:
        text = str(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_STRING_CHARS else text[:MAX_STRING_CHARS] + TRUNCATED


class _Walker:
    def __init__(self) -> None:
        self.nodes = 0

    def value(self, value: object, *, depth: int, path: tuple[int, ...]) -> JsonValue:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            return TRUNCATED
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if abs(value) < 2**63 else _safe_str(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, str):
            value = _unicode(value)
            return value if len(value) <= MAX_STRING_CHARS else value[:MAX_STRING_CHARS] + TRUNCATED
        if isinstance(value, Mapping | list | tuple):
            if id(value) in path:
                return "<circular>"
            if depth >= MAX_DEPTH:
                return TRUNCATED
            inner = (*path, id(value))
            if isinstance(value, Mapping):
                return {
                    _key(k): self.value(v, depth=depth + 1, path=inner) for k, v in _bounded_items(value, MAX_ITEMS)
                }
            return [self.value(v, depth=depth + 1, path=inner) for v in value[:MAX_ITEMS]]
        return _safe_str(value)
