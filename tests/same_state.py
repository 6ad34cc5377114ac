"""Redis holds exactly what the in-memory engine holds: the check behind every "loses nothing",
"exactly once" and rollback test.

Two comparisons, for every customer found in either Redis (SCAN under the prefix) or the engine:

- the stored state itself (README "Redis key layout"): every tile byte for byte, every profile
  attribute (event time and value), every remembered event id with its event time, the
  bookkeeping the rules read back (newest tile and time, next housekeeping time, id sweep
  trigger), no field or key the layout does not name, and a TTL on both keys. One event lost or
  applied twice changes a tile's bytes, however old it is.
- what the readers answer: flat features over windows of 1, 30, 90 and 400 days at the oldest
  tile, half-way and ``as_of``, and each customer's summary (metadata included).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from stream_features import CustomerActivityFeatures
from stream_features.core.customer_state import CustomerState
from stream_features.core.features import summarize
from stream_features.core.tiles import encode_tile
from stream_features.query.reader import FeatureReader
from stream_features.store.hash_fields import decode_attribute
from stream_features.store.keys import aux_key, escape_customer_id, tiles_key
from stream_features.store.tile_hash import FORMAT_VERSION_FIELD, STORED_FORMAT_VERSION

WINDOWS = (1, 30, 90, 400)
CHUNK = 500  # customers per pipelined round trip (4 commands each)
SHOWN = 10  # differences printed when the states differ
_UNESCAPE = {"%25": "%", "%7B": "{", "%7D": "}"}


def redis_customers(client: Any, prefix: str) -> tuple[set[str], list[str]]:
    """Customer ids with a key under ``prefix`` (SCAN, every node of a cluster), and the keys
    under ``<prefix>:{`` that the layout does not name."""
    glob = re.sub(r"([\\*?\[\]])", r"\\\1", prefix)
    head = f"{prefix}:{{"
    found: set[str] = set()
    strays: list[str] = []
    for raw in client.scan_iter(match=f"{glob}:{{*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        customer = customer_of_key(key, head)
        if customer is None:
            strays.append(key)
        else:
            found.add(customer)
    return found, strays


def customer_of_key(key: str, head: str) -> str | None:
    """The id of ``<prefix>:{<id>}`` or ``<prefix>:{<id>}:x`` (``head`` is ``<prefix>:{``); None
    for any other key (escaping is checked both ways, so a stray ``%41`` is no customer)."""
    if not key.startswith(head):
        return None
    rest = key[len(head) :]
    escaped = rest[:-3] if rest.endswith("}:x") else rest[:-1] if rest.endswith("}") else None
    if escaped is None or "{" in escaped or "}" in escaped:
        return None
    customer = re.sub(r"%(25|7B|7D)", lambda m: _UNESCAPE[m.group(0)], escaped)
    return customer if escape_customer_id(customer) == escaped else None


def stored_states(client: Any, prefix: str, customers: list[str]) -> Iterator[tuple[str, Any, Any, Any, Any]]:
    """(customer, tiles hash, bookkeeping hash, their two TTLs), pipelined ``CHUNK`` customers
    at a time (a cluster client's pipeline routes each command to its node)."""
    for start in range(0, len(customers), CHUNK):
        chunk = customers[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)
        for customer in chunk:
            main, aux = tiles_key(customer, prefix), aux_key(customer, prefix)
            pipe.hgetall(main)
            pipe.hgetall(aux)
            pipe.ttl(main)
            pipe.ttl(aux)
        replies = pipe.execute()
        for index, customer in enumerate(chunk):
            yield customer, *replies[4 * index : 4 * index + 4]


def state_differences(
    state: CustomerState | None, main: dict[bytes, bytes], aux: dict[bytes, bytes], ttls: tuple[int, int], max_ttl: int
) -> list[str]:
    """How one customer's stored hashes differ from the engine's state (empty: identical)."""
    if state is None:
        return [f"in Redis, not in the engine: {sorted(main)[:5]} {sorted(aux)[:5]}"] if main or aux else []
    if not main or not aux:
        return [f"in the engine, missing in Redis (tiles hash: {bool(main)}, bookkeeping: {bool(aux)})"]
    out: list[str] = []
    expected_tiles = {f"t:{index}".encode(): encode_tile(tile) for index, tile in state.tiles.items()}
    stored_tiles = {field: value for field, value in main.items() if field.startswith(b"t:")}
    for field in sorted(expected_tiles.keys() | stored_tiles.keys()):
        if expected_tiles.get(field) != stored_tiles.get(field):
            shown = (stored_tiles.get(field) or b"").hex(), (expected_tiles.get(field) or b"").hex()
            out.append(f"tile {field.decode()}: Redis {shown[0] or 'none'}, engine {shown[1] or 'none'}")
    stored_attributes = {
        field[2:].decode(): decode_attribute(value) for field, value in main.items() if field.startswith(b"a:")
    }
    if stored_attributes != state.attributes:
        out.append(f"attributes: Redis {stored_attributes}, engine {state.attributes}")
    others = main.keys() - stored_tiles.keys() - {f"a:{key}".encode() for key in stored_attributes}
    version = main.get(FORMAT_VERSION_FIELD, STORED_FORMAT_VERSION)  # absent: this layout (README)
    if others - {FORMAT_VERSION_FIELD} or version != STORED_FORMAT_VERSION:
        out.append(f"tiles hash fields outside the layout: {sorted(others)}")
    stored_ids = {field[2:].decode(): value for field, value in aux.items() if field.startswith(b"e:")}
    expected_ids = {event_id: struct.pack("<d", at) for event_id, at in state.seen_event_ids.items()}
    if stored_ids != expected_ids:
        missing, extra = expected_ids.keys() - stored_ids.keys(), stored_ids.keys() - expected_ids.keys()
        changed = {k for k in expected_ids.keys() & stored_ids.keys() if expected_ids[k] != stored_ids[k]}
        out.append(f"remembered ids: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}, times differ {changed}")
    meta = msgspec.msgpack.decode(aux[b"m"]) if b"m" in aux else {}
    bookkeeping = (meta.get("nt"), meta.get("nts"), meta.get("np"), meta.get("is"))
    expected = (state.newest_tile, state.newest_ts, state.next_prune_ts, state._ids_sweep_at)
    if bookkeeping != expected:
        out.append(f"bookkeeping nt nts np is: Redis {bookkeeping}, engine {expected}")
    if not aux.get(b"v", b"").isdigit() or aux.keys() - {b"v", b"m"} - {b"e:" + k.encode() for k in stored_ids}:
        out.append(f"bookkeeping fields outside the layout: {sorted(aux.keys() - {b'm'})[:5]}")
    if not all(0 < ttl <= max_ttl for ttl in ttls):
        out.append(f"TTLs {ttls} (expected 1..{max_ttl})")
    return out


def assert_stored_state_equal(engine: CustomerActivityFeatures, client: Any, prefix: str) -> list[str]:
    """Every customer in Redis or the engine has the same stored state in both; returns them."""
    in_redis, strays = redis_customers(client, prefix)
    assert not strays, f"keys under {prefix}:{{ outside the layout: {strays[:SHOWN]}"
    customers = sorted(in_redis | set(engine.customer_ids()))
    max_ttl = (engine.settings.retention_days + 1) * 86400
    differences: list[str] = []
    for customer, main, aux, main_ttl, aux_ttl in stored_states(client, prefix, customers):
        found = state_differences(engine.state_of(customer), main, aux, (main_ttl, aux_ttl), max_ttl)
        differences += [f"{customer!r}: {difference}" for difference in found]
    assert not differences, f"{len(differences)} differences, first {SHOWN}:\n" + "\n".join(differences[:SHOWN])
    return customers


def as_of_points(engine: CustomerActivityFeatures, as_of: float) -> list[float]:
    """The start of the oldest tile any customer holds, half-way to ``as_of``, and ``as_of``."""
    tile_seconds = engine.settings.tile_seconds
    oldest = min(
        (min(state.tiles) for c in engine.customer_ids() if (state := engine.state_of(c)) and state.tiles),
        default=None,
    )
    if oldest is None or oldest * tile_seconds >= as_of:
        return [as_of]
    start = float(oldest * tile_seconds)
    return [start, (start + as_of) / 2, as_of]


def assert_same_answers(
    engine: CustomerActivityFeatures, reader: FeatureReader, customers: Iterable[str], as_of: float
) -> None:
    """The reader's flat features (every window, every as_of point) and summaries equal the engine's."""
    ids = list(customers)
    for start in range(0, len(ids), CHUNK * 2):
        chunk = ids[start : start + CHUNK * 2]
        for moment in as_of_points(engine, as_of):
            for days in WINDOWS:
                got = reader.get_cohort_features(chunk, days=days, as_of=moment)
                for customer in chunk:
                    expected = engine.get_all_features(customer, days, moment)
                    assert got.get(customer) == expected, (customer, days, moment, got.get(customer), expected)
        for (features, metadata), customer in zip(reader.records(chunk, as_of=as_of), chunk, strict=True):
            assert summarize(features, metadata) == engine.get_feature_summary(customer, as_of=as_of), customer
