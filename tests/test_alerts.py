"""Alert rules (deploy/alerts): valid, and each fires when it should and stays quiet when it
should not, on synthetic series (promtool, from Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "alerts" / "stream-features.rules.yml"
TESTS = ROOT / "tests" / "alerts" / "stream-features.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if IN_CI:
            pytest.fail("promtool is required in CI (apt-get install -y prometheus)")
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return found


def test_rules_are_valid(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_as_tested(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", TESTS.name], cwd=TESTS.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    rules = RULES.read_text()
    tests = TESTS.read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")]
    assert len(alerts) == 12
    for alert in alerts:  # each has a firing case (exp_alerts with labels) and a quiet one (exp_alerts: [])
        assert f"alertname: {alert}\n        exp_alerts:\n          - exp_labels" in tests, alert
        assert f"alertname: {alert}, exp_alerts: []" in tests, alert


def test_prometheus_config_loads_the_rules(promtool: str) -> None:
    config = ROOT / "deploy" / "prometheus.yml"
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/etc/prometheus/alerts/" in config.read_text()
    assert "./deploy/alerts:/etc/prometheus/alerts:ro" in (ROOT / "docker-compose.yml").read_text()


def test_the_runbook_covers_every_alert() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for line in RULES.read_text().splitlines():
        if line.strip().startswith("- alert:"):
            alert = line.split(":", 1)[1].strip()
            assert f"## {alert}" in runbook, alert
            assert f"docs/runbook.md#{alert.lower()}" in RULES.read_text()
