"""What ran, for bug reports: ``stream-features --version``, the API's ``/healthz`` and the status
page's footer name the package version and the Rust core's build (the consumer's ``/healthz``:
tests/test_health.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from fastapi.testclient import TestClient

from stream_features import __version__
from stream_features._native import BUILD
from stream_features.config import ServiceConfig
from stream_features.query.api import create_app
from stream_features.query.status import StatusSampler

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_reports_its_own_build() -> None:
    crate = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    assert BUILD["version"] == crate
    assert BUILD["profile"] in ("release", "debug")
    assert BUILD["rustc"].startswith("rustc ")
    commit = BUILD["commit"]
    if commit != "unknown" and shutil.which("git") and (ROOT / ".git").exists():
        # a commit of this repository (the one the core was last built from)
        known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
        assert re.fullmatch(r"[0-9a-f]{12}", commit) and known.returncode == 0, commit


def test_version_flag_names_the_package_and_the_core() -> None:
    assert __version__ == version("stream-features")  # the package's metadata and its module agree
    done = subprocess.run(
        [sys.executable, "-m", "stream_features", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == ""
    expected = (
        f"stream-features {version('stream-features')} (core {BUILD['version']}, commit {BUILD['commit']}, "
        f"{BUILD['profile']} build, rustc "
    )
    assert done.stdout.startswith(expected) and done.stdout.count("\n") == 1, done.stdout


def test_healthz_and_the_status_footer_say_what_runs() -> None:
    config = ServiceConfig(redis_url="redis://127.0.0.1:1/0")
    client = TestClient(create_app(config, status=StatusSampler(config)))  # no lifespan: nothing sampled
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": version("stream-features"), "core": BUILD}
    page = client.get("/status").text
    footer = re.search(r'<footer id="version">(.*?)</footer>', page)
    assert footer is not None and footer.group(1).startswith(f"stream-features {version('stream-features')} (core ")
    assert BUILD["commit"] in footer.group(1)
    assert client.get("/openapi.json").json()["info"]["version"] == version("stream-features")
