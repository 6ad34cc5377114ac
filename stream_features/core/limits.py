"""The contract's fixed limits and names, in one place for Python. The Rust core has its own
copies (``native/wire.rs``, ``state.rs``, ``store.rs``) and exports them as ``_native.LIMITS``;
``tests/test_native.py`` holds the two equal."""

from __future__ import annotations

from typing import Final

MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_CUSTOMER_ID_BYTES: Final = 256
MAX_EVENT_ID_CHARS: Final = 128
MAX_DEVICE_CHARS: Final = 64
# Values above this are rejected as too_large: they are unit mistakes, not purchases.
MAX_NUMERIC_VALUE: Final = 1e15
# Unix seconds outside [1970, 9999] are almost certainly unit mistakes (ms, µs) or garbage.
MIN_UNIX_SECONDS: Final = 0.0
MAX_UNIX_SECONDS: Final = 253402300799.0  # 9999-12-31T23:59:59Z
UNKNOWN_DEVICE: Final = "unknown"  # a session without a device
OTHER_DEVICE: Final = "other"  # the bucket of devices past a tile's cap (EngineSettings.max_devices_per_tile)
EVENT_TYPES: Final = ("purchase", "session", "cart", "support", "profile")
# Housekeeping: dropped tiles and ids are deleted at most once per this much event time.
PRUNE_INTERVAL_SECONDS: Final = 86400.0
IDS_SWEEP_MINIMUM: Final = 32  # remembered ids are never swept below this many
STORED_FORMAT_VERSION: Final = "1"  # the Redis layout this release reads and writes
