"""The coverage-guided fuzzer (tests/fuzz/fuzz_decode.py, atheris) for a bounded time.

STREAM_FEATURES_FUZZ_SECONDS sets the time (default 20; CI runs 60). New inputs it finds go to
a temporary folder; the kept seeds in tests/fuzz/corpus stay as they are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent / "fuzz"
pytestmark = pytest.mark.fuzz


def test_decode_fuzzer_finds_no_crash(tmp_path: Path) -> None:
    seconds = int(os.environ.get("STREAM_FEATURES_FUZZ_SECONDS", "20"))
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "fuzz_decode.py"),
            f"-max_total_time={seconds}",
            "-rss_limit_mb=4096",
            "-max_len=70000",
            f"-dict={FUZZ / 'events.dict'}",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path),
            str(FUZZ / "corpus"),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    tail = result.stderr[-3000:]
    assert result.returncode == 0, tail
    assert "Done" in tail and "runs in" in tail, tail
