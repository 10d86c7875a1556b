#!/usr/bin/env bash
# `make run`: the four services on this machine, as separate processes.
#   deploy/local/run.sh         start (infra must be up: `make run` does that)
#   deploy/local/run.sh stop    stop them
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
local_dir="${CRMSYNC_LOCAL_DIR:-$repo/.local}"
run_dir="$local_dir/run"
bin="$repo/.venv/bin"
mkdir -p "$run_dir"

services=("mapping-api:8000" "scheduler:8081" "puller:8082" "pusher:8083")

stop() {
  for entry in "${services[@]}"; do
    name="${entry%%:*}"; pidfile="$run_dir/$name.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill -TERM "$(cat "$pidfile")"; echo "[run] stopping $name"
    fi
    rm -f "$pidfile"
  done
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

for entry in "${services[@]}"; do
  name="${entry%%:*}"; port="${entry##*:}"; pidfile="$run_dir/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "[run] $name: already running (pid $(cat "$pidfile"))"; continue
  fi
  CRMSYNC_HTTP_PORT="$port" nohup "$bin/crmsync-$name" >"$run_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "[run] $name: started on 127.0.0.1:$port (log $run_dir/$name.log)"
done
for entry in "${services[@]}"; do
  name="${entry%%:*}"; port="${entry##*:}"
  for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 1
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 \
    || { echo "[run] ERROR: $name is not ready; read $run_dir/$name.log" >&2; exit 1; }
done
echo "[run] all four services are ready. Logs: $run_dir/*.log. Stop everything with: make stop"
