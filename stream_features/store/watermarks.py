"""Where to resume: per-partition applied watermarks kept in Redis, with the state they describe.

Redis may go back in time (a crash without fsync, a failover to a replica that lagged, a restore
from a backup, a FLUSHALL); the features may not (SPEC §5). So the consumer resumes each
partition from the offset recorded *in Redis*, not from Kafka's commit: whatever point Redis
rolls back to, its watermark describes exactly the state it holds, and replaying from there
loses nothing (per-customer offsets skip what the state already has).

Why the order holds: the consumer writes a batch's watermark only after every state write of
that batch has been acknowledged (all four connections' replies read) and its dead letters
acknowledged by Kafka. Redis executes commands in the order it receives them and logs and
replicates them in that order, so any prefix of its history (an AOF cut short, a replica that
lagged, a snapshot) that holds a watermark holds every state write before it.

The watermark is advanced by compare-and-set on the value this consumer last read or wrote: a
value that changed under it (missing after a wipe, lower after a rollback) is a rollback, and
the consumer replays from what Redis holds. In Redis Cluster a shard can roll back on its own,
so each primary holds its own watermark key (a hash tag chosen to land on it) and the resume
point is the minimum across them.

Layout, one hash per key ``<prefix>:offsets:{<topic>[:<n>]}``: ``p:<partition>`` next offset to
read, ``s:<partition>`` the first offset the partition's state holds (where the first consumer
or history load started it), ``topic_id`` the Kafka topic id the offsets belong to, ``epoch``
how many times the topic was re-created, ``newest_event_time`` and ``applied_at`` (Unix seconds)
of the last batch, for status pages; during a history load ``h:<partition>`` (the load's hold:
``<expiry, Redis ms> <holder>``) and ``a:<partition>`` (the holder a consumer paused the
partition for). README "Redis key layout".

Holds (``stream-features backfill``): a history load with Kafka coordinates must put its records
before anything a consumer writes after them, so it holds the partitions it loads. A consumer
does not read a held partition (it pauses it and acknowledges), a watermark cannot advance
while held, and the load releases the hold in the same call that hands the partition over
(its new watermark). A hold is a lease that the load renews: a load that dies frees the
partitions when its lease runs out.
"""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster

from ..errors import StreamFeaturesError

# KEYS: one watermark hash. ARGV[1]: n; then n triples (partition field, expected value or "" for
# none, new value); then field/value pairs set along (status: newest event time, when applied).
# Sets everything and returns 1 when each field holds its expected value (or already the new one:
# a retry after a lost reply) and no partition is held by a history load; else changes nothing
# and returns 0.
_ADVANCE = """
local set = {}
local last = 1 + 3 * tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 2, last, 3 do
  local hold = redis.call('HGET', KEYS[1], 'h:' .. string.sub(ARGV[i], 3))
  if hold and tonumber(string.match(hold, '^(%d+)')) > now then return 0 end
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current ~= ARGV[i + 1] and current ~= ARGV[i + 2] then return 0 end
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 2]
end
for i = last + 1, #ARGV do set[#set + 1] = ARGV[i] end
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
return 1
"""


# KEYS: one watermark hash. ARGV: holder, lease (ms), then partitions. Takes (or renews) the
# hold of every partition unless another holder's lease on one of them still runs; returns
# {1} or {0, the partition held by another, its holder}.
_HOLD = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 3, #ARGV do
  local hold = redis.call('HGET', KEYS[1], 'h:' .. ARGV[i])
  if hold then
    local expiry, holder = string.match(hold, '^(%d+) (.*)$')
    if tonumber(expiry) > now and holder ~= ARGV[1] then return {0, ARGV[i], holder} end
  end
end
for i = 3, #ARGV do
  redis.call('HSET', KEYS[1], 'h:' .. ARGV[i], tostring(now + tonumber(ARGV[2])) .. ' ' .. ARGV[1])
end
return {1}
"""

# KEYS: one watermark hash. ARGV: holder, then field/value pairs to set, then "--", then
# partitions whose hold (and acknowledgement) ends. Only while every one of those holds is
# still this holder's: sets the fields, ends the holds, returns 1; else changes nothing, 0.
_HAND_OVER = """
local split = 2
while ARGV[split] ~= '--' do split = split + 2 end
for i = split + 1, #ARGV do
  local hold = redis.call('HGET', KEYS[1], 'h:' .. ARGV[i])
  if not hold or string.match(hold, '^%d+ (.*)$') ~= ARGV[1] then return 0 end
end
if split > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 2, split - 1)) end
for i = split + 1, #ARGV do
  redis.call('HDEL', KEYS[1], 'h:' .. ARGV[i], 'a:' .. ARGV[i])
end
return 1
"""


def _field(partition: int) -> str:
    return f"p:{partition}"


def _text(raw: object) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else None if raw is None else str(raw)


class HeldElsewhere(StreamFeaturesError):
    """A partition is held by another history load whose lease still runs."""

    def __init__(self, partition: int, holder: str) -> None:
        super().__init__(f"partition {partition} is held by another history load ({holder})")
        self.partition = partition
        self.holder = holder


class Watermarks:
    """The per-partition watermarks of one topic in one Redis (or Redis Cluster)."""

    def __init__(self, client: redis.Redis | RedisCluster, *, prefix: str, topic: str) -> None:
        self._client = client
        self._advance = client.register_script(_ADVANCE)
        self._hold = client.register_script(_HOLD)
        self._hand_over = client.register_script(_HAND_OVER)
        base = f"{prefix}:offsets:{{{topic.replace('{', '%7B').replace('}', '%7D')}"
        self.keys = _shard_keys(client, base) if isinstance(client, RedisCluster) else [base + "}"]

    def read(self, partitions: list[int]) -> dict[int, int | None]:
        """The lowest watermark each partition has across the keys; None where a key has none."""
        found: dict[int, int | None] = {}
        fields = [_field(p) for p in partitions]
        for key in self.keys:
            values = self._client.hmget(key, fields) if fields else []
            for partition, raw in zip(partitions, values, strict=True):
                value = None if raw is None else int(raw)
                if partition not in found:
                    found[partition] = value
                else:
                    current = found[partition]
                    found[partition] = None if current is None or value is None else min(current, value)
        return found

    def advance(
        self, expected: dict[int, int | None], new: dict[int, int], *, status: dict[str, str] | None = None
    ) -> bool:
        """Set ``new`` where every key still holds ``expected`` for those partitions (and the
        ``status`` fields along). False means a key held something else: Redis went back in
        time (or was wiped).
        """
        args: list[str] = [str(len(new))]
        for partition, value in new.items():
            before = expected.get(partition)
            args += [_field(partition), "" if before is None else str(before), str(value)]
        for name, text in (status or {}).items():
            args += [name, text]
        if len(args) == 1:
            return True
        held = True
        for key in self.keys:  # every shard, even when one refuses: the others move on
            held = bool(self._advance(keys=[key], args=args)) and held
        return held

    def status(self) -> dict[str, str]:
        """The fields a consumer sets along with its watermarks (first key; for status pages)."""
        raw = self._client.hgetall(self.keys[0])
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }

    def log_identity(self) -> tuple[str | None, int]:
        """The topic id the stored offsets belong to, and the topic's epoch (0 when unknown)."""
        raw_id, raw_epoch = self._client.hmget(self.keys[0], ["topic_id", "epoch"])
        topic_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        return topic_id, int(raw_epoch or 0)

    def starts(self, partitions: list[int]) -> dict[int, int | None]:
        """Where each partition's state starts (``s:<partition>``): the lowest across keys."""
        found: dict[int, int | None] = {}
        for key in self.keys:
            values = self._client.hmget(key, [f"s:{p}" for p in partitions]) if partitions else []
            for partition, raw in zip(partitions, values, strict=True):
                value = None if raw is None else int(raw)
                seen = found.get(partition, value)
                found[partition] = value if seen is None else seen if value is None else min(seen, value)
        return found

    def set_fields(self, fields: dict[str, str]) -> None:
        """Status fields beside the watermarks (every key)."""
        for key in self.keys:
            self._client.hset(key, mapping={name: value for name, value in fields.items()})

    def note_starts(self, starts: dict[int, int]) -> None:
        """Record where partitions' states start, unless already recorded (every key)."""
        for key in self.keys:
            pipe = self._client.pipeline(transaction=False)
            for partition, offset in starts.items():
                pipe.hsetnx(key, f"s:{partition}", str(offset))
            pipe.execute()

    # ----- holds (history loads) ---------------------------------------------------------------

    def hold(self, partitions: list[int], holder: str, *, lease_seconds: float) -> None:
        """Take or renew the hold of ``partitions`` for ``lease_seconds`` (every key); raises
        ``HeldElsewhere`` when another holder's lease on one of them still runs."""
        if not partitions:
            return
        args = [holder, str(int(lease_seconds * 1000)), *map(str, partitions)]
        for key in self.keys:
            reply = self._hold(keys=[key], args=args)
            if int(reply[0]) != 1:
                raise HeldElsewhere(int(reply[1]), _text(reply[2]) or "?")

    def holds(self, partitions: list[int]) -> dict[int, str]:
        """The partitions held now, with their holder (a lease that ran out is no hold)."""
        if not partitions:
            return {}
        seconds, micros = self._client.time()
        now_ms = seconds * 1000 + micros // 1000
        held: dict[int, str] = {}
        for key in self.keys:
            values = self._client.hmget(key, [f"h:{p}" for p in partitions])
            for partition, raw in zip(partitions, values, strict=True):
                expiry, _, holder = (_text(raw) or "").partition(" ")
                if expiry.isdigit() and int(expiry) > now_ms:
                    held[partition] = holder
        return held

    def acknowledge(self, partitions: dict[int, str]) -> None:
        """The consumer owning these partitions paused them for these holders (``a:<partition>``)."""
        if partitions:
            for key in self.keys:
                self._client.hset(key, mapping={f"a:{p}": holder for p, holder in partitions.items()})

    def acknowledgements(self, partitions: list[int]) -> dict[int, str]:
        """Which holder each partition was paused for (first key)."""
        if not partitions:
            return {}
        values = self._client.hmget(self.keys[0], [f"a:{p}" for p in partitions])
        return {p: text for p, raw in zip(partitions, values, strict=True) if (text := _text(raw)) is not None}

    def hand_over(self, holder: str, fields: dict[str, str], partitions: list[int]) -> bool:
        """Set ``fields`` (new watermarks and starts) and end the holds of ``partitions``, in one
        call per key and only while they are still this holder's; False if a hold was lost."""
        args = [holder]
        for name, value in fields.items():
            args += [name, value]
        args += ["--", *map(str, partitions)]
        held = True
        for key in self.keys:
            held = bool(self._hand_over(keys=[key], args=args)) and held
        return held

    def start_log(self, topic_id: str, epoch: int) -> None:
        """Record a (new) log: its topic id and epoch, with no partition watermarks yet."""
        for key in self.keys:
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(key)
            pipe.hset(key, mapping={"topic_id": topic_id, "epoch": str(epoch)})
            pipe.execute()


def _shard_keys(client: RedisCluster, base: str) -> list[str]:
    """One key per primary: the first ``<base>:<n>}`` whose slot that primary serves."""
    primaries = {node.name for node in client.get_primaries()}  # type: ignore[no-untyped-call]
    keys: dict[str, str] = {}
    for n in range(100_000):
        if len(keys) == len(primaries):
            break
        key = f"{base}:{n}}}"
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        if node is not None and node.name in primaries and node.name not in keys:
            keys[node.name] = key
    return sorted(keys.values())
