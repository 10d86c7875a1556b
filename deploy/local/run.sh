#!/usr/bin/env bash
# `make run`: the product on this machine. Kafka and PostgreSQL must be up
# (`make run` runs `make infra-up migrate` first). Starts the CRM's emulator
# with demo data and the four services as separate processes, then sets up a
# demo account (deploy/local/demo.py) and waits for its first sync.
#
#   deploy/local/run.sh           start (idempotent: what runs already is kept)
#   deploy/local/run.sh stop      stop the services and the emulator
#
# CRMSYNC_CRM=salesforce (the default) or dynamics: which CRM the demo account
# connects. dynamics starts the Dataverse emulator (crmsync-dynamics-emulator)
# on CRMSYNC_EMULATOR_PORT (8086 for it, 8085 for Salesforce) and connects the
# account "demo-dynamics" with provider dynamics; Salesforce's demo is "demo".
#
# CRMSYNC_EMULATOR_TLS=1: the emulator serves HTTPS on CRMSYNC_EMULATOR_TLS_PORT
# (8443) with a certificate made at start ($run_dir/emulator.pem), plain HTTP
# beside it on CRMSYNC_EMULATOR_PORT (the Salesforce emulator only: the Dataverse
# one serves HTTPS alone); the services trust that certificate through
# SSL_CERT_FILE and the demo account logs in at the https:// URL.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
local_dir="${CRMSYNC_LOCAL_DIR:-$repo/.local}"
run_dir="$local_dir/run"
bin="$repo/.venv/bin"
mkdir -p "$run_dir"

export CRMSYNC_DEMO_LEADS="${CRMSYNC_DEMO_LEADS:-2500}"
export CRMSYNC_DEMO_CONTACTS="${CRMSYNC_DEMO_CONTACTS:-2500}"
export CRMSYNC_DEMO_CLIENT_ID="${CRMSYNC_DEMO_CLIENT_ID:-crmsync-local}"
export CRMSYNC_DEMO_CLIENT_SECRET="${CRMSYNC_DEMO_CLIENT_SECRET:-crmsync-local-secret}"
case "${CRMSYNC_CRM:-salesforce}" in
  salesforce|dynamics) export CRMSYNC_CRM="${CRMSYNC_CRM:-salesforce}" ;;
  *) echo "[run] ERROR: CRMSYNC_CRM must be salesforce or dynamics, not '$CRMSYNC_CRM'" >&2; exit 2 ;;
esac
export CRMSYNC_DEMO_TENANT="${CRMSYNC_DEMO_TENANT:-00000000-0000-0000-0000-00000000c0de}"
if [ "$CRMSYNC_CRM" = dynamics ]; then
  export CRMSYNC_EMULATOR_PORT="${CRMSYNC_EMULATOR_PORT:-8086}"
else
  export CRMSYNC_EMULATOR_PORT="${CRMSYNC_EMULATOR_PORT:-8085}"
fi
export CRMSYNC_API_PORT="${CRMSYNC_API_PORT:-8000}"
export CRMSYNC_LOCAL_RUN_DIR="$run_dir"
export CRMSYNC_EMULATOR_TLS_PORT="${CRMSYNC_EMULATOR_TLS_PORT:-8443}"
case "${CRMSYNC_EMULATOR_TLS:-0}" in 1|true|yes) CRMSYNC_EMULATOR_TLS=1 ;; *) CRMSYNC_EMULATOR_TLS=0 ;; esac
export CRMSYNC_EMULATOR_TLS

emulator_listen="--port $CRMSYNC_EMULATOR_PORT"
mode=http
cert="$run_dir/emulator.pem"
# Where the readiness check asks the emulator (plain HTTP unless the emulator has none).
emulator_ready="http://127.0.0.1:$CRMSYNC_EMULATOR_PORT/__emulator/health"
if [ "$CRMSYNC_EMULATOR_TLS" = 1 ]; then
  mode=https
  if [ "$CRMSYNC_CRM" = dynamics ]; then
    emulator_listen="--port $CRMSYNC_EMULATOR_TLS_PORT --tls --tls-cert-out $cert"
    emulator_ready="https://127.0.0.1:$CRMSYNC_EMULATOR_TLS_PORT/__emulator/health"
  else
    # Plain HTTP stays on the emulator's port, for the readiness check and the control API.
    emulator_listen="--port $CRMSYNC_EMULATOR_TLS_PORT --plain-port $CRMSYNC_EMULATOR_PORT --tls --tls-cert-out $cert"
  fi
  # httpx (the services' CRM client) verifies HTTPS against the bundle SSL_CERT_FILE names.
  export SSL_CERT_FILE="$cert"
fi
mode="$CRMSYNC_CRM-$mode"

demo_data="--leads $CRMSYNC_DEMO_LEADS --contacts $CRMSYNC_DEMO_CONTACTS --seed 7 --client-id $CRMSYNC_DEMO_CLIENT_ID --client-secret $CRMSYNC_DEMO_CLIENT_SECRET"
if [ "$CRMSYNC_CRM" = dynamics ]; then
  emulator_command="crmsync-dynamics-emulator --host 127.0.0.1 $emulator_listen $demo_data --tenant $CRMSYNC_DEMO_TENANT"
else
  emulator_command="crmsync-emulator --host 127.0.0.1 $emulator_listen $demo_data"
fi

# name:port:command — every process serves /healthz on its port.
processes=(
  "emulator:$CRMSYNC_EMULATOR_PORT:$emulator_command"
  "mapping-api:$CRMSYNC_API_PORT:crmsync-mapping-api"
  "scheduler:8081:crmsync-scheduler"
  "puller:8082:crmsync-puller"
  "pusher:8083:crmsync-pusher"
)

running() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

stop() {
  local entry name pid
  for entry in "${processes[@]}"; do
    name="${entry%%:*}"
    if running "$name"; then
      pid="$(cat "$run_dir/$name.pid")"
      kill -TERM "$pid"
      for _ in $(seq 1 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "[run] $name: stopped"
    fi
    rm -f "$run_dir/$name.pid"
  done
  rm -f "$run_dir/mode"
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

# Processes started for the other CRM or scheme would not serve (or not trust) this one.
started_as="$(cat "$run_dir/mode" 2>/dev/null || true)"
case "$started_as" in http|https) started_as="salesforce-$started_as" ;; esac  # written before CRMSYNC_CRM
if [ -n "$started_as" ] && [ "$started_as" != "$mode" ]; then
  for entry in "${processes[@]}"; do
    if running "${entry%%:*}"; then
      echo "[run] ERROR: running with the emulator as $started_as, not $mode; run deploy/local/run.sh stop first" >&2
      exit 1
    fi
  done
fi
echo "$mode" >"$run_dir/mode"

for entry in "${processes[@]}"; do
  name="${entry%%:*}"; rest="${entry#*:}"; port="${rest%%:*}"; cmd="${rest#*:}"
  if running "$name"; then echo "[run] $name: already running (pid $(cat "$run_dir/$name.pid"))"; continue; fi
  # shellcheck disable=SC2086 # the command line is split on purpose
  CRMSYNC_HTTP_PORT="$port" nohup "$bin/"$cmd >"$run_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$run_dir/$name.pid"
  echo "[run] $name: starting on 127.0.0.1:$port (log $run_dir/$name.log)"
done

for entry in "${processes[@]}"; do
  name="${entry%%:*}"; rest="${entry#*:}"; port="${rest%%:*}"
  url="http://127.0.0.1:$port/readyz"; [ "$name" = emulator ] && url="$emulator_ready"
  ready() { curl -fs ${SSL_CERT_FILE:+--cacert "$SSL_CERT_FILE"} "$url" >/dev/null 2>&1; }
  for _ in $(seq 1 90); do
    ready && break
    running "$name" || break
    sleep 1
  done
  ready || { echo "[run] ERROR: $name did not become ready; read $run_dir/$name.log" >&2; exit 1; }
done
echo "[run] the emulator and the four services are ready"

# The admin console is the mapping-api's: its address goes beside the API's in the summary.
demo_account=demo; [ "$CRMSYNC_CRM" = dynamics ] && demo_account=demo-dynamics  # as demo.py names it
console="  Console        http://127.0.0.1:$CRMSYNC_API_PORT/console   (sign in with the API key; a reader key: .venv/bin/crmsync-admin key create $demo_account --role reader)"
"$bin/python" "$here/demo.py" | awk -v line="$console" '{ print; fflush() } /^  API key / { print line; fflush() }'
