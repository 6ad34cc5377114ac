"""The consumer's own health endpoints, for orchestrators (Kubernetes probes), on its metrics port.

- ``/healthz`` (liveness): the main loop turned within ``LIVENESS_SECONDS``. Waiting out a Redis
  or Kafka outage counts as turning: restarting would not help, and nothing is lost meanwhile.
- ``/readyz`` (readiness): the consumer joined its group, it is not replaying records Redis lost
  (after Redis went back in time, features are behind until the replay is done: a deployment can
  hold traffic on it), and it is not stuck: with lag above zero, a batch was settled within
  ``stall_seconds``.
- ``/metrics``: Prometheus, as before.

Each answers JSON ``{"status": ..., "reason": ...}`` with 200 or 503; ``/healthz`` also says what
runs (``version``, ``core``: the Rust core's build).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..version import build_info

LIVENESS_SECONDS = 120.0


@dataclass
class Progress:
    """What the consumer reports as it runs (monotonic clock)."""

    heartbeat: float = 0.0
    joined: bool = False
    settled: float = 0.0
    lag: int = 0
    replaying: int = 0  # records still to replay after Redis went back in time
    replaying_since: float = 0.0  # wall clock

    def beat(self) -> None:
        self.heartbeat = time.monotonic()


def liveness(progress: Progress, now: float) -> tuple[bool, str]:
    if now - progress.heartbeat > LIVENESS_SECONDS:
        return False, f"main loop silent for {now - progress.heartbeat:.0f} s"
    return True, "main loop turning"


def readiness(progress: Progress, now: float, stall_seconds: float) -> tuple[bool, str]:
    if not progress.joined:
        return False, "not in the consumer group yet"
    if progress.replaying:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(progress.replaying_since))
        return False, f"replaying {progress.replaying} records since {since}"
    if progress.lag > 0 and now - progress.settled > stall_seconds:
        return False, f"{progress.lag} records behind and no batch settled for {now - progress.settled:.0f} s"
    return True, "joined and making progress"


def serve(
    progress: Progress, registry: CollectorRegistry, *, host: str, port: int, stall_seconds: float = 60.0
) -> ThreadingHTTPServer:
    """Start the endpoints on a daemon thread; returns the server (``shutdown()`` to stop)."""
    build = build_info()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            now = time.monotonic()
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                return
            if path == "/healthz":
                ok, reason = liveness(progress, now)
            elif path == "/readyz":
                ok, reason = readiness(progress, now, stall_seconds)
            else:
                self._send(404, b'{"error": "not_found"}', "application/json")
                return
            answer = {"status": "ok" if ok else "unavailable", "reason": reason}
            if path == "/healthz":  # what runs, for bug reports (as the API's /healthz)
                answer.update(build)
            body = json.dumps(answer).encode()
            self._send(200 if ok else 503, body, "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:  # probes every few seconds: no access log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
