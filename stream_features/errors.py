"""The exception tree. Everything the package raises on purpose derives from StreamFeaturesError."""

from __future__ import annotations

from typing import Literal

ReasonCode = Literal[
    "malformed_json",
    "not_an_object",
    "missing_field",
    "bad_type",
    "negative_value",
    "non_finite",
    "unknown_type",
    "bad_timestamp",
    "too_late",
    "future_timestamp",
    "too_large",
    "bad_customer_id",
    "bad_value",
    "internal_error",
    "state_unreadable",
]


class StreamFeaturesError(Exception):
    """Root of every error this package raises deliberately."""


class InvalidEvent(StreamFeaturesError):
    """An event that breaks the contract. Carries a machine-readable reason and the raw input.

    The raw bytes (or mapping) are kept so the consumer can forward them, untouched, to the
    dead-letter topic.
    """

    def __init__(self, reason: ReasonCode, message: str, raw: bytes | object | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: ReasonCode = reason
        self.message = message
        self.raw = raw


class StateUnreadable(StreamFeaturesError):
    """A customer's stored state cannot be decoded (corrupt bytes, or a format this release does
    not know). That customer is quarantined until repaired; every other customer is unaffected."""

    def __init__(self, customer_id: str, message: str) -> None:
        super().__init__(f"customer {customer_id!r}: stored state unreadable: {message}")
        self.customer_id = customer_id
        self.message = message


class InvalidQuery(StreamFeaturesError):
    """A feature request with bad arguments (window out of range, unparsable as_of, ...)."""


class CohortTooLarge(InvalidQuery):
    """A cohort request with more customers than one call may read."""


class ConfigurationError(StreamFeaturesError):
    """A setting that cannot work (bad flag, bad environment value)."""


class ServiceUnavailable(StreamFeaturesError):
    """Kafka or Redis could not be reached within the allowed retries."""


class Stopped(StreamFeaturesError):
    """A stop was requested while a batch was unfinished (a retry loop, unacknowledged dead
    letters): the batch is left uncommitted and will be delivered again."""


class WriteConflict(StreamFeaturesError):
    """A customer kept changing under the writer for ``MAX_CAS_ROUNDS`` rounds in a row (two
    writers fighting over it)."""
