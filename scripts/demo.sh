#!/usr/bin/env bash
# Runs the whole system locally and shows reconciles happen: the real
# coordinator, mailcow-agent, sogo-agent, nextcloud-agent, matrix-agent and stalwart-agent;
# a real Dovecot (container), real MariaDB + memcached holding SOGo's tables, an occ
# container, a real Synapse, and simulators for the Mailcow, Authentik and Stalwart APIs
# (which cannot run here). A sweep, alice joining and leaving a group, and a second sweep;
# after each step it prints what every target holds.
#
#   scripts/demo.sh            run the story, then keep running until Ctrl-C
#   scripts/demo.sh --once     run the story and stop (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/prereqs.sh

echo "==> building"
cargo build --workspace --bins --quiet
exec "${CARGO_TARGET_DIR:-target}/debug/demo" "$@"
