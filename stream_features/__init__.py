"""stream_features: streaming customer-activity features, kept in Redis, answered in a millisecond."""

from .core.customer_state import Outcome
from .core.events import decode_event, validate_event
from .core.helpers import calculate_purchase_features, calculate_session_features
from .core.memory import CustomerActivityFeatures
from .core.settings import EngineSettings, Thresholds
from .errors import (
    ConfigurationError,
    InvalidEvent,
    InvalidQuery,
    ServiceUnavailable,
    StreamFeaturesError,
)

__all__ = [
    "AsyncFeatureReader",
    "ConfigurationError",
    "CustomerActivityFeatures",
    "EngineSettings",
    "FeatureReader",
    "InvalidEvent",
    "InvalidQuery",
    "Outcome",
    "ServiceUnavailable",
    "StreamFeaturesError",
    "Thresholds",
    "calculate_purchase_features",
    "calculate_session_features",
    "decode_event",
    "validate_event",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The Redis readers load redis-py and the Rust core: only when asked for.
    if name in ("FeatureReader", "AsyncFeatureReader"):
        from .query import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
