"""stream_features: streaming customer-activity features, kept in Redis, answered in a millisecond."""

from .customer_state import Outcome
from .errors import (
    ConfigurationError,
    InvalidEvent,
    InvalidQuery,
    ServiceUnavailable,
    StreamFeaturesError,
)
from .events import decode_event, validate_event
from .helpers import calculate_purchase_features, calculate_session_features
from .memory import CustomerActivityFeatures
from .settings import EngineSettings, Thresholds

__all__ = [
    "ConfigurationError",
    "CustomerActivityFeatures",
    "EngineSettings",
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
