"""The seed's import path keeps working after `pip install` (SPEC §6), in a fresh interpreter
started outside the source tree (so the installed distribution is what answers)."""

from __future__ import annotations

import subprocess
import sys
import tempfile

SCRIPT = """
from customer_activity_features import CustomerActivityFeatures, calculate_purchase_features, calculate_session_features
import stream_features
engine = CustomerActivityFeatures(clock=lambda: 1_800_000_000.0)
assert engine.add_purchase("c", 40.0, 1_799_990_000)
assert engine.get_average_order_value("c") == 40.0
assert CustomerActivityFeatures is stream_features.CustomerActivityFeatures
purchases = [{"amount": 10.0, "timestamp": 1_799_990_000}, {"amount": 30.0, "timestamp": 1_799_995_000}]
result = calculate_purchase_features(purchases, days=30, as_of=1_800_000_000)
assert result["purchase_count"] == 2 and result["average_order_value"] == 20.0, result
assert calculate_session_features([], days=30, as_of=1_800_000_000)["session_count"] == 0
print("ok")
"""


def test_seed_import_path_works_from_an_installed_package() -> None:
    with tempfile.TemporaryDirectory() as elsewhere:
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
