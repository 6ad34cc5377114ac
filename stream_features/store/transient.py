"""Which Redis errors end by themselves (wait and retry) and which do not (raise).

A restart, failover, resharding or a long script makes Redis refuse work for a while; the
consumer must wait those out, never skip and never die. Everything else (a wrong type under our
key, a missing permission, a script bug) is not fixed by waiting and is raised.
"""

from __future__ import annotations

import redis
from redis import exceptions

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
