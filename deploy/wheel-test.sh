#!/usr/bin/env bash
# Builds the wheel users install and proves it works where no Rust toolchain is:
#   1. maturin builds one abi3 wheel (the Rust core against Python's stable ABI: CPython 3.11 and
#      later), manylinux_2_34, reusing ./target; the script checks its tag and its one extension;
#   2. a fresh virtual environment gets the wheel and the test tools from wheels only, with every
#      directory holding cargo, rustc or rustup dropped from PATH (checked);
#   3. pytest runs, in a directory holding only a copy of tests/ and pyproject.toml (its settings),
#      the Rust core's unit tests and twins plus one end-to-end stream through real Kafka and Redis;
#      tests/conftest.py fails the run unless stream_features comes from that environment.
# Usage: bash deploy/wheel-test.sh [pytest args]
# Env: PYTHON (interpreter to test with, default python3), KAFKA_BOOTSTRAP_SERVERS / REDIS_URL
# (services to use; unset: deploy/services.sh starts them).
source "$(dirname "$0")/common.sh"
cd "$DEPLOY_DIR/.."
PYTHON="${PYTHON:-python3}"
WHEEL_TAG="cp311-abi3-manylinux_2_34_$(uname -m)"
WHEEL_TESTS=(
  tests/test_native.py tests/test_rule_twins.py tests/test_feature_twins.py tests/test_seed_import.py
  tests/test_events.py tests/test_engine.py
  tests/test_streaming.py::test_end_to_end_equals_memory_engine_and_dead_letters
)

require_cargo
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m maturin --version >/dev/null 2>&1 || python3 -m pip install -q "maturin>=1.7,<2"  # in the dev extra
echo "wheel-test: building the wheel (maturin build --release, manylinux_2_34)"
python3 -m maturin build --release --locked --compatibility manylinux_2_34 --out "$work/dist" --quiet
wheels=("$work"/dist/*.whl)
wheel="${wheels[0]}"
if [ "${#wheels[@]}" != 1 ] || [[ "$(basename "$wheel")" != stream_features-*-"$WHEEL_TAG".whl ]]; then
  echo "wheel-test: expected one wheel tagged $WHEEL_TAG, got: ${wheels[*]##*/}" >&2
  exit 1
fi
native=$(python3 -c 'import sys, zipfile; print(*sorted(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if "/_native." in n and n.endswith(".so")))' "$wheel")
if [ "$native" != "stream_features/_native.abi3.so" ]; then
  echo "wheel-test: the wheel's extension should be stream_features/_native.abi3.so alone, got: $native" >&2
  exit 1
fi
echo "wheel-test: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB), extension $native"

# What this step starts comes from deploy/ (needs no toolchain); the services stay up for later steps.
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  "$DEPLOY_DIR/services.sh" start
  export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi

# From here on no Rust toolchain: PATH without any directory that holds one.
toolchain_free_path() {
  local dir kept=""
  local -a dirs
  IFS=: read -ra dirs <<<"$PATH"
  for dir in "${dirs[@]}"; do
    if [ -z "$dir" ] || [ -e "$dir/cargo" ] || [ -e "$dir/rustc" ] || [ -e "$dir/rustup" ]; then continue; fi
    kept="${kept:+$kept:}$dir"
  done
  echo "$kept"
}
"$PYTHON" -m venv "$work/venv"
export PATH="$work/venv/bin:$(toolchain_free_path)"
unset CARGO_HOME RUSTUP_HOME CARGO RUSTC
for tool in cargo rustc rustup; do
  if command -v "$tool" >/dev/null; then echo "wheel-test: $tool is still on PATH ($(command -v "$tool"))" >&2; exit 1; fi
done
echo "wheel-test: no cargo, rustc or rustup on PATH; installing into a fresh venv ($("$work/venv/bin/python" --version))"
# --only-binary: pip may not build anything from source, for the package or any dependency.
python -m pip install -q --disable-pip-version-check --only-binary=:all: "$wheel" \
  "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100"

mkdir "$work/run"
cp -r tests pyproject.toml "$work/run/"
cd "$work/run"
# tests/conftest.py checks that every stream_features module the tests import comes from here.
STREAM_FEATURES_TEST_INSTALLED="$(python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')" \
  python -m pytest -p no:cacheprovider "${WHEEL_TESTS[@]}" "$@"
