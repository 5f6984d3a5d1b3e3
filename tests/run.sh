#!/usr/bin/env bash
# Runs every test of laurelc: the Rust suites (unit, integration, the ONNX
# node-test conformance suite, real third-party models) and the Python
# cross-checks (onnx.checker, onnxruntime). Installs what they need itself:
# crates through cargo, onnx/onnxruntime/numpy/pytest into ./.venv, and the
# pinned third-party models into $LAURELC_CACHE (default ~/.cache/laurelc).
set -euo pipefail
cd "$(dirname "$0")/.."
export LAURELC_CACHE="${LAURELC_CACHE:-$HOME/.cache/laurelc}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
.venv/bin/python fixtures/fetch.py --cache "$LAURELC_CACHE"

cargo build --locked --bins
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

LAURELC_BIN="$PWD/target/debug/laurelc" .venv/bin/python -m pytest tests/python -q
