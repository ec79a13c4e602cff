#!/usr/bin/env bash
# Runs the whole system locally and shows a reconcile happen:
#   Authentik simulator → webhook → coordinator → gRPC → mailcow-agent → Mailcow simulator.
# The simulators stand in for the Mailcow and Authentik APIs, which cannot run
# here; the coordinator and agent are the real binaries, configured exactly as
# in production (see .env.example).
#
#   scripts/demo.sh            run, show the changes, keep running until Ctrl-C
#   scripts/demo.sh --once     run, show the changes, stop (used by CI)
set -euo pipefail
cd "$(dirname "$0")/.."

ONCE=0
[ "${1:-}" = "--once" ] && ONCE=1

WORK=.demo
rm -rf "$WORK" && mkdir -p "$WORK"
export WEBHOOK_TOKEN=demo-webhook-token ADMIN_TOKEN=demo-admin-token
AUTHENTIK=http://127.0.0.1:9000 MAILCOW=http://127.0.0.1:8081 COORD=http://127.0.0.1:5000

echo "==> building"
cargo build --workspace --bins --quiet
BIN=target/debug

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

start() { # name, then the command; logs go to .demo/<name>.log
  local name=$1; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
}
wait_http() { # url
  for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; tail -n 50 "$WORK"/*.log >&2; exit 1
}

start mailcow-sim "$BIN/mailcow-sim" --listen 127.0.0.1:8081 --api-key DEMO-MAILCOW-KEY \
  --seed deploy/demo/mailcow-seed.json
start authentik-sim "$BIN/authentik-sim" --listen 127.0.0.1:9000 --token demo-authentik-token \
  --seed deploy/demo/authentik-seed.json \
  --webhook-url "$COORD/reconcile" --webhook-header "X-Authentik-Webhook-Token: $WEBHOOK_TOKEN"
wait_http "$MAILCOW/__sim/state"
wait_http "$AUTHENTIK/__sim/counts"

mailcow_state() { curl -s "$MAILCOW/__sim/state" | python3 scripts/lib/show-mailcow-state.py; }
echo; echo "==> Mailcow before the coordinator starts (entries made by people: they must survive)"
mailcow_state

start mailcow-agent env MAILCOW_URL=$MAILCOW MAILCOW_API_KEY=DEMO-MAILCOW-KEY \
  AGENT_LISTEN=127.0.0.1:50051 "$BIN/mailcow-agent"
start coordinator env HTTP_LISTEN=127.0.0.1:5000 GRPC_LISTEN=127.0.0.1:50050 \
  STATE_DB_URL="sqlite://$WORK/state.db" AUTHENTIK_URL=$AUTHENTIK AUTHENTIK_TOKEN=demo-authentik-token \
  WEBHOOK_TOKEN=$WEBHOOK_TOKEN ADMIN_TOKEN=$ADMIN_TOKEN MAILCOW_AGENT_URL=http://127.0.0.1:50051 \
  SWEEP_INTERVAL_SECONDS=3600 "$BIN/coordinator"
wait_http "$COORD/healthz"

wait_job() { # job id
  for _ in $(seq 1 600); do
    state=$(curl -s "$COORD/jobs/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))')
    case "$state" in done|failed) echo "  job $1: $state"; return 0;; esac
    sleep 0.1
  done
  echo "job $1 did not finish" >&2; exit 1
}
wait_for() { # python condition on the Mailcow state, description
  for _ in $(seq 1 600); do
    curl -s "$MAILCOW/__sim/state" | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($1) else 1)" && return 0
    sleep 0.1
  done
  echo "timed out waiting for: $2" >&2; tail -n 30 "$WORK"/coordinator.log >&2; exit 1
}

echo; echo "==> full sweep (POST /reconcile-all; the coordinator also sweeps once at start)"
response=$(curl -s -X POST -H "X-Reconciler-Admin-Token: $ADMIN_TOKEN" "$COORD/reconcile-all")
job=$(echo "$response" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("job_id",""))')
[ -n "$job" ] || { echo "POST /reconcile-all answered: $response" >&2; exit 1; }
wait_job "$job"; mailcow_state

group=$(curl -s -H "Authorization: Bearer demo-authentik-token" "$AUTHENTIK/api/v3/core/groups/?name=support" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["pk"])')
alice=$(curl -s -H "Authorization: Bearer demo-authentik-token" "$AUTHENTIK/api/v3/core/users/?username=alice" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["pk"])')

echo; echo "==> alice joins 'support' in Authentik; Authentik notifies the coordinator"
curl -s -o /dev/null -X POST -H "Authorization: Bearer demo-authentik-token" -H 'Content-Type: application/json' \
  -d "{\"pk\": $alice}" "$AUTHENTIK/api/v3/core/groups/$group/add_user/"
wait_for 'any(r["logged_in_as"]=="alice@example.com" and r["send_as"]=="info@example.com" for r in s["sender_acl"])' "alice's grant"
mailcow_state

echo; echo "==> alice leaves 'support'"
curl -s -o /dev/null -X POST -H "Authorization: Bearer demo-authentik-token" -H 'Content-Type: application/json' \
  -d "{\"pk\": $alice}" "$AUTHENTIK/api/v3/core/groups/$group/remove_user/"
wait_for 'not any(r["logged_in_as"]=="alice@example.com" and r["send_as"]=="info@example.com" for r in s["sender_acl"])' "alice's revocation"
mailcow_state

echo; echo "==> what the coordinator recorded (audit log, newest last)"
python3 - "$WORK/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for row in db.execute("SELECT job_id, action, resource, key, outcome FROM audit ORDER BY id"):
    print("  job %-3s %-14s %-13s %-60s %s" % row)
PY

if [ "$ONCE" = 1 ]; then exit 0; fi
cat <<MSG

The system keeps running. Try:
  curl -s $COORD/healthz
  grpcurl -plaintext 127.0.0.1:50050 list
  grpcurl -plaintext -d '{}' 127.0.0.1:50050 reconciler.coordinator.v1.Coordinator/Plan
  grpcurl -plaintext -d '{}' 127.0.0.1:50050 reconciler.coordinator.v1.Coordinator/ListOwned
Logs are in $WORK/. Ctrl-C stops everything.
MSG
wait
