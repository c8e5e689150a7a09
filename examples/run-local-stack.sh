#!/usr/bin/env bash
# See your samples arrive: a local stack around cortex-gateway, on one machine.
#
#   examples/run-local-stack.sh          start, wait until samples arrive, print a query
#   examples/run-local-stack.sh stop     stop exactly the processes started here
#   examples/run-local-stack.sh status   show what is running
#
# It starts three processes, each with its own data under $STACK_DIR:
#
#   receiver  a Prometheus with --web.enable-remote-write-receiver, standing in
#             for Cortex's distributor (remote_write) and query-frontend (queries)
#   gateway   cortex-gateway, with a custom [[routes]] entry that sends
#             /api/v1/write (Prometheus' receiver path) to the receiver
#   tenant    a Prometheus that scrapes itself and remote_writes through the
#             gateway with a token minted by `cortex-gateway token --tenant …`
#
# With CORTEX_BIN set (CORTEX_BIN=/path/to/cortex examples/run-local-stack.sh)
# it runs the real thing instead, with two tenants:
#
#   cortex    a single-process Cortex (target all,alertmanager, multi-tenant):
#             distributor, query-frontend, ruler and Alertmanager of the gateway
#   gateway   cortex-gateway in front of it, no custom routes
#   tenant    $STACK_TENANT's Prometheus, remote_writing through the gateway
#   tenant-b  $STACK_TENANT_B's Prometheus: the same job name, its own token
#
# and prints what each tenant sees through the gateway: its own Prometheus only.
#
# Needs: bash, curl, prometheus (Debian/Ubuntu: apt-get install prometheus),
# and a built gateway (cargo build --release, or cargo build); in Cortex mode,
# a Cortex binary (tested with 1.15).
#
# Settings (environment):
#   CORTEX_GATEWAY_BIN   gateway binary; default target/release/cortex-gateway,
#                        else target/debug/cortex-gateway, else cortex-gateway on PATH
#   PROMETHEUS_BIN       default: prometheus
#   STACK_DIR            state: configs, token, PIDs, logs, data
#                        (default: ${TMPDIR:-/tmp}/cortex-gateway-local-stack)
#   STACK_RECEIVER_PORT  default 19090
#   STACK_GATEWAY_PORT   default 18080
#   STACK_TENANT_PORT    default 19091
#   STACK_TENANT         tenant id of the writer (default: team-a)
#   STACK_TIMEOUT        seconds to wait for start-up and for the first samples (default 90)
#   CORTEX_BIN           a Cortex binary: run Cortex instead of the stand-in receiver
#   STACK_CORTEX_PORT    Cortex mode: Cortex's HTTP port (default 19009)
#   STACK_CORTEX_GRPC_PORT  Cortex mode: Cortex's gRPC port (default 19095)
#   STACK_TENANT_B       Cortex mode: the second tenant (default: team-b)
#   STACK_TENANT_B_PORT  Cortex mode: its Prometheus's port (default 19092)
#
# Everything listens on 127.0.0.1 only.

set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

DEFAULT_STACK_DIR=${TMPDIR:-/tmp}/cortex-gateway-local-stack
STACK_DIR=${STACK_DIR:-$DEFAULT_STACK_DIR}
STACK_RECEIVER_PORT=${STACK_RECEIVER_PORT:-19090}
STACK_GATEWAY_PORT=${STACK_GATEWAY_PORT:-18080}
STACK_TENANT_PORT=${STACK_TENANT_PORT:-19091}
STACK_TENANT=${STACK_TENANT:-team-a}
STACK_TIMEOUT=${STACK_TIMEOUT:-90}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}
CORTEX_BIN=${CORTEX_BIN:-}
STACK_CORTEX_PORT=${STACK_CORTEX_PORT:-19009}
STACK_CORTEX_GRPC_PORT=${STACK_CORTEX_GRPC_PORT:-19095}
STACK_TENANT_B=${STACK_TENANT_B:-team-b}
STACK_TENANT_B_PORT=${STACK_TENANT_B_PORT:-19092}

# The job the tenant Prometheus scrapes itself as: what you query for.
JOB=tenant-prometheus
# Stop order: writers first, so that their last batches still find the
# gateway (a Prometheus whose remote end is gone retries for a minute or more).
RECEIVER_PROCESSES=(tenant gateway receiver)
CORTEX_PROCESSES=(tenant tenant-b gateway cortex)
ALL_PROCESSES=(tenant tenant-b gateway receiver cortex)
if [[ -n $CORTEX_BIN ]]; then
  PROCESSES=("${CORTEX_PROCESSES[@]}")
else
  PROCESSES=("${RECEIVER_PROCESSES[@]}")
fi

log() { printf '%s\n' "$*" >&2; }

die() {
  log "error: $*"
  exit 1
}

# ---- processes ---------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$STACK_DIR" "$1"; }

# The process's command line, or nothing when it is gone.
cmdline_of() {
  local pid=$1
  if [[ -r /proc/$pid/cmdline ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true
  else
    ps -o args= -p "$pid" 2>/dev/null || true
  fi
}

# True while `pid` runs (a zombie waiting to be reaped counts as gone).
alive() {
  local pid=$1 state=
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null || true)
  else
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
  fi
  [[ $state != Z* ]]
}

# True when `pid` is alive and is the process this stack started: its command
# line names a file in $STACK_DIR, so a recycled PID is never touched.
ours() {
  local pid=$1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  [[ $(cmdline_of "$pid") == *"$STACK_DIR/"* ]]
}

running_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  ours "$pid" || return 1
  printf '%s' "$pid"
}

log_tail() {
  local file="$STACK_DIR/$1.log"
  [[ -f $file ]] || return 0
  log "---- last lines of $file ----"
  tail -n 25 "$file" >&2 || true
  log "----"
}

all_log_tails() {
  local name
  for name in "${PROCESSES[@]}"; do
    log_tail "$name"
  done
}

# start NAME PROGRAM ARGS...: runs it in the background, output in NAME.log.
start() {
  local name=$1
  shift
  nohup "$@" >"$STACK_DIR/$name.log" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$(pid_file "$name")"
  log "started $name (pid $!)"
}

stop_one() {
  local name=$1 file pid i
  file=$(pid_file "$name")
  [[ -f $file ]] || return 0
  pid=$(<"$file")
  if ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # 10 s, then SIGKILL
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  else
    log "$name (pid $pid) was not running"
  fi
  rm -f "$file"
}

# Stops whatever either mode started (names without a PID file are skipped).
stop_all() {
  local name
  for name in "${ALL_PROCESSES[@]}"; do
    if [[ -f $(pid_file "$name") ]]; then
      stop_one "$name"
    fi
  done
}

# The processes of the mode the stack in $STACK_DIR was started in.
load_mode() {
  [[ -f $STACK_DIR/mode ]] || return 0
  if [[ $(<"$STACK_DIR/mode") == cortex ]]; then
    PROCESSES=("${CORTEX_PROCESSES[@]}")
  else
    PROCESSES=("${RECEIVER_PROCESSES[@]}")
  fi
}

# A failed start leaves nothing behind.
on_start_exit() {
  local status=$?
  trap - EXIT
  if ((status != 0)); then
    log "start failed; stopping what was started (logs stay in $STACK_DIR)"
    stop_all
  fi
  exit "$status"
}

# ---- waiting -----------------------------------------------------------------

# wait_until NAME WHAT COMMAND...: polls COMMAND until it succeeds, for at most
# $STACK_TIMEOUT seconds, while process NAME stays alive.
wait_until() {
  local name=$1 what=$2 deadline pid
  shift 2
  deadline=$((SECONDS + STACK_TIMEOUT))
  pid=$(<"$(pid_file "$name")")
  until "$@" >/dev/null 2>&1; do
    if ! alive "$pid"; then
      log_tail "$name"
      die "$name exited while waiting for $what"
    fi
    if ((SECONDS >= deadline)); then
      all_log_tails
      die "timed out after ${STACK_TIMEOUT}s waiting for $what"
    fi
    sleep 0.5
  done
}

http_ok() { curl -fsS --max-time 5 -o /dev/null "$1"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Cortex serves the query API under /prometheus; the stand-in at the root.
query_url() {
  if [[ -n $CORTEX_BIN ]]; then
    printf 'http://127.0.0.1:%s/prometheus/api/v1/query' "$STACK_GATEWAY_PORT"
  else
    printf 'http://127.0.0.1:%s/api/v1/query' "$STACK_GATEWAY_PORT"
  fi
}

# The first samples have arrived when the query, sent through the gateway
# with a tenant's token (file $1 in $STACK_DIR, default token), returns a
# non-empty result.
samples_arrived() {
  local answer
  answer=$(curl -fsS --max-time 5 \
    -H "Authorization: Bearer $(<"$STACK_DIR/${1:-token}")" \
    --data-urlencode "query=up{job=\"$JOB\"}" \
    "$(query_url)") || return 1
  [[ $answer == *'"result":[{'* ]]
}

# The instances of up{job="$JOB"} that the tenant of token file $1 sees
# through the gateway, space-separated.
instances_seen() {
  local answer
  answer=$(curl -fsS --max-time 5 \
    -H "Authorization: Bearer $(<"$STACK_DIR/$1")" \
    --data-urlencode "query=up{job=\"$JOB\"}" \
    "$(query_url)") || return 1
  grep -o '"instance":"[^"]*"' <<<"$answer" | cut -d'"' -f4 | sort -u | paste -sd' ' -
}

# ---- commands ----------------------------------------------------------------

find_gateway() {
  if [[ -n ${CORTEX_GATEWAY_BIN:-} ]]; then
    [[ -x $CORTEX_GATEWAY_BIN ]] || die "CORTEX_GATEWAY_BIN=$CORTEX_GATEWAY_BIN is not an executable"
    return
  fi
  local candidate
  for candidate in "$repo/target/release/cortex-gateway" "$repo/target/debug/cortex-gateway"; do
    if [[ -x $candidate ]]; then
      CORTEX_GATEWAY_BIN=$candidate
      return
    fi
  done
  CORTEX_GATEWAY_BIN=$(command -v cortex-gateway) ||
    die "no gateway binary: run 'cargo build --release' in $repo, or set CORTEX_GATEWAY_BIN"
}

cmd_start() {
  command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
  command -v "$PROMETHEUS_BIN" >/dev/null ||
    die "$PROMETHEUS_BIN not found: apt-get install prometheus, or set PROMETHEUS_BIN"
  find_gateway
  if [[ -n $CORTEX_BIN ]]; then
    if [[ ! -x $CORTEX_BIN ]]; then
      CORTEX_BIN=$(command -v "$CORTEX_BIN") || die "CORTEX_BIN=$CORTEX_BIN is not an executable"
    fi
    cmd_start_cortex
    return
  fi

  mkdir -p "$STACK_DIR"
  STACK_DIR=$(cd "$STACK_DIR" && pwd)
  local name port var
  for name in "${ALL_PROCESSES[@]}"; do
    if running_pid "$name" >/dev/null; then
      die "the stack in $STACK_DIR is already running; run '$0 stop' first"
    fi
  done
  for var in STACK_RECEIVER_PORT STACK_GATEWAY_PORT STACK_TENANT_PORT; do
    port=${!var}
    [[ $port =~ ^[0-9]+$ ]] || die "$var=$port is not a port number"
    if port_in_use "$port"; then
      die "port $port is in use; choose another with $var=<port>"
    fi
  done

  trap on_start_exit EXIT
  # Start from empty data so that old samples cannot fake a success.
  rm -rf "$STACK_DIR/receiver-data" "$STACK_DIR/tenant-data"
  rm -f "$STACK_DIR"/*.pid
  printf 'receiver\n' >"$STACK_DIR/mode"

  local receiver="http://127.0.0.1:$STACK_RECEIVER_PORT"
  local gateway="http://127.0.0.1:$STACK_GATEWAY_PORT"
  local tenant="http://127.0.0.1:$STACK_TENANT_PORT"

  # 1. The receiving Prometheus: scrapes nothing, only receives.
  cat >"$STACK_DIR/receiver.yml" <<EOF
# Written by run-local-stack.sh: receives remote_write, answers queries.
global:
  scrape_interval: 15s
EOF
  start receiver "$PROMETHEUS_BIN" \
    --config.file="$STACK_DIR/receiver.yml" \
    --storage.tsdb.path="$STACK_DIR/receiver-data" \
    --web.listen-address="127.0.0.1:$STACK_RECEIVER_PORT" \
    --web.enable-remote-write-receiver
  wait_until receiver "the receiver to be ready ($receiver/-/ready)" http_ok "$receiver/-/ready"

  # 2. The gateway, with a fresh random secret that only this stack knows.
  local secret
  secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  (
    umask 077
    cat >"$STACK_DIR/gateway.toml" <<EOF
# Written by run-local-stack.sh.
[server]
http_listen_address = "127.0.0.1"
http_listen_port = $STACK_GATEWAY_PORT
graceful_shutdown_timeout = "5s"

[upstreams]
# The receiving Prometheus stands in for Cortex: distributor and query-frontend.
distributor = "$receiver"
query_frontend = "$receiver"
# Named upstream for the custom route below.
receiver = "$receiver"

[auth]
jwt_secret = "$secret"

# Prometheus receives remote_write on /api/v1/write, where Cortex uses
# /api/v1/push: a custom route sends that path to the receiver.
[[routes]]
prefix = "/api/v1/write"
upstream = "receiver"
EOF
  )
  start gateway "$CORTEX_GATEWAY_BIN" --config "$STACK_DIR/gateway.toml"
  wait_until gateway "the gateway to be ready ($gateway/ready)" http_ok "$gateway/ready"

  # 3. A token for the tenant, kept in a file that only we can read.
  (
    umask 077
    "$CORTEX_GATEWAY_BIN" token --tenant "$STACK_TENANT" --expires-in 24h \
      --config "$STACK_DIR/gateway.toml" >"$STACK_DIR/token"
  )
  log "minted a 24h token for tenant $STACK_TENANT: $STACK_DIR/token"

  # 4. The tenant's Prometheus: scrapes itself every second and remote_writes
  #    through the gateway with the token.
  cat >"$STACK_DIR/tenant.yml" <<EOF
# Written by run-local-stack.sh: the tenant's Prometheus.
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: $JOB
    static_configs:
      - targets: ["127.0.0.1:$STACK_TENANT_PORT"]
remote_write:
  - url: $gateway/api/v1/write
    authorization:
      credentials_file: $STACK_DIR/token
    queue_config:
      batch_send_deadline: 1s
EOF
  start tenant "$PROMETHEUS_BIN" \
    --config.file="$STACK_DIR/tenant.yml" \
    --storage.tsdb.path="$STACK_DIR/tenant-data" \
    --web.listen-address="127.0.0.1:$STACK_TENANT_PORT"
  wait_until tenant "the tenant Prometheus to be ready ($tenant/-/ready)" http_ok "$tenant/-/ready"

  # 5. Wait until its samples can be queried through the gateway.
  log "waiting (at most ${STACK_TIMEOUT}s) for samples of job=\"$JOB\" to arrive..."
  wait_until tenant "samples of job=\"$JOB\" to arrive through the gateway" samples_arrived
  trap - EXIT

  # `stop` must find the same state directory.
  local stop_command="$0 stop"
  if [[ $STACK_DIR != "$(cd "$DEFAULT_STACK_DIR" 2>/dev/null && pwd)" ]]; then
    stop_command="STACK_DIR=$STACK_DIR $stop_command"
  fi

  cat <<EOF

Samples from tenant $STACK_TENANT arrived. Query them through the gateway:

curl -sS -H "Authorization: Bearer \$(cat $STACK_DIR/token)" $(query_url) --data-urlencode 'query=up{job="$JOB"}'

Without the token the gateway answers 401. Logs, configs and PIDs: $STACK_DIR
Stop everything with: $stop_command
EOF
}

# writer_config NAME PORT TOKEN_FILE: the configuration of a tenant's
# Prometheus that scrapes itself every second and remote_writes to Cortex's
# push path through the gateway, with the token in TOKEN_FILE.
writer_config() {
  cat >"$STACK_DIR/$1.yml" <<EOF
# Written by run-local-stack.sh: a tenant's Prometheus.
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: $JOB
    static_configs:
      - targets: ["127.0.0.1:$2"]
remote_write:
  - url: http://127.0.0.1:$STACK_GATEWAY_PORT/api/v1/push
    authorization:
      credentials_file: $3
    queue_config:
      batch_send_deadline: 1s
EOF
}

cmd_start_cortex() {
  mkdir -p "$STACK_DIR"
  STACK_DIR=$(cd "$STACK_DIR" && pwd)
  local name port var
  for name in "${ALL_PROCESSES[@]}"; do
    if running_pid "$name" >/dev/null; then
      die "the stack in $STACK_DIR is already running; run '$0 stop' first"
    fi
  done
  [[ $STACK_TENANT != "$STACK_TENANT_B" ]] || die "STACK_TENANT and STACK_TENANT_B are both $STACK_TENANT"
  for var in STACK_CORTEX_PORT STACK_CORTEX_GRPC_PORT STACK_GATEWAY_PORT STACK_TENANT_PORT STACK_TENANT_B_PORT; do
    port=${!var}
    [[ $port =~ ^[0-9]+$ ]] || die "$var=$port is not a port number"
    if port_in_use "$port"; then
      die "port $port is in use; choose another with $var=<port>"
    fi
  done

  trap on_start_exit EXIT
  # Start from empty data so that old samples cannot fake a success.
  rm -rf "$STACK_DIR/cortex-data" "$STACK_DIR/tenant-data" "$STACK_DIR/tenant-b-data"
  rm -f "$STACK_DIR"/*.pid
  printf 'cortex\n' >"$STACK_DIR/mode"
  local data="$STACK_DIR/cortex-data"
  mkdir -p "$data/ruler-tmp"

  local cortex="http://127.0.0.1:$STACK_CORTEX_PORT"
  local gateway="http://127.0.0.1:$STACK_GATEWAY_PORT"

  # 1. Cortex, every role in one process. It takes the tenant from
  #    X-Scope-OrgID, which only the gateway sets.
  cat >"$STACK_DIR/cortex.yaml" <<EOF
# Written by run-local-stack.sh: single-process Cortex, multi-tenant.
target: all,alertmanager
auth_enabled: true
server:
  http_listen_address: 127.0.0.1
  http_listen_port: $STACK_CORTEX_PORT
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: $STACK_CORTEX_GRPC_PORT
distributor:
  shard_by_all_labels: true
  ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory
ingester:
  lifecycler:
    address: 127.0.0.1
    min_ready_duration: 0s
    final_sleep: 0s
    num_tokens: 512
    ring:
      kvstore:
        store: inmemory
      replication_factor: 1
querier:
  active_query_tracker_dir: $data/active-query-tracker
blocks_storage:
  backend: filesystem
  filesystem:
    dir: $data/blocks
  tsdb:
    dir: $data/tsdb
  bucket_store:
    sync_dir: $data/tsdb-sync
store_gateway:
  sharding_enabled: false
compactor:
  data_dir: $data/compactor
  sharding_ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory
frontend_worker:
  match_max_concurrent: true
ruler:
  enable_api: true
  rule_path: $data/ruler-tmp
  alertmanager_url: $cortex/alertmanager
  enable_alertmanager_v2: true
  ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory
ruler_storage:
  backend: filesystem
  filesystem:
    dir: $data/ruler
alertmanager:
  enable_api: true
  data_dir: $data/alertmanager
  external_url: $cortex/alertmanager
  sharding_enabled: false
  cluster:
    listen_address: ""
alertmanager_storage:
  backend: filesystem
  filesystem:
    dir: $data/alertmanager-configs
EOF
  start cortex "$CORTEX_BIN" -config.file="$STACK_DIR/cortex.yaml"
  wait_until cortex "Cortex to be ready ($cortex/ready)" http_ok "$cortex/ready"

  # 2. The gateway, in front of all four of Cortex's roles.
  local secret
  secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  (
    umask 077
    cat >"$STACK_DIR/gateway.toml" <<EOF
# Written by run-local-stack.sh.
[server]
http_listen_address = "127.0.0.1"
http_listen_port = $STACK_GATEWAY_PORT
graceful_shutdown_timeout = "5s"

[upstreams]
distributor = "$cortex"
query_frontend = "$cortex"
ruler = "$cortex"
alertmanager = "$cortex"

[auth]
jwt_secret = "$secret"
EOF
  )
  start gateway "$CORTEX_GATEWAY_BIN" --config "$STACK_DIR/gateway.toml"
  wait_until gateway "the gateway to be ready ($gateway/ready)" http_ok "$gateway/ready"

  # 3. A token per tenant, each in a file that only we can read.
  (
    umask 077
    "$CORTEX_GATEWAY_BIN" token --tenant "$STACK_TENANT" --expires-in 24h \
      --config "$STACK_DIR/gateway.toml" >"$STACK_DIR/token"
    "$CORTEX_GATEWAY_BIN" token --tenant "$STACK_TENANT_B" --expires-in 24h \
      --config "$STACK_DIR/gateway.toml" >"$STACK_DIR/token-b"
  )
  log "minted 24h tokens: tenant $STACK_TENANT in $STACK_DIR/token, tenant $STACK_TENANT_B in $STACK_DIR/token-b"

  # 4. One Prometheus per tenant: the same job name, each its own token.
  writer_config tenant "$STACK_TENANT_PORT" "$STACK_DIR/token"
  writer_config tenant-b "$STACK_TENANT_B_PORT" "$STACK_DIR/token-b"
  start tenant "$PROMETHEUS_BIN" \
    --config.file="$STACK_DIR/tenant.yml" \
    --storage.tsdb.path="$STACK_DIR/tenant-data" \
    --web.listen-address="127.0.0.1:$STACK_TENANT_PORT"
  start tenant-b "$PROMETHEUS_BIN" \
    --config.file="$STACK_DIR/tenant-b.yml" \
    --storage.tsdb.path="$STACK_DIR/tenant-b-data" \
    --web.listen-address="127.0.0.1:$STACK_TENANT_B_PORT"
  wait_until tenant "$STACK_TENANT's Prometheus to be ready" \
    http_ok "http://127.0.0.1:$STACK_TENANT_PORT/-/ready"
  wait_until tenant-b "$STACK_TENANT_B's Prometheus to be ready" \
    http_ok "http://127.0.0.1:$STACK_TENANT_B_PORT/-/ready"

  # 5. Wait until each tenant's samples can be queried through the gateway.
  log "waiting (at most ${STACK_TIMEOUT}s each) for samples of job=\"$JOB\" to arrive in Cortex..."
  wait_until tenant "samples of $STACK_TENANT to arrive through the gateway" samples_arrived token
  wait_until tenant-b "samples of $STACK_TENANT_B to arrive through the gateway" samples_arrived token-b

  # 6. What each tenant sees: its own Prometheus, never the other's.
  local seen_a seen_b
  seen_a=$(instances_seen token)
  seen_b=$(instances_seen token-b)
  if [[ $seen_a != "127.0.0.1:$STACK_TENANT_PORT" || $seen_b != "127.0.0.1:$STACK_TENANT_B_PORT" ]]; then
    die "tenants are not kept apart: $STACK_TENANT sees [$seen_a], $STACK_TENANT_B sees [$seen_b]"
  fi
  trap - EXIT

  # `stop` must find the same state directory.
  local stop_command="$0 stop"
  if [[ $STACK_DIR != "$(cd "$DEFAULT_STACK_DIR" 2>/dev/null && pwd)" ]]; then
    stop_command="STACK_DIR=$STACK_DIR $stop_command"
  fi

  cat <<EOF

Samples of both tenants arrived in Cortex. What each tenant sees through the gateway
as up{job="$JOB"} (both Prometheus servers scrape themselves under that job name):

  $STACK_TENANT sees $seen_a (its own Prometheus)
  $STACK_TENANT_B sees $seen_b (its own Prometheus)

Query as each tenant:

curl -sS -H "Authorization: Bearer \$(cat $STACK_DIR/token)" $(query_url) --data-urlencode 'query=up{job="$JOB"}'
curl -sS -H "Authorization: Bearer \$(cat $STACK_DIR/token-b)" $(query_url) --data-urlencode 'query=up{job="$JOB"}'

The gateway sets X-Scope-OrgID from the token (one sent by the client is dropped);
without a token it answers 401. Cortex itself listens on $cortex.
Logs, configs and PIDs: $STACK_DIR
Stop everything with: $stop_command
EOF
}

cmd_status() {
  local name pid
  for name in "${PROCESSES[@]}"; do
    if pid=$(running_pid "$name"); then
      printf '%-9s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-9s stopped\n' "$name"
    fi
  done
}

case ${1:-start} in
  start) cmd_start ;;
  stop)
    [[ -d $STACK_DIR ]] || exit 0
    STACK_DIR=$(cd "$STACK_DIR" && pwd)
    stop_all
    ;;
  status)
    if [[ -d $STACK_DIR ]]; then
      STACK_DIR=$(cd "$STACK_DIR" && pwd)
      load_mode
    fi
    cmd_status
    ;;
  -h | --help | help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" ;;
  *) die "unknown command '$1' (start, stop, status)" ;;
esac
