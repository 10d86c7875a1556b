#!/usr/bin/env bash
# Local infrastructure for development, tests and `make run`: a single-node
# Apache Kafka (KRaft) and a PostgreSQL cluster, both on loopback only.
#
#   deploy/local/infra.sh up|down|status   (or kafka-up, postgres-down, … for one server)
#
# Idempotent: `up` starts only what is not already answering and says so.
# State lives under $CRMSYNC_LOCAL_DIR (default: <repo>/.local).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
local_dir="${CRMSYNC_LOCAL_DIR:-$repo/.local}"
cache_dir="${CRMSYNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crmsync}"

kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
kafka_libs="$cache_dir/kafka-$kafka_version/libs"
kafka_home="$local_dir/kafka"
kafka_bootstrap="${CRMSYNC_KAFKA_BOOTSTRAP_SERVERS:-${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}}"
kafka_host="${kafka_bootstrap%%,*}"; kafka_port="${kafka_host##*:}"; kafka_host="${kafka_host%:*}"
kafka_controller_port="${CRMSYNC_KAFKA_CONTROLLER_PORT:-$((kafka_port + 1))}"
kafka_timeout="${CRMSYNC_KAFKA_START_TIMEOUT:-90}"

database_url="${CRMSYNC_DATABASE_URL:-${DATABASE_URL:-postgresql://crmsync:crmsync@127.0.0.1:5432/crmsync}}"
pg_timeout="${CRMSYNC_PG_START_TIMEOUT:-60}"
pg_cluster="crmsync"

log() { printf '[infra] %s\n' "$*"; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "'$*' needs root; run it as root or install sudo"; fi
}

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

# ---------------------------------------------------------------- PostgreSQL

# Splits DATABASE_URL (postgresql[+driver]://user:pass@host:port/db) into parts.
parse_database_url() {
  local rest="${database_url#*://}"
  pg_userinfo="${rest%%@*}"; rest="${rest#*@}"
  pg_user="${pg_userinfo%%:*}"; pg_password="${pg_userinfo#*:}"
  pg_hostport="${rest%%/*}"; pg_db="${rest#*/}"; pg_db="${pg_db%%\?*}"
  pg_host="${pg_hostport%:*}"; pg_port="${pg_hostport##*:}"
  [ "$pg_port" = "$pg_hostport" ] && pg_port=5432
  return 0
}

pg_answers() {
  PGPASSWORD="$pg_password" PGCONNECT_TIMEOUT=3 psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$pg_db" \
    -Atqc 'select 1' >/dev/null 2>&1
}

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }

# Settings of the local cluster. Debian's defaults (128 MB of buffers, 1 GB of WAL
# between checkpoints, TLS on) make bulk writes pay for checkpoints and every
# statement pay for encryption; the server listens on loopback only, so TLS buys nothing.
pg_tune() {
  local version="$1" wanted
  local conf="/etc/postgresql/$version/$pg_cluster/conf.d/crmsync.conf"
  [ -d "$(dirname "$conf")" ] || return 0
  wanted="$(cat <<'CONF'
# Written by deploy/local/infra.sh; edits are overwritten.
ssl = off
shared_buffers = 1GB
wal_buffers = 64MB
max_wal_size = 8GB
checkpoint_timeout = 15min
wal_compression = lz4
maintenance_work_mem = 256MB
work_mem = 16MB
CONF
)"
  [ -f "$conf" ] && [ "$(cat "$conf")" = "$wanted" ] && return 0
  log "postgres: writing $conf"
  printf '%s\n' "$wanted" | as_root tee "$conf" >/dev/null
  # A running cluster takes the new settings on restart.
  if pg_cluster_online "$version"; then
    log "postgres: restarting cluster $version/$pg_cluster for its new settings"
    as_root pg_ctlcluster "$version" "$pg_cluster" restart
  fi
}

pg_cluster_online() {
  pg_lsclusters -h 2>/dev/null | awk '$1" "$2" "$4 == "'"$1 $pg_cluster"' online"' | grep -q .
}

# DROP DATABASE … WITH (FORCE) of a scratch database (tests, benches) must be able
# to stop the autovacuum worker that happens to be in it.
pg_grants() {
  as_postgres psql -p "$pg_port" -v ON_ERROR_STOP=1 -qc "GRANT pg_signal_backend TO \"$pg_user\"" >/dev/null 2>&1
}

pg_up() {
  parse_database_url
  if command -v psql >/dev/null && pg_answers; then
    # Our own cluster keeps its settings and grants current; any other server is left as it is.
    if [ -n "$(pg_bindir)" ]; then
      local version; version="$(basename "$(dirname "$(pg_bindir)")")"
      pg_tune "$version"
      if pg_cluster_online "$version"; then pg_grants || log "postgres: could not grant pg_signal_backend to $pg_user"; fi
    fi
    log "postgres: already up at $pg_host:$pg_port/$pg_db"
    return 0
  fi
  case "$pg_host" in 127.*|localhost|::1) ;; *)
    die "postgres: nothing answers at $pg_host:$pg_port and it is not a loopback address; start it or fix DATABASE_URL" ;;
  esac
  if [ -z "$(pg_bindir)" ] || ! command -v pg_createcluster >/dev/null; then
    log "postgres: installing Debian's postgresql package"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version; version="$(basename "$(dirname "$(pg_bindir)")")"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version $pg_cluster"; then
    log "postgres: creating cluster $version/$pg_cluster on 127.0.0.1:$pg_port"
    as_root pg_createcluster "$version" "$pg_cluster" -p "$pg_port" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    as_root sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "/etc/postgresql/$version/$pg_cluster/postgresql.conf"
  fi
  local logfile="/var/log/postgresql/postgresql-$version-$pg_cluster.log"
  pg_tune "$version"
  as_root pg_ctlcluster "$version" "$pg_cluster" start >/dev/null 2>&1 || true
  local waited=0
  until as_postgres psql -p "$pg_port" -Atqc 'select 1' >/dev/null 2>&1; do
    waited=$((waited + 1))
    [ "$waited" -ge "$pg_timeout" ] && die "postgres: cluster $version/$pg_cluster did not come up within ${pg_timeout}s; read $logfile"
    sleep 1
  done
  as_postgres psql -p "$pg_port" -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$pg_user') THEN
    CREATE ROLE "$pg_user" LOGIN CREATEDB PASSWORD '$pg_password';
  ELSE
    ALTER ROLE "$pg_user" LOGIN CREATEDB PASSWORD '$pg_password';
  END IF;
END \$\$;
SQL
  pg_grants
  if ! as_postgres psql -p "$pg_port" -Atqc "select 1 from pg_database where datname = '$pg_db'" | grep -q 1; then
    as_postgres createdb -p "$pg_port" -O "$pg_user" "$pg_db"
  fi
  pg_answers || die "postgres: started but $pg_user@$pg_host:$pg_port/$pg_db does not answer; read $logfile"
  log "postgres: up at $pg_host:$pg_port/$pg_db (cluster $version/$pg_cluster, log $logfile)"
}

pg_down() {
  parse_database_url
  local version; version="$(basename "$(dirname "$(pg_bindir)")" 2>/dev/null || true)"
  if [ -n "$version" ] && pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2" "$4}' | grep -qx "$version $pg_cluster online"; then
    as_root pg_ctlcluster "$version" "$pg_cluster" stop -m fast
    log "postgres: stopped cluster $version/$pg_cluster"
  else
    log "postgres: no local cluster running (a server at DATABASE_URL that this script did not start is left alone)"
  fi
}

# --------------------------------------------------------------------- Kafka

kafka_fetch() {
  if [ -f "$kafka_libs/kafka_2.13-$kafka_version.jar" ]; then return 0; fi
  command -v mvn >/dev/null || die "kafka: Maven (mvn) is needed once to fetch the broker from Maven Central"
  log "kafka: fetching Apache Kafka $kafka_version and its runtime dependencies with Maven (once)"
  mkdir -p "$kafka_libs.tmp"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$kafka_libs.tmp" -DincludeScope=runtime >"$cache_dir/kafka-fetch.log" 2>&1 \
    || die "kafka: Maven could not fetch the broker; read $cache_dir/kafka-fetch.log"
  rm -rf "$kafka_libs"; mv "$kafka_libs.tmp" "$kafka_libs"
}

kafka_pid() {
  local pidfile="$kafka_home/kafka.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

kafka_up() {
  if port_open "$kafka_host" "$kafka_port"; then
    log "kafka: already up at $kafka_host:$kafka_port"
    return 0
  fi
  case "$kafka_host" in 127.*|localhost) ;; *)
    die "kafka: nothing answers at $kafka_host:$kafka_port and it is not a loopback address; start it or fix KAFKA_BOOTSTRAP_SERVERS" ;;
  esac
  command -v java >/dev/null || die "kafka: java is needed to run the broker"
  mkdir -p "$cache_dir" "$kafka_home"
  kafka_fetch
  local props="$kafka_home/server.properties"
  cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka_controller_port
listeners=PLAINTEXT://$kafka_host:$kafka_port,CONTROLLER://127.0.0.1:$kafka_controller_port
advertised.listeners=PLAINTEXT://$kafka_host:$kafka_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$kafka_home/data
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=48
PROPS
  local cp="$kafka_libs/*"
  local jvm=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
             "-Dlog4j2.configurationFile=$here/kafka/log4j2.yaml" -cp "$cp")
  if [ ! -f "$kafka_home/data/meta.properties" ]; then
    local cluster_id; cluster_id="$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >"$kafka_home/format.log" 2>&1 \
      || die "kafka: formatting storage failed; read $kafka_home/format.log"
    log "kafka: formatted storage in $kafka_home/data (cluster $cluster_id)"
  fi
  local logfile="$kafka_home/kafka.log"
  nohup "${jvm[@]}" kafka.Kafka "$props" >"$logfile" 2>&1 </dev/null &
  echo $! >"$kafka_home/kafka.pid"
  local waited=0
  until port_open "$kafka_host" "$kafka_port"; do
    waited=$((waited + 1))
    if ! kafka_pid >/dev/null; then die "kafka: the broker exited while starting; read $logfile"; fi
    if [ "$waited" -ge "$kafka_timeout" ]; then
      kill -9 "$(cat "$kafka_home/kafka.pid")" 2>/dev/null || true
      rm -f "$kafka_home/kafka.pid"
      die "kafka: broker did not listen on $kafka_host:$kafka_port within ${kafka_timeout}s; read $logfile"
    fi
    sleep 1
  done
  log "kafka: up at $kafka_host:$kafka_port (Apache Kafka $kafka_version, KRaft, log $logfile)"
}

kafka_down() {
  local pid; pid="$(kafka_pid || true)"
  if [ -z "$pid" ]; then log "kafka: not running (started by this script)"; return 0; fi
  kill "$pid"
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$kafka_home/kafka.pid"
  log "kafka: stopped"
}

status() {
  parse_database_url
  if port_open "$kafka_host" "$kafka_port"; then log "kafka: up at $kafka_host:$kafka_port"; else log "kafka: down"; fi
  if command -v psql >/dev/null && pg_answers; then log "postgres: up at $pg_host:$pg_port/$pg_db"; else log "postgres: down"; fi
}

case "${1:-}" in
  up) pg_up; kafka_up ;;
  down) kafka_down; pg_down ;;
  status) status ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  postgres-up) pg_up ;;
  postgres-down) pg_down ;;
  *) echo "usage: $0 up|down|status|kafka-up|kafka-down|postgres-up|postgres-down" >&2; exit 2 ;;
esac
