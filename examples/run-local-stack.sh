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
# Needs: bash, curl, prometheus (Debian/Ubuntu: apt-get install prometheus),
# and a built gateway (cargo build --release, or cargo build).
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

# The job the tenant Prometheus scrapes itself as: what you query for.
JOB=tenant-prometheus
# Stop order: writer first, so that its last batches still find the gateway.
PROCESSES=(tenant gateway receiver)

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

stop_all() {
  local name
  for name in "${PROCESSES[@]}"; do
    stop_one "$name"
  done
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

query_url() { printf 'http://127.0.0.1:%s/api/v1/query' "$STACK_GATEWAY_PORT"; }

# The first samples have arrived when the query, sent through the gateway
# with the tenant's token, returns a non-empty result.
samples_arrived() {
  local answer
  answer=$(curl -fsS --max-time 5 \
    -H "Authorization: Bearer $(<"$STACK_DIR/token")" \
    --data-urlencode "query=up{job=\"$JOB\"}" \
    "$(query_url)") || return 1
  [[ $answer == *'"result":[{'* ]]
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

  mkdir -p "$STACK_DIR"
  STACK_DIR=$(cd "$STACK_DIR" && pwd)
  local name port var
  for name in "${PROCESSES[@]}"; do
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
    [[ -d $STACK_DIR ]] && STACK_DIR=$(cd "$STACK_DIR" && pwd)
    cmd_status
    ;;
  -h | --help | help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" ;;
  *) die "unknown command '$1' (start, stop, status)" ;;
esac
