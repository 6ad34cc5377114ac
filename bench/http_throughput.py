"""HTTP lookups under concurrency: `stream-features serve` against a bare ASGI app that does only
the same HGETALL and returns the raw bytes (the stack's limit here), same run, same Redis data,
with wrk (Debian's package) at 1, 8 and 64 connections and 1 and 2 server processes. Also the
Python reader's single lookup and a 1,000-customer cohort, for reference.

    python3 -m bench.http_throughput --customers 20000 --seconds 8
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from stream_features.generate import GeneratorOptions, generate_events
from stream_features.query.reader import FeatureReader
from stream_features.store.keys import tiles_key

from .common import percentiles, write_results

BASELINE = """
import os, random
import redis.asyncio as aioredis
PREFIX = os.environ["BENCH_PREFIX"]
client = aioredis.Redis.from_url(os.environ["REDIS_URL"])

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    customer = scope["path"].rsplit("/", 2)[-2]
    fields = await client.hgetall(PREFIX + ":{" + customer + "}")
    body = b"".join(k + v for k, v in fields.items())
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/v1/customers/cust-%07d/features", counter % {customers}))
end
"""


def wrk(port: int, connections: int, seconds: float, script: Path) -> dict[str, float]:
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]

    def latency(q: str) -> float:
        value, unit = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": round(rate),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(errors[1]) if errors else 0,
    }


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/customers/cust-0000001/features", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server on {port} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--events", type=int, default=200000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"httpbench-{os.getpid()}"
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    from tests.loaders import load

    options = GeneratorOptions(customers=args.customers, events=args.events, start=now - 120 * 86400, end=now - 60)
    load(client, prefix, generate_events(options), now=now)
    results: dict[str, Any] = {"customers": args.customers, "events": args.events, "seconds": args.seconds}
    workdir = Path(tempfile.mkdtemp())
    (workdir / "baseline.py").write_text(BASELINE)
    script = workdir / "ids.lua"
    script.write_text(LUA.replace("{customers}", str(args.customers)))
    env = {**os.environ, "REDIS_URL": redis_url, "STREAM_FEATURES_KEY_PREFIX": prefix, "BENCH_PREFIX": prefix}
    env["PYTHONPATH"] = f"{workdir}:{env.get('PYTHONPATH', '')}"
    try:
        for workers in (1, 2):
            ours_cmd = [sys.executable, "-m", "stream_features", "serve", "--no-status", "--port", "18901"]
            ours_cmd += ["--workers", str(workers), "--log-level", "warning"]
            base_cmd = [sys.executable, "-m", "uvicorn", "baseline:app", "--port", "18902", "--workers", str(workers)]
            base_cmd += ["--log-level", "warning", "--no-access-log"]
            for name, command, port in (("ours", ours_cmd, 18901), ("bare_asgi_hgetall", base_cmd, 18902)):
                server = start(command, port, env)
                try:
                    for connections in (1, 8, 64):
                        label = f"{workers} worker(s), {connections} connection(s)"
                        results.setdefault(label, {})[name] = wrk(port, connections, args.seconds, script)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
            for connections in (1, 8, 64):
                label = f"{workers} worker(s), {connections} connection(s)"
                row = results[label]
                row["ours_share_of_baseline"] = round(
                    row["ours"]["requests_per_s"] / row["bare_asgi_hgetall"]["requests_per_s"], 2
                )
        reader = FeatureReader(client, prefix=prefix)
        ids = [f"cust-{i:07d}" for i in range(args.customers)]
        single = []
        for i in range(3000):
            started = time.perf_counter()
            reader.get_features(ids[i % len(ids)])
            single.append(time.perf_counter() - started)
        raw = []
        for i in range(3000):
            started = time.perf_counter()
            client.hgetall(tiles_key(ids[i % len(ids)], prefix))
            raw.append(time.perf_counter() - started)
        cohort = []
        for i in range(15):
            started = time.perf_counter()
            reader.get_cohort_features(ids[i * 1000 : (i + 1) * 1000])
            cohort.append(time.perf_counter() - started)
        results["python_reader_single_lookup"] = percentiles(single)
        results["plain_hgetall"] = percentiles(raw)
        results["python_reader_cohort_1000"] = percentiles(cohort)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10000))
        for start_at in range(0, len(keys), 1000):
            client.unlink(*keys[start_at : start_at + 1000])
    write_results("http_throughput", results)


if __name__ == "__main__":
    main()
