#!/usr/bin/env bash
# Upstream connections under a burst of concurrent clients (issue 16).
#
# C client connections (default 2,000) send authenticated GETs for DURATION
# seconds through a proxy (wrk, two threads), and the proxy forwards them to
# an upstream of its own (NGINX + njs, one worker, started fresh for each
# proxy) that logs each request's connection serial number. Per proxy:
#   - requests the upstream answered, and req/s at the client;
#   - upstream connections opened during the burst (distinct serial numbers
#     above the highest one before it), and per 1,000 requests: churn shows
#     as a connection for every few requests;
#   - the most connections established to the upstream at once (`ss` every
#     0.5 s) and the sockets to the upstream left in TIME-WAIT right after;
#   - for the gateway, the idle upstream connections it keeps after the
#     burst, against proxy.max_idle_connections_per_upstream x 2 workers.
#
# Targets (TARGETS, default "gateway gateway_pool nginx"):
#   gateway       default settings (max_idle_connections_per_upstream = 1000)
#   gateway_pool  the same binary with max_idle_connections_per_upstream =
#                 POOL (default 100): a pool smaller than the burst
#   nginx         the NGINX of compare.sh: `keepalive 64` per worker
#
# Usage: bench/burst.sh                      (about 20 s per target)
#   C=2000 DURATION=10 POOL=100 TARGETS=... GATEWAY_BIN=... (default
#   target/release/cortex-gateway) GATEWAY_EXTRA_ENV="K=V ..." NGINX_JS_MODULE=...
set -euo pipefail

C=${C:-2000}
DURATION=${DURATION:-10}
POOL=${POOL:-100}
TARGETS=${TARGETS:-"gateway gateway_pool nginx"}
DEFAULT_POOL=1000 # proxy.max_idle_connections_per_upstream's default
WORKERS=2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/cortex-gateway}

SCRIPT_NAME=burst.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need_tools "wrk nginx-light libnginx-mod-http-js curl iproute2" wrk nginx curl ss awk sort
need_njs
need_int C 1
need_int DURATION 1
need_int POOL 0
need_gateway_bin # it also mints the token for every target
for t in $TARGETS; do
    case $t in gateway | gateway_pool | nginx) ;;
    *) die "unknown target $t (gateway, gateway_pool, nginx)" ;; esac
done

# C client sockets in wrk; C accepted and up to C upstream sockets in one
# proxy process. Raised for this shell, so wrk and the proxies inherit it.
NOFILE=$((2 * C + 4096))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < NOFILE)); then
    die "the open-files hard limit ($hard) is below $NOFILE: raise it or lower C"
fi
ulimit -n "$NOFILE"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cortex-gateway-burst.XXXXXX")
# NGINX workers started by root run as nobody and must reach their temp paths.
chmod 755 "$WORK"
# A private copy: a `cargo build` elsewhere during the run cannot swap it.
cp "$GATEWAY_BIN" "$WORK/cortex-gateway"
GATEWAY_BIN=$WORK/cortex-gateway
SECRET=bench-secret-0123456789abcdef0123456789abcdef
QUERY=/api/v1/query?query=up

connections_to() { # connections_to STATE PORT : sockets in STATE toward 127.0.0.1:PORT
    ss -Htn state "$1" "( dport = :$2 )" | wc -l
}

max_serial() { # the highest connection serial number in the log so far
    sort -n "$1" | tail -n 1 | awk '{ print $1 + 0 }'
}

idle_kept() { # the gateway's idle upstream connections to the upstream on PORT
    curl -sS -m 5 "http://127.0.0.1:$1/metrics" |
        awk -v up="http://127.0.0.1:$2" '
            $1 ~ /^cortex_gateway_upstream_connections\{/ && $1 ~ /state="idle"/ &&
            index($1, "upstream=\"" up "\"") { n += $2 } END { print n + 0 }'
}

ROWS=()
run_target() {
    local target=$1 dir=$WORK/$1 token auth proxy_pid up_pid extra="" limit="-"
    mkdir -p "$dir/upstream"
    free_port UP_PORT
    : >"$dir/connections.log"
    chmod 666 "$dir/connections.log"
    write_body_reading_upstream "$dir/upstream" "$UP_PORT" "$dir/connections.log"
    start_nginx "$dir/upstream"
    up_pid=$STARTED_PID
    wait_for upstream 200 "http://127.0.0.1:$UP_PORT$QUERY"

    free_port PROXY_PORT
    gateway_env "$SECRET"
    token=$("${GATEWAY_ENV[@]}" "$GATEWAY_BIN" token --tenant tenant-a) || die "could not mint a token"
    auth="Authorization: Bearer $token"
    case $target in
    nginx)
        write_nginx_proxy "$dir/proxy" "$PROXY_PORT" "$UP_PORT" $((2 * C + 1024)) "$NOFILE"
        start_nginx "$dir/proxy"
        ;;
    gateway | gateway_pool)
        if [[ $target == gateway_pool ]]; then
            extra="CORTEX_GATEWAY__PROXY__MAX_IDLE_CONNECTIONS_PER_UPSTREAM=$POOL"
            limit=$((POOL * WORKERS))
        else
            limit=$((DEFAULT_POOL * WORKERS))
        fi
        start_gateway "$PROXY_PORT" "$dir/gateway.log" "$GATEWAY_BIN" "$extra"
        ;;
    esac
    proxy_pid=$STARTED_PID
    wait_for "$target" 200 -H "$auth" "http://127.0.0.1:$PROXY_PORT$QUERY"

    local before_serial before_lines peak=0 n
    before_serial=$(max_serial "$dir/connections.log")
    before_lines=$(wc -l <"$dir/connections.log")
    log "$target: $C connections for ${DURATION}s"
    wrk -t2 -c"$C" -d"${DURATION}s" --timeout 10s -H "$auth" \
        "http://127.0.0.1:$PROXY_PORT$QUERY" >"$dir/wrk.txt" 2>&1 &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    while alive "$wrk_pid"; do
        n=$(connections_to established "$UP_PORT")
        ((n > peak)) && peak=$n
        sleep 0.5
    done
    wait "$wrk_pid" || die "wrk failed: $(cat "$dir/wrk.txt")"
    forget_pid "$wrk_pid"
    local time_wait requests opened rps errors kept="-"
    time_wait=$(connections_to time-wait "$UP_PORT")
    requests=$(($(wc -l <"$dir/connections.log") - before_lines))
    opened=$(awk -v s="$before_serial" '$1 > s' "$dir/connections.log" | sort -un | wc -l)
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$dir/wrk.txt")
    errors=$(awk '/^  Non-2xx/ { n += $NF } /^  Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) n += $i } END { print n + 0 }' "$dir/wrk.txt")
    if [[ $target == gateway* ]]; then
        kept=$(idle_kept "$PROXY_PORT" "$UP_PORT")
    fi
    ROWS+=("| $target | $requests | $rps | $opened | $(awk -v o="$opened" -v r="$requests" 'BEGIN { printf "%.1f", r ? 1000 * o / r : 0 }') | $peak | $time_wait | $kept / $limit | $errors |")
    stop_pid "$proxy_pid"
    forget_pid "$proxy_pid"
    stop_pid "$up_pid"
    forget_pid "$up_pid"
}

for target in $TARGETS; do
    run_target "$target"
done

echo
echo "| target | requests | req/s | upstream connections opened | opened per 1,000 requests | most established at once | TIME-WAIT to upstream after | idle kept after / limit | non-2xx and socket errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
echo
echo "C=$C DURATION=$DURATION POOL=$POOL; gateway: binary sha256 $(sha256sum "$GATEWAY_BIN" | cut -c1-16)…, server.workers=$WORKERS${GATEWAY_EXTRA_ENV:+, $GATEWAY_EXTRA_ENV}; nginx: worker_processes 2, keepalive 64; load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
