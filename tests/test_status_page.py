"""The status page in headless Chromium: the chart is drawn from live Kafka progress and the
customer lookup box shows that customer's features and flags (DOM and screenshot checks)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image

from stream_features.generate import GeneratorOptions, generate_events

from .conftest import IN_CI
from .loaders import load
from .private_redis import free_port
from .streaming import Pipeline, stop, wait_until

pytestmark = pytest.mark.integration
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,1400",
    "--virtual-time-budget=3000",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed")
    return path


def _get_json(port: int, path: str) -> dict[str, object]:
    connection = HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path)
    return json.loads(connection.getresponse().read())


def _has_history(port: int, customer: str) -> bool:
    try:
        return _get_json(port, f"/v1/customers/{customer}/features").get("has_history") is True
    except OSError:
        return False


def _status_points(port: int) -> int:
    try:
        return len(_get_json(port, "/v1/status").get("points") or [])  # type: ignore[arg-type]
    except OSError:  # the server is still starting
        return 0


def test_status_page_chart_and_lookup(kafka_bootstrap: str, redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    chromium = _chromium()
    pipeline = Pipeline.fresh(kafka_bootstrap, redis_url, key_prefix)
    now = time.time()
    lines = [
        json.dumps(
            {"type": "purchase", "customer_id": f"c{i % 500}", "timestamp": now - 3600 - i, "amount": 10.0}
        ).encode()
        for i in range(30000)
    ]
    lines.append(b"not json at all")
    pipeline.produce(lines)
    port = 18765
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_features",
            "serve",
            "--port",
            str(port),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            pipeline.topic,
            "--group",
            pipeline.group,
            "--redis-url",
            redis_url,
            "--key-prefix",
            key_prefix,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    consumer = pipeline.start_consumer("--batch-size", "300")  # slow on purpose: a visible curve
    try:
        wait_until(
            lambda: _status_points(port) >= 3 and _has_history(port, "c7"),
            timeout=90,
            what="status samples with progress",
        )
        url = f"http://127.0.0.1:{port}/status?customer={quote('c7')}"
        dom = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        assert 'id="features"' in dom and "purchase_count" in dom and "retention_concern" in dom
        assert 'class="flag-true">true' in dom  # has_history for c7
        points = dom.split('id="throughput-line"')[1].split('points="')[1].split('"')[0]
        assert len(points.split()) >= 2
        # The panels that explain: what the page shows equals what the API returns.
        status = _get_json(port, "/v1/status")
        partitions = dom.split('id="partitions"')[1].split("</table>")[0]
        assert partitions.count("<tr>") == 1 + len(status["partitions"]) == 5  # type: ignore[arg-type]
        # each partition's owner: its client id (stream-features@<host>/<pid> by default) and address
        assert f"stream-features@{socket.gethostname()}/{consumer.pid} (127.0.0.1)" in partitions
        reasons = dom.split('id="reasons"')[1].split("</table>")[0]
        assert "malformed_json" in reasons and "not json at all" in reasons  # the last dead letter, as text
        redis_panel = dom.split('id="redis"')[1].split("</table>")[0]
        assert "used memory" in redis_panel and "MB" in redis_panel
        assert dom.split('id="freshness">')[1].split("<")[0] not in ("–", "")
        activity = _get_json(port, f"/v1/customers/{quote('c7')}/activity?days=90")
        chart = dom.split('id="activity"')[1].split("</svg>")[0]
        assert chart.count("<rect") == 90 == len(activity["days"])  # type: ignore[arg-type]
        expected_events = sum(day["events"] for day in activity["days"])  # type: ignore[attr-defined]
        assert f'data-events="{expected_events}"' in dom and expected_events > 0
        # The same summary in a terminal, for servers without a browser.
        connection = ["--bootstrap-servers", kafka_bootstrap, "--topic", pipeline.topic, "--group", pipeline.group]
        connection += ["--redis-url", redis_url, "--key-prefix", key_prefix]
        terminal = subprocess.run(
            [sys.executable, "-m", "stream_features", "status", "--interval", "1", *connection],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert terminal.returncode == 0, terminal.stderr
        assert "partitions" in terminal.stdout and "malformed_json" in terminal.stdout
        assert f"stream-features@{socket.gethostname()}/{consumer.pid}" in terminal.stdout
        as_json = subprocess.run(
            [sys.executable, "-m", "stream_features", "status", "--json", "--interval", "1", *connection],
            capture_output=True,
            text=True,
            timeout=120,
        )
        summary = json.loads(as_json.stdout)
        assert [p["partition"] for p in summary["partitions"]] == [0, 1, 2, 3]
        assert summary["dead_letters_by_reason"] == {"malformed_json": 1}
        assert summary["dead_letters_last_5_minutes"] == {"malformed_json": 1}
        shot = tmp_path / "status.png"
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", url],
            capture_output=True,
            timeout=120,
            check=False,
        )
        image = Image.open(shot).convert("RGB")
        raw = image.tobytes()
        pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
        blue = sum(1 for r, g, b in pixels if abs(r - 0x25) < 30 and abs(g - 0x63) < 30 and abs(b - 0xEB) < 30)
        assert blue > 200, "the throughput line (blue) is not drawn"
        assert len(set(pixels)) > 50  # a rendered page, not a blank one
    finally:
        stop(consumer)
        stop(server)


def test_status_page_sends_the_token_from_its_url_fragment(
    kafka_bootstrap: str, redis_client: Any, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """With serve --token-file the page's data calls carry the token given as /status#token=…;
    without it they get the 401 and the page shows why."""
    chromium = _chromium()
    now = time.time()
    options = GeneratorOptions(customers=10, events=300, start=now - 20 * 86400, end=now - 60, seed=5)
    engine = load(redis_client, key_prefix, generate_events(options), now=now)
    customer = engine.customer_ids()[0]
    token = "status-page-token-0123456789"
    (tmp_path / "tokens").write_text(token + "\n")
    port = free_port()
    command = [sys.executable, "-m", "stream_features", "serve", "--port", str(port), "--token-file"]
    command += [str(tmp_path / "tokens"), "--bootstrap-servers", kafka_bootstrap, "--topic", f"nothing-{key_prefix}"]
    command += ["--redis-url", redis_url, "--key-prefix", key_prefix, "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _healthy(port), timeout=60, what="API up")
        page = f"http://127.0.0.1:{port}/status?customer={quote(customer)}"
        doms = {}
        for name, url in (("with", f"{page}#token={token}"), ("without", page)):
            doms[name] = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / name}", "--dump-dom", url],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        assert 'id="features"' in doms["with"] and "purchase_count" in doms["with"]
        assert token not in doms["with"]  # taken out of the address bar and the page
        assert 'id="features"' not in doms["without"] and "a bearer token is required" in doms["without"]
    finally:
        stop(server)


def _healthy(port: int) -> bool:
    try:
        return _get_json(port, "/healthz").get("status") == "ok"
    except OSError:
        return False
