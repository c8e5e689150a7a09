#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind (callgrind) in the
# gateway's user space: unlike req/s and CPU time, the count does not move
# with the load of a shared machine, so two builds compare reliably even on a
# busy 2-core box. Each binary runs with one worker under callgrind against
# the same NGINX + njs upstream as bench/compare.sh; after a warm-up the
# counters are zeroed, wrk sends a fixed-length run of requests, and the count
# is divided by the requests wrk completed. Kernel time (the syscalls) is not
# counted: see bench/compare.sh for whole-process CPU per request.
#
# Installs nothing. Needs: valgrind, wrk, nginx with the njs module (Debian:
# `apt-get install valgrind wrk nginx-light libnginx-mod-http-js`), curl.
#
# Usage:  bench/instructions.sh BINARY [BINARY...]   (ratios are to the first)
# Environment:
#   DURATION=10      seconds of measured load per binary and workload
#   WORKLOADS="get push2k"
set -euo pipefail

DURATION=${DURATION:-10}
WORKLOADS=${WORKLOADS:-"get push2k"}
CONNECTIONS=8 # enough to keep one slowed-down worker busy; no queueing study here

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
SCRIPT_NAME=instructions.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

(($# > 0)) || die "usage: bench/instructions.sh BINARY [BINARY...]"
need_tools "valgrind wrk nginx-light libnginx-mod-http-js curl" \
    valgrind callgrind_control callgrind_annotate wrk nginx curl
for binary in "$@"; do [[ -x $binary ]] || die "not an executable: $binary"; done
need_int DURATION 1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cortex-gateway-instructions.XXXXXX")
chmod 755 "$WORK"
free_port UP_PORT
write_body_reading_upstream "$WORK/upstream" "$UP_PORT"
start_nginx "$WORK/upstream"
wait_for upstream 200 -X POST --data-binary 'x' "http://127.0.0.1:$UP_PORT/api/v1/push"

SECRET=bench-secret-0123456789abcdef0123456789abcdef
gateway_env "$SECRET" 1
TOKEN=$("${GATEWAY_ENV[@]}" "$1" token --tenant tenant-a) || die "could not mint a token"
AUTH="Authorization: Bearer $TOKEN"

head -c 2048 /dev/urandom >"$WORK/push2k.body"
cat >"$WORK/push2k.lua" <<LUA
local f = assert(io.open("$WORK/push2k.body", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Content-Encoding"] = "snappy"
LUA

load() { # load WORKLOAD PORT SECONDS OUTFILE
    local args=(-t1 -c"$CONNECTIONS" -d"${3}s" -H "$AUTH")
    case $1 in
    get) args+=("http://127.0.0.1:$2/api/v1/query?query=up") ;;
    push2k) args+=(-s "$WORK/push2k.lua" "http://127.0.0.1:$2/api/v1/push") ;;
    *) die "unknown workload $1 (get, push2k)" ;;
    esac
    timeout $(($3 + 60)) wrk "${args[@]}" >"$4" 2>&1 || die "wrk failed: $(tail -3 "$4")"
    if grep -q "Non-2xx\|Socket errors" "$4"; then
        die "errors during the $1 run: $(grep "Non-2xx\|Socket errors" "$4")"
    fi
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
n=0
for binary in "$@"; do
    n=$((n + 1))
    for w in $WORKLOADS; do
        free_port port
        out=$WORK/callgrind-$n-$w.out
        "${GATEWAY_ENV[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" \
            -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" -log.level=warn \
            >"$WORK/gateway-$n-$w.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_for "gateway $n under valgrind" 200 -m 5 "http://127.0.0.1:$port/health"
        load "$w" "$port" 3 "$WORK/warmup.txt"
        callgrind_control -z "$pid" >/dev/null
        load "$w" "$port" "$DURATION" "$WORK/wrk-$n-$w.txt"
        callgrind_control -d "$pid" >/dev/null
        requests=$(awk '/requests in/ { print $1; exit }' "$WORK/wrk-$n-$w.txt")
        for ((i = 0; i < 50; i++)); do [[ -s $out.1 ]] && break; sleep 0.2; done
        [[ -s $out.1 ]] || die "no callgrind dump for $binary ($w); see $WORK/gateway-$n-$w.log"
        total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
        stop_pid "$pid"
        forget_pid "$pid"
        [[ -n $total && -n $requests && $requests -gt 0 ]] || die "no count for $binary ($w)"
        printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$binary" "$w" "$requests" "$((total / requests))" >>"$RESULTS"
        log "$binary $w: $requests requests, $((total / requests)) instructions per request"
    done
done

echo
echo "Instructions per request in the gateway's user space (callgrind, 1 worker, wrk -t1 -c$CONNECTIONS -d${DURATION}s):"
echo
echo "| build | workload | requests | instructions/request | ratio to build 1 |"
echo "| --- | --- | ---: | ---: | ---: |"
awk -F'\t' '{ key = $3; if ($1 == 1) first[key] = $5
    printf "| %s (%s) | %s | %s | %s | %.2f |\n", $1, $2, $3, $4, $5, $5 / first[key] }' "$RESULTS"
