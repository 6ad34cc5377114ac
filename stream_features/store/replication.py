"""What a lookup on a replica can see, from ``INFO replication``: whether the server serves
current data (readiness) and how far it is behind the primary (the status page).

A replica applies the primary's writes in order, a little later: a write the primary has
acknowledged may not be visible on the replica yet. While its link to the primary is down
(the primary lost, a full resync under way) it answers from what it has, possibly stale or,
before its first sync, empty; so it is not *ready* then, though it still answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def readiness_problem(info: Mapping[str, Any]) -> str | None:
    """Why a server whose ``INFO replication`` is ``info`` should not take lookups, or None."""
    if info.get("role") != "slave":
        return None
    if info.get("master_link_status") != "up":
        return "the replica has lost its link to the primary (its data may be stale or empty)"
    if int(info.get("master_sync_in_progress", 0)):
        return "the replica is loading a full copy from the primary"
    return None


def replication_state(read: Mapping[str, Any], primary: Mapping[str, Any] | None) -> dict[str, Any]:
    """For the status page: the read server's role and, for a replica, its link to the primary
    and how many bytes of the primary's replication stream it has not applied yet (``primary``:
    the primary's ``INFO replication``, read just after, or None when it cannot be read)."""
    if read.get("role") != "slave":
        return {"role": "primary"}
    state: dict[str, Any] = {
        "role": "replica",
        "link": read.get("master_link_status"),
        "last_io_seconds_ago": read.get("master_last_io_seconds_ago"),
    }
    if primary is not None and "slave_repl_offset" in read:
        lag = int(primary.get("master_repl_offset", 0)) - int(read["slave_repl_offset"])
        state["lag_bytes"] = max(0, lag)
    return state
