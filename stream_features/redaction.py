"""Secrets never printed: every value registered here (passwords in Redis URLs, secret Kafka
options, API tokens) is replaced by ``***`` in log lines, CLI errors and the status page.

Masking by value catches what masking by field cannot: a library that quotes a connection
string or a config value in an exception message.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "***"
# Shorter values would turn ordinary words in messages into ***; such passwords are unsafe anyway.
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register(values: Iterable[str]) -> None:
    """Remember secrets for the life of the process (idempotent)."""
    global _secrets
    fresh = {value for value in values if len(value) >= MIN_SECRET_LENGTH}
    with _lock:
        if fresh - set(_secrets):
            # Longest first, so a secret containing another is masked whole.
            _secrets = tuple(sorted(fresh | set(_secrets), key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
