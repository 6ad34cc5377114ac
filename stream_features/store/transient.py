"""Which Redis errors end by themselves (wait and retry) and which do not (raise).

A restart, failover, resharding or a long script makes Redis refuse work for a while; the
consumer must wait those out, never skip and never die. Everything else (a wrong type under our
key, a missing permission, a script bug) is not fixed by waiting and is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis import exceptions

T = TypeVar("T")

# Classes redis-py raises for conditions that pass: connection lost, timeouts, LOADING, READONLY
# (a demoted primary), OOM (memory is freed by eviction or expiry), CLUSTERDOWN, TRYAGAIN,
# MASTERDOWN, MOVED/ASK (a slot moving during resharding).
_TRANSIENT_CLASSES: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    exceptions.BusyLoadingError,
    exceptions.OutOfMemoryError,
    exceptions.ReadOnlyError,
    exceptions.ClusterDownError,
    exceptions.TryAgainError,
    exceptions.MasterDownError,
    exceptions.AskError,
    exceptions.MovedError,
    exceptions.ClusterError,
)
# Error replies redis-py leaves as a plain ResponseError, by their code (the first word).
_TRANSIENT_CODES = frozenset(
    {"BUSY", "LOADING", "READONLY", "OOM", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "MOVED", "ASK", "NOREPLICAS"}
)


def is_transient(error: BaseException) -> bool:
    """True for a Redis error that waiting out fixes (see the module doc)."""
    if isinstance(error, _TRANSIENT_CLASSES):
        return True
    if isinstance(error, redis.ResponseError):
        code = str(error).split(" ", 1)[0].upper()
        return code in _TRANSIENT_CODES
    return False


def retry_transient(
    call: Callable[[], T],
    *,
    on_wait: Callable[[redis.RedisError, float], None],
    max_delay: float,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """``call()`` until it returns or fails with an error waiting does not fix; before each wait,
    ``on_wait(error, delay)`` (logging, metrics; it may raise to give up), then ``sleep(delay)``,
    the delay doubling from 0.1 s up to ``max_delay``."""
    delay = 0.1
    while True:
        try:
            return call()
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
            on_wait(exc, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay)
