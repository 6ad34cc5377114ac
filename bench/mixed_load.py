"""Lookups while a backlog is ingested at full speed into the same Redis (issue #23), against
the same lookups with Redis idle, in the same run.

A private Redis (deploy/redis.conf, latency monitor and slow log at 1 ms; with ``--replica`` a
private replica too) holds ``--customers`` customers loaded before the run; a fresh topic on the
shared Kafka holds a backlog of ``--events`` events for the same customers. Each round:

1. idle: ``--lookups`` lookups one after another with ``FeatureReader`` (a process of its own),
   then wrk against ``stream-features serve`` for ``--wrk-seconds``;
2. the backlog ingested by the real consumer (``stream-features consume``, a subprocess) alone;
3. the backlog ingested again (fresh group and key prefix each time) with the reader running,
   then again with wrk running; lookups are counted only while the ingest runs.

With ``--replica`` the lookups of steps 1 and 3 run against the primary and against the replica
(``REDIS_READ_URL``), and each ingest measures how far the replica is behind: bytes of the
replication stream (sampled every 50 ms) and the time from a write acknowledged by the primary
to the replica having applied it (``WAIT 1``, every 20 ms). For each step: lookup p50, p99,
p99.9 and max; ingest events/s (from the consumer's first write to Redis to the watermark
reaching the end of the topic, so group join and the first batch's decoding are left out);
from Redis (primary and replica): the slowest commands in the slow log, the latency monitor's
events, AOF rewrites and forks, and the write commands' mean time.

    python3 -m bench.mixed_load --customers 20000 --events 862644               # dense customers
    python3 -m bench.mixed_load --customers 1000000 --events 1000000 --load-events 1000000  # sparse
    python3 -m bench.mixed_load --replica ...                                   # + replica reads

Every loop is bounded in count and time; the Redis servers, the API server and the consumer
are the benchmark's own and are stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from stream_features.config import ServiceConfig
from stream_features.generate import GeneratorOptions, generate_events
from stream_features.ingest.kafka_io import ensure_topics, wait_for_kafka
from stream_features.ingest.producer import produce_lines
from stream_features.store.watermarks import Watermarks

from .common import percentiles, write_results
from .consumer_throughput import _delete_prefix, committed_end
from .http_throughput import start as start_server
from .lookup_latency import load

# Redis's own view of the slow commands: the latency monitor and the slow log from 1 ms (the
# budget SPEC §5 sets for one write call), on the benchmark's private servers.
REDIS_SETTINGS = ("--latency-monitor-threshold", "1", "--slowlog-log-slower-than", "1000", "--slowlog-max-len", "1024")
# The consumer's (a replica applies a script's effects: HSET, HDEL, PEXPIREAT…); lookups only read.
WRITE_COMMANDS = ("evalsha", "eval", "fcall", "hset", "hdel", "pexpireat", "expire")
PARTITIONS = 4
WRK_IDS = 20000  # customer ids in the wrk script (a sample when there are more)


@dataclass
class Servers:
    """The primary the consumer writes to; where each lookup target reads."""

    primary: redis.Redis
    primary_url: str
    targets: dict[str, str]  # "primary" / "replica" → read URL
    clients: dict[str, redis.Redis] = field(default_factory=dict)


# ---------------------------------------------------------------- lookups (a process of its own)


def _reader(read_url: str, prefix: str, ids: list[str], count: int, seconds: float, stop: Any, out: Any) -> None:
    """Lookups one after another until ``count`` are done, ``seconds`` have passed or ``stop``
    is set; sends back (monotonic start, seconds) per lookup. Runs in a spawned process, so the
    measuring process's work never delays it."""
    from stream_features.query.reader import FeatureReader

    reader = FeatureReader(redis.Redis.from_url(read_url), prefix=prefix)
    rng = random.Random(5)
    for customer in ids[:200]:  # connections and code paths warm
        reader.get_features(customer)
    out.put("ready")
    started_at: list[float] = []
    took: list[float] = []
    deadline = time.monotonic() + seconds
    while len(took) < count and not stop.is_set() and time.monotonic() < deadline:
        customer = rng.choice(ids)
        began = time.monotonic()
        tick = time.perf_counter()
        reader.get_features(customer)
        took.append(time.perf_counter() - tick)
        started_at.append(began)
    out.put((started_at, took))


class ReaderProcess:
    def __init__(self, read_url: str, prefix: str, ids: list[str], *, count: int, seconds: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.out = context.Queue()
        args = (read_url, prefix, ids, count, seconds, self.stop, self.out)
        self.process = context.Process(target=_reader, args=args, daemon=True)
        self.process.start()
        if self.out.get(timeout=120) != "ready":
            raise RuntimeError("the reader process did not start")

    def samples(self, timeout: float) -> tuple[list[float], list[float]]:
        """(start, seconds) of each lookup, once it has finished (``stop`` ends it early)."""
        started_at, took = self.out.get(timeout=timeout)
        self.process.join(timeout=30)
        return started_at, took


# ---------------------------------------------------------------- HTTP lookups (wrk)

WRK_SCRIPT = """
local ids = {%s}
local n = #ids
local threads = 0
setup = function(thread) thread:set("id", threads); threads = threads + 1 end
init = function(args) math.randomseed(11 + (id or 0)) end
request = function() return wrk.format("GET", "/v1/customers/" .. ids[math.random(n)] .. "/features") end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("MIXED_LOAD %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.status))
end
"""


def ensure_wrk() -> None:
    """wrk is Debian's package: installed here when missing and we are root."""
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is missing: sudo apt-get install -y wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, stdout=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        stdout=sys.stderr,
        check=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def wrk_script(ids: list[str], directory: Path) -> Path:
    sample = random.Random(3).sample(ids, min(len(ids), WRK_IDS))
    path = directory / "mixed_load.lua"
    path.write_text(WRK_SCRIPT % ",".join(f'"{customer}"' for customer in sample))
    return path


def start_wrk(port: int, connections: int, seconds: int, script: Path) -> subprocess.Popen[str]:
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "-s", str(script)]
    return subprocess.Popen([*command, f"http://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str], timeout: float) -> dict[str, float]:
    out, _ = process.communicate(timeout=timeout)
    line = next((text for text in out.splitlines() if text.startswith("MIXED_LOAD ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, micros, errors, p50, p99, p999, top, status_errors = (int(x) for x in line.split()[1:])
    return {
        "requests": requests,
        "requests_per_s": round(requests / (micros / 1e6)),
        "errors": errors,
        "non_2xx": status_errors,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "p99_9_ms": p999 / 1000,
        "max_ms": top / 1000,
    }


# ---------------------------------------------------------------- Redis's own view


class RedisView:
    """What one Redis server says about a phase: taken before and after, never reset (so it
    works on a server others use): slow log entries newer than the phase's start, latency
    events recorded since, and deltas of AOF rewrites, forks and write-command time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.started = 0.0
        self.slowlog_id = -1
        self.before: dict[str, Any] = {}

    def _counters(self) -> dict[str, Any]:
        info = self.client.info("all")
        return {
            "aof_rewrites": info.get("aof_rewrites", 0),
            "forks": info.get("total_forks", 0),
            "commands": {name: info.get(f"cmdstat_{name}", {}) for name in WRITE_COMMANDS},
        }

    def begin(self) -> None:
        self.started = time.time()
        newest = self.client.slowlog_get(1)
        self.slowlog_id = newest[0]["id"] if newest else -1
        self.before = self._counters()

    def writes_seen(self) -> int:
        after = self._counters()["commands"]
        return sum(int(after[n].get("calls", 0)) - int(self.before["commands"][n].get("calls", 0)) for n in after)

    def end(self) -> dict[str, Any]:
        after = self._counters()
        slow = [e for e in self.client.slowlog_get(1024) if e["id"] > self.slowlog_id]
        slowest = max(slow, key=lambda e: e["duration"], default=None)
        events: dict[str, float] = {}
        for event, *_ in self.client.execute_command("LATENCY", "LATEST"):
            name = event.decode() if isinstance(event, bytes) else str(event)
            seen = [ms for at, ms in self.client.execute_command("LATENCY", "HISTORY", name) if at >= int(self.started)]
            if seen:
                events[name] = max(seen)
        writes = {}
        for name, now in after["commands"].items():
            calls = int(now.get("calls", 0)) - int(self.before["commands"][name].get("calls", 0))
            if calls:
                usec = int(now.get("usec", 0)) - int(self.before["commands"][name].get("usec", 0))
                writes[name] = {"calls": calls, "mean_us": round(usec / calls, 1)}
        return {
            "slowest_command_ms": None if slowest is None else slowest["duration"] / 1000,
            "slowest_command": None if slowest is None else _command_name(slowest["command"]),
            "commands_over_1ms": len(slow),  # the log keeps 1,024: a full log means at least that
            "latency_monitor_max_ms": events,  # per event (command, fork, aof-*, …): the worst second
            "aof_rewrites": after["aof_rewrites"] - self.before["aof_rewrites"],
            "forks": after["forks"] - self.before["forks"],
            # Calls and mean time per write command (a script's own HSETs are counted in its time too).
            "write_commands": writes,
        }


def _command_name(command: bytes | str) -> str:
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    words = text.split()
    return f"{words[0]} ({len(words) - 1} arguments)" if words else ""


# ---------------------------------------------------------------- replication lag (replica mode)


class LagWatch:
    """While an ingest runs: bytes of the replication stream the replica has not applied
    (sampled every 50 ms), and write → applied on the replica (``WAIT 1``, every 20 ms)."""

    def __init__(self, primary: redis.Redis, replica: redis.Redis, probe_key: str) -> None:
        self.primary, self.replica, self.key = primary, replica, probe_key
        self.stop = threading.Event()
        self.lag_bytes: list[int] = []
        self.applied_after: list[float] = []
        self.threads = [
            threading.Thread(target=self._bytes, daemon=True),
            threading.Thread(target=self._probe, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _bytes(self) -> None:
        while not self.stop.wait(0.05):
            behind = self.replica.info("replication").get("slave_repl_offset", 0)
            self.lag_bytes.append(max(0, self.primary.info("replication")["master_repl_offset"] - behind))

    def _probe(self) -> None:
        probe = redis.Redis(connection_pool=self.primary.connection_pool)
        count = 0
        while not self.stop.wait(0.02):
            count += 1
            probe.set(self.key, count)
            sent = time.perf_counter()
            if probe.execute_command("WAIT", 1, 5000) >= 1:
                self.applied_after.append(time.perf_counter() - sent)

    def result(self) -> dict[str, Any]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.primary.delete(self.key)
        ordered = sorted(self.lag_bytes) or [0]
        return {
            "lag_bytes": {
                "samples": len(self.lag_bytes),
                "p50": ordered[len(ordered) // 2],
                "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
                "max": ordered[-1],
            },
            "write_to_applied_on_replica": percentiles(self.applied_after) if self.applied_after else None,
        }


# ---------------------------------------------------------------- one ingest of the backlog


@dataclass
class Ingest:
    config: ServiceConfig  # the topic and the primary; group and prefix are set per run
    produced: int
    servers: Servers
    views: dict[str, RedisView]
    timeout: float
    consumer_nice: int = 0

    def run(self, label: str, during: Any = None) -> dict[str, Any]:
        """One full ingest into a fresh key prefix; ``during(started)`` starts lookups once the
        consumer's first write is seen and returns a function that collects them."""
        tag = uuid.uuid4().hex[:6]
        config = replace(
            self.config, group_id=f"{self.config.group_id}-{tag}", key_prefix=f"{self.config.key_prefix}-{tag}"
        )
        for view in self.views.values():
            view.begin()
        watermarks = Watermarks(self.servers.primary, prefix=config.key_prefix, topic=config.topic)
        primary_view = self.views["primary"]
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below) a file: a chatty consumer never blocks
        command = _consume_command(config, self.consumer_nice)
        consumer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
        collect = None
        try:
            deadline = time.monotonic() + self.timeout
            while primary_view.writes_seen() == 0:
                _check(consumer, log, deadline, "the consumer's first write")
                time.sleep(0.005)
            started = time.monotonic()
            collect = during(started) if during is not None else None
            while sum(v or 0 for v in watermarks.read(list(range(PARTITIONS))).values()) < self.produced:
                _check(consumer, log, deadline, "the backlog ingested")
                time.sleep(0.01)
            finished = time.monotonic()
            extra = collect(started, finished) if collect is not None else {}
            if consumer.wait(timeout=60) != 0:
                raise RuntimeError(f"consumer exited {consumer.returncode}: {_tail(log)}")
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait(timeout=30)
            log.close()
        seconds = finished - started
        result = {
            "label": label,
            "events": self.produced,
            "seconds": round(seconds, 2),
            "events_per_s": round(self.produced / seconds),
            **extra,
            "redis": {name: view.end() for name, view in self.views.items()},
        }
        _delete_prefix(self.servers.primary, config.key_prefix)
        return result


def _consume_command(config: ServiceConfig, consumer_nice: int) -> list[str]:
    # On a small shared host the consumer can run below Redis's CPU priority (--consumer-nice):
    # Redis and the lookups then get the cores first whenever they have work.
    nice = ["nice", "-n", str(consumer_nice)] if consumer_nice else []
    command = [
        *nice,
        sys.executable,
        "-m",
        "stream_features",
        "consume",
        "--bootstrap-servers",
        config.kafka_bootstrap_servers,
    ]
    command += ["--topic", config.topic, "--group", config.group_id, "--redis-url", config.redis_url]
    return [
        *command,
        "--key-prefix",
        config.key_prefix,
        "--metrics-port",
        "0",
        "--exit-when-idle",
        "3",
        "--log-level",
        "warning",
    ]


def _check(process: subprocess.Popen[str], log: Any, deadline: float, what: str) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"the consumer exited ({process.returncode}) before {what}: {_tail(log)}")
    if time.monotonic() > deadline:
        raise TimeoutError(f"timed out waiting for {what}")


def _tail(log: Any) -> str:
    log.seek(0)
    return str(log.read()[-2000:])


# ---------------------------------------------------------------- the run


def main() -> None:
    args = _arguments()
    ensure_wrk()
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="mixed-load-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        servers = _servers(args, workdir, cleanup)
        run_id = uuid.uuid4().hex[:8]
        prefix = f"mixed-{run_id}"
        config = ServiceConfig(
            kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            redis_url=servers.primary_url,
            topic=f"mixed-{run_id}",
            group_id=f"mixed-{run_id}",
            key_prefix=f"{prefix}-ingest",
        )
        print(f"loading {args.customers:,} customers ({args.load_events:,} events) …", file=sys.stderr)
        ids = load(servers.primary, prefix, args.customers, args.load_events)
        if args.redis_url:  # a private Redis goes with its data
            cleanup.callback(_delete_prefix, servers.primary, prefix)
        admin = wait_for_kafka(config)
        ensure_topics(admin, [config.topic, config.dlq_topic], partitions=PARTITIONS)
        cleanup.callback(admin.delete_topics, [config.topic, config.dlq_topic])
        now = time.time()
        backlog = GeneratorOptions(
            customers=args.customers, events=args.events, start=now - 365 * 86400, end=now - 60, seed=4
        )
        produced = produce_lines(generate_events(backlog), config, total=args.events, show_progress=False)
        assert committed_end(config) == produced
        if "replica" in servers.targets:
            _wait_caught_up(servers)
        script = wrk_script(ids, workdir)
        ports = {target: _serve(target, url, config, prefix, cleanup) for target, url in servers.targets.items()}
        views = {name: RedisView(client) for name, client in servers.clients.items()}
        ingest = Ingest(
            config, produced, servers, views, timeout=args.max_run_seconds, consumer_nice=args.consumer_nice
        )
        rounds = [_round(n, args, ids, prefix, servers, ingest, ports, script) for n in range(args.rounds)]
    write_results(
        "mixed_load",
        {
            "customers": len(ids),
            "loaded_events": args.load_events,
            "backlog_events": produced,
            "lookups_idle": args.lookups,
            "wrk_connections": args.wrk_connections,
            "redis_settings": [*REDIS_SETTINGS, *args.redis_setting],
            "rounds": rounds,
            "summary": _summary(rounds, list(servers.targets)),
        },
    )


def _round(
    number: int,
    args: argparse.Namespace,
    ids: list[str],
    prefix: str,
    servers: Servers,
    ingest: Ingest,
    ports: dict[str, int],
    script: Path,
) -> dict[str, Any]:
    """Idle lookups, then the backlog alone, then with each kind of lookup (same run)."""
    print(f"round {number + 1}: idle lookups …", file=sys.stderr)
    found: dict[str, Any] = {"idle": {}}
    for target, url in servers.targets.items():
        reader = ReaderProcess(url, prefix, ids, count=args.lookups, seconds=args.max_run_seconds)
        found["idle"][f"reader@{target}"] = percentiles(reader.samples(timeout=args.max_run_seconds + 60)[1])
        process = start_wrk(ports[target], args.wrk_connections, args.wrk_seconds, script)
        found["idle"][f"wrk@{target}"] = wrk_result(process, timeout=args.wrk_seconds + 60)
    print(f"round {number + 1}: backlog alone …", file=sys.stderr)
    alone = ingest.run("alone")
    found["ingest_alone"] = alone
    wrk_seconds = max(1, int(0.8 * alone["seconds"]))  # inside the next ingests, which are no faster
    found["during_ingest"] = {}
    for target, url in servers.targets.items():
        print(f"round {number + 1}: backlog with lookups on the {target} …", file=sys.stderr)
        found["during_ingest"][f"reader@{target}"] = ingest.run(
            f"with reader@{target}", _with_reader(url, prefix, ids, servers, args.max_run_seconds)
        )
        found["during_ingest"][f"wrk@{target}"] = ingest.run(
            f"with wrk@{target}", _with_wrk(ports[target], args.wrk_connections, wrk_seconds, script, servers)
        )
    return found


def _with_reader(url: str, prefix: str, ids: list[str], servers: Servers, limit: float) -> Any:
    reader = ReaderProcess(url, prefix, ids, count=10_000_000, seconds=limit)  # ready before the ingest starts

    def start(_started: float) -> Any:
        lag = _lag_watch(servers)

        def collect(started: float, finished: float) -> dict[str, Any]:
            reader.stop.set()
            begun, took = reader.samples(timeout=120)
            inside = [t for at, t in zip(begun, took, strict=True) if started <= at <= finished]
            if not inside:
                raise RuntimeError("no lookup ran during the ingest: make the backlog larger")
            return {"lookups": percentiles(inside), **(lag.result() if lag else {})}

        return collect

    return start


def _with_wrk(port: int, connections: int, seconds: int, script: Path, servers: Servers) -> Any:
    def start(started: float) -> Any:
        lag = _lag_watch(servers)
        process = start_wrk(port, connections, seconds, script)

        def collect(_started: float, finished: float) -> dict[str, Any]:
            result = wrk_result(process, timeout=seconds + 60)
            # wrk ran its whole duration from the ingest's start: did the ingest outlast it?
            result["ran_past_the_ingest"] = started + seconds > finished
            return {"lookups": result, **(lag.result() if lag else {})}

        return collect

    return start


def _lag_watch(servers: Servers) -> LagWatch | None:
    if "replica" not in servers.clients:
        return None
    return LagWatch(servers.primary, servers.clients["replica"], f"mixed-probe-{uuid.uuid4().hex[:6]}")


def _servers(args: argparse.Namespace, workdir: Path, cleanup: ExitStack) -> Servers:
    """The benchmark's own primary (and replica), or the ones given."""
    if args.redis_url:
        primary_url, read_url = args.redis_url, args.read_url
    else:
        from tests.private_redis import PrivateRedis

        primary_server = PrivateRedis(workdir / "primary", *REDIS_SETTINGS).start()
        cleanup.callback(primary_server.kill)
        primary_url, read_url = primary_server.url, None
        if args.replica:
            replica = PrivateRedis(
                workdir / "replica", *REDIS_SETTINGS, "--replicaof", "127.0.0.1", str(primary_server.port)
            )
            cleanup.callback(replica.start().kill)
            read_url = replica.url
    servers = Servers(redis.Redis.from_url(primary_url), primary_url, {"primary": primary_url})
    servers.clients["primary"] = servers.primary
    if read_url:
        servers.targets["replica"] = read_url
        servers.clients["replica"] = redis.Redis.from_url(read_url)
    for setting in args.redis_setting:  # e.g. Redis's own defaults, for a baseline run
        name, _, value = setting.partition("=")
        for client in servers.clients.values():
            client.config_set(name, value)
    return servers


def _wait_caught_up(servers: Servers) -> None:
    deadline = time.monotonic() + 300
    replica = servers.clients["replica"]
    while time.monotonic() < deadline:
        state = replica.info("replication")
        primary_offset = servers.primary.info("replication")["master_repl_offset"]
        if state.get("master_link_status") == "up" and state["slave_repl_offset"] >= primary_offset:
            return
        time.sleep(0.1)
    raise TimeoutError("the replica did not catch up")


def _serve(target: str, read_url: str, config: ServiceConfig, prefix: str, cleanup: ExitStack) -> int:
    from tests.private_redis import free_port

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "stream_features",
        "serve",
        "--no-status",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {
        **os.environ,
        "REDIS_URL": config.redis_url,
        "REDIS_READ_URL": read_url if target != "primary" else "",
        "STREAM_FEATURES_KEY_PREFIX": prefix,
    }
    server = start_server(command, port, env)
    cleanup.callback(_stop, server)
    return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _summary(rounds: list[dict[str, Any]], targets: list[str]) -> dict[str, Any]:
    """Ranges over the rounds: idle against during ingest, per kind of lookup and target."""

    def spread(values: list[float]) -> list[float]:
        return [min(values), max(values)]

    summary: dict[str, Any] = {}
    for target in targets:
        for kind in ("reader", "wrk"):
            name = f"{kind}@{target}"
            idle = [r["idle"][name] for r in rounds]
            busy = [r["during_ingest"][name]["lookups"] for r in rounds]
            summary[name] = {
                q: {"idle": spread([x[q] for x in idle]), "during_ingest": spread([x[q] for x in busy])}
                for q in ("p50_ms", "p99_ms", "p99_9_ms", "max_ms")
            }
            summary[name]["ingest_events_per_s"] = spread([r["during_ingest"][name]["events_per_s"] for r in rounds])
    summary["ingest_alone_events_per_s"] = spread([r["ingest_alone"]["events_per_s"] for r in rounds])
    runs = [r["ingest_alone"] for r in rounds] + [run for r in rounds for run in r["during_ingest"].values()]
    for server in runs[0]["redis"]:
        seen = [run["redis"][server] for run in runs]
        slowest = max(seen, key=lambda s: s["slowest_command_ms"] or 0)
        summary[f"redis_{server}"] = {
            "slowest_command_ms": slowest["slowest_command_ms"],
            "slowest_command": slowest["slowest_command"],
            "latency_monitor_max_ms": {
                event: max(s["latency_monitor_max_ms"].get(event, 0) for s in seen)
                for event in sorted({e for s in seen for e in s["latency_monitor_max_ms"]})
            },
            "aof_rewrites_per_ingest": spread([s["aof_rewrites"] for s in seen]),
        }
    return summary


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=862_644, help="backlog events (default: the issue's run)")
    parser.add_argument("--load-events", type=int, default=200_000, help="events loaded before the run")
    parser.add_argument("--lookups", type=int, default=20_000, help="idle reader lookups per round")
    parser.add_argument("--wrk-seconds", type=int, default=5, help="idle wrk run per round")
    parser.add_argument("--wrk-connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="idle / ingest rounds, alternating")
    parser.add_argument("--replica", action="store_true", help="also read from a private replica")
    parser.add_argument("--redis-url", help="use this Redis instead of a private one (nothing is reset)")
    parser.add_argument("--read-url", help="with --redis-url: a replica of it to read from")
    parser.add_argument(
        "--redis-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="CONFIG SET on the benchmark's servers after start (repeatable), e.g. auto-aof-rewrite-min-size=64mb",
    )
    parser.add_argument(
        "--consumer-nice", type=int, default=0, help="run the consumer at this nice level (default 0: as Redis)"
    )
    parser.add_argument("--max-run-seconds", type=float, default=900, help="a step that takes longer fails")
    args = parser.parse_args()
    if any("=" not in setting for setting in args.redis_setting):
        parser.error("--redis-setting takes NAME=VALUE")
    if args.read_url and not args.redis_url:
        parser.error("--read-url goes with --redis-url (without it, --replica starts a private replica)")
    for name in ("customers", "events", "load_events", "lookups", "wrk_seconds", "wrk_connections", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


if __name__ == "__main__":
    main()
