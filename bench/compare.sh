#!/usr/bin/env bash
# Side-by-side benchmark: the same requests sent straight to an upstream
# ("direct"), through NGINX setting X-Scope-OrgID ("nginx", the setup the
# gateway replaces) and through cortex-gateway verifying a JWT on every request
# ("gateway"). Then a 1 GiB upload through a fresh gateway to measure how much
# its memory grows while streaming a large body.
#
# Installs nothing. Needs: wrk, nginx with the njs module (Debian:
# `apt-get install wrk nginx-light libnginx-mod-http-js`), curl, and the
# release binary (`cargo build --release`).
#
# Usage:  bench/compare.sh
# Environment:
#   ROUNDS=3          rounds per workload; each round runs direct, nginx, gateway in turn
#   DURATION=10       seconds per wrk run
#   WARMUP=2          seconds of unmeasured load per target and workload before round 1 (0: none)
#   UPLOAD_MIB=1024   size of the large upload (0: skip it)
#   WORKLOADS="get push2k push64k"   which workloads to run
#   RESULTS_DIR=...   where raw wrk outputs and the summary go
#                     (default: bench/results/<UTC timestamp>)
#   GATEWAY_BIN=...   default: target/release/cortex-gateway
#   GATEWAY_B_BIN=... optional second build, measured as "gateway_b" in the same
#                     alternating rounds, with its ratios to "gateway" (an A/B
#                     of two builds, e.g. one with `--features hyper-upstream`)
#   GATEWAY_B_ENV="K=V ..."  more environment for gateway_b only: with
#                     GATEWAY_B_BIN the same binary, an A/B of a runtime setting
#                     (e.g. GLIBC_TUNABLES=glibc.malloc.tcache_count=0)
#   GATEWAY_EXTRA_ENV="K=V ..."  more environment for both gateways
#   NGINX_JS_MODULE=...  default: /usr/lib/nginx/modules/ngx_http_js_module.so
#   LIMITS=1          also measure what per-tenant limits cost: the same binary with
#                     every limit set (high enough never to refuse) on local buckets
#                     ("gw_local") and on Redis ("gw_redis"; needs redis-server), in
#                     the same alternating rounds, with their ratios to "gateway"
#                     (no limits). Default 0.
#
# Everything listens on 127.0.0.1 on free ports, under a temporary prefix that
# is removed on exit; every process started here is stopped by PID on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
UPLOAD_MIB=${UPLOAD_MIB:-1024}
LIMITS=${LIMITS:-0}
WORKLOADS=${WORKLOADS:-"get push2k push64k"}

# wrk shape. The machine has 2 cores shared by the load generator, the proxy
# under test (2 workers) and the upstream (1 worker). One wrk thread keeps the
# load generator to at most one core, so it does not take CPU from the proxy
# more than necessary and the three targets compete for CPU the same way.
# 32 connections keep enough requests in flight that a proxy is never idle
# waiting for the next request (16 per proxy worker, like a few busy Prometheus
# remote-write shards plus queriers), without so many that latency measures
# only queueing in wrk's single event loop.
WRK_THREADS=1
WRK_CONNECTIONS=32

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/cortex-gateway}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}

SCRIPT_NAME=compare.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

# ---------------------------------------------------------------- tools
need_tools "wrk nginx-light libnginx-mod-http-js curl" \
    wrk nginx curl getconf awk sort timeout head truncate sha256sum
need_njs
need_gateway_bin
need_int ROUNDS 1
need_int DURATION 1
need_int WARMUP 0
need_int UPLOAD_MIB 0
[[ $LIMITS == 0 || $LIMITS == 1 ]] || die "LIMITS must be 0 or 1"
if ((LIMITS)) && ! command -v redis-server >/dev/null 2>&1; then
    die "LIMITS=1 needs redis-server (Debian: apt-get install redis-server)"
fi
for w in $WORKLOADS; do
    case $w in get | push2k | push64k) ;; *) die "unknown workload $w (get, push2k, push64k)" ;; esac
done

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cortex-gateway-bench.XXXXXX")
# NGINX workers started by root run as nobody and must reach their temp paths.
chmod 755 "$WORK"
mkdir -p "$RESULTS_DIR"

# ---------------------------------------------------------------- servers

# The upstream: NGINX + njs. nginx hands js_content the request only after it
# has read the whole body, and the handler touches the body, so a proxy's
# request is not answered before its body has been sent (a plain `return 200`
# answers first and discards the body, which flatters every proxy).
free_port UP_PORT
write_body_reading_upstream "$WORK/upstream" "$UP_PORT"

# NGINX as the proxy the gateway replaces: sets the tenant, checks nothing.
free_port NGINX_PORT
write_nginx_proxy "$WORK/nginx" "$NGINX_PORT" "$UP_PORT" 4096 65536

log "starting upstream (nginx+njs, 1 worker) on 127.0.0.1:$UP_PORT"
start_nginx "$WORK/upstream"
wait_for upstream 200 -X POST --data-binary 'x' "http://127.0.0.1:$UP_PORT/api/v1/push"

log "starting nginx proxy (2 workers) on 127.0.0.1:$NGINX_PORT"
start_nginx "$WORK/nginx"
NGINX_PID=$STARTED_PID
wait_for nginx 200 "http://127.0.0.1:$NGINX_PORT/api/v1/query?query=up"

# The gateway's environment, shared by `token` and `serve`.
gateway_env "bench-secret-0123456789abcdef0123456789abcdef"

# Run a private copy: a `cargo build` elsewhere during the run cannot swap it.
cp "$GATEWAY_BIN" "$WORK/cortex-gateway"
GATEWAY_SHA=$(sha256sum "$WORK/cortex-gateway" | cut -c1-16)
GIT_REV="HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    GIT_REV+=", src/Cargo files modified"
fi
head_time=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)
if (($(stat -c %Y "$GATEWAY_BIN") < head_time)); then
    GIT_REV+=", binary older than HEAD: rebuild with 'cargo build --release' to measure it"
    echo "warning: $GATEWAY_BIN is older than the last commit" >&2
fi
GATEWAY_BIN=$WORK/cortex-gateway
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

TOKEN=$("${GATEWAY_ENV[@]}" "$GATEWAY_BIN" token --tenant tenant-a) || die "could not mint a token"
[[ -n $TOKEN ]] || die "empty token"
AUTH="Authorization: Bearer $TOKEN"

free_port GW_PORT
log "starting cortex-gateway (2 workers) on 127.0.0.1:$GW_PORT"
start_gateway "$GW_PORT" "$WORK/gateway.log"
GW_PID=$STARTED_PID
wait_for gateway 200 "http://127.0.0.1:$GW_PORT/health"
wait_for "gateway with a token" 200 -H "$AUTH" "http://127.0.0.1:$GW_PORT/api/v1/query?query=up"
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/api/v1/query?query=up")
[[ $code == 401 ]] || die "gateway answered $code without a token (expected 401): is it verifying?"

TARGETS="direct nginx gateway"
[[ -z ${GATEWAY_B_ENV:-} || -n ${GATEWAY_B_BIN:-} ]] || die "GATEWAY_B_ENV needs GATEWAY_B_BIN (the same binary for an A/B of a setting)"
if [[ -n ${GATEWAY_B_BIN:-} ]]; then
    [[ -x $GATEWAY_B_BIN ]] || die "GATEWAY_B_BIN: no executable at $GATEWAY_B_BIN"
    cp "$GATEWAY_B_BIN" "$WORK/cortex-gateway-b"
    GATEWAY_B_SHA=$(sha256sum "$WORK/cortex-gateway-b" | cut -c1-16)
    free_port GW_B_PORT
    log "starting the second build, gateway_b (2 workers), on 127.0.0.1:$GW_B_PORT"
    start_gateway "$GW_B_PORT" "$WORK/gateway-b.log" "$WORK/cortex-gateway-b" "${GATEWAY_B_ENV:-}"
    GW_B_PID=$STARTED_PID
    wait_for gateway_b 200 "http://127.0.0.1:$GW_B_PORT/health"
    wait_for "gateway_b with a token" 200 -H "$AUTH" "http://127.0.0.1:$GW_B_PORT/api/v1/query?query=up"
    TARGETS+=" gateway_b"
fi

if ((LIMITS)); then
    free_port REDIS_PORT
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --save "" --appendonly no --bind 127.0.0.1 --port "$REDIS_PORT" \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do
        [[ $(redis_command "$REDIS_PORT" PING) == +PONG ]] && break
        sleep 0.1
    done
    [[ $(redis_command "$REDIS_PORT" PING) == +PONG ]] || die "redis-server did not answer; see $WORK/redis.log"
    # Every limit on, none ever reached: the cost of checking, not of refusing.
    saved_env=("${GATEWAY_ENV[@]}")
    GATEWAY_ENV+=(CORTEX_GATEWAY__LIMITS__REQUESTS_PER_SECOND=1000000000
        CORTEX_GATEWAY__LIMITS__BURST=1000000
        CORTEX_GATEWAY__LIMITS__INGEST_BYTES_PER_SECOND=1000000000
        CORTEX_GATEWAY__LIMITS__INGEST_BURST_BYTES=4000000000
        CORTEX_GATEWAY__LIMITS__MAX_INFLIGHT=100000)
    free_port GW_LOCAL_PORT
    log "starting gw_local (2 workers, local limits) on 127.0.0.1:$GW_LOCAL_PORT"
    start_gateway "$GW_LOCAL_PORT" "$WORK/gateway-local.log"
    GW_LOCAL_PID=$STARTED_PID
    GATEWAY_ENV+=(CORTEX_GATEWAY__LIMITS__BACKEND=redis
        CORTEX_GATEWAY__LIMITS__REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
    free_port GW_REDIS_PORT
    log "starting gw_redis (2 workers, limits in Redis) on 127.0.0.1:$GW_REDIS_PORT"
    start_gateway "$GW_REDIS_PORT" "$WORK/gateway-redis.log"
    GW_REDIS_PID=$STARTED_PID
    GATEWAY_ENV=("${saved_env[@]}")
    wait_for "gw_local with a token" 200 -H "$AUTH" "http://127.0.0.1:$GW_LOCAL_PORT/api/v1/query?query=up"
    # Measured only once it charges Redis: the bucket's key exists.
    for ((i = 0; i < 100; i++)); do
        curl -sS -o /dev/null -m 2 -H "$AUTH" "http://127.0.0.1:$GW_REDIS_PORT/api/v1/query?query=up" || true
        [[ $(redis_command "$REDIS_PORT" DBSIZE) =~ ^:[1-9] ]] && break
        sleep 0.1
    done
    [[ $(redis_command "$REDIS_PORT" DBSIZE) =~ ^:[1-9] ]] || die "gw_redis never charged Redis; see $WORK/gateway-redis.log"
    TARGETS+=" gw_local gw_redis"
fi

# ---------------------------------------------------------------- workloads
mkdir -p "$WORK/lua"
make_post_script() { # make_post_script NAME BYTES
    head -c "$2" /dev/urandom >"$WORK/lua/$1.body"
    cat >"$WORK/lua/$1.lua" <<EOF
local f = assert(io.open("$WORK/lua/$1.body", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
assert(#wrk.body == $2, "body size")
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Content-Encoding"] = "snappy"
wrk.headers["X-Prometheus-Remote-Write-Version"] = "0.1.0"
EOF
}
make_post_script push2k 2048
make_post_script push64k 65536

workload_path() {
    case $1 in
    get) echo "/api/v1/query?query=up" ;;
    *) echo "/api/v1/push" ;;
    esac
}
workload_args() { # extra wrk arguments
    case $1 in
    get) ;;
    *) echo "-s $WORK/lua/$1.lua" ;;
    esac
}
workload_title() {
    case $1 in
    get) echo "GET /api/v1/query?query=up" ;;
    push2k) echo "POST /api/v1/push, 2 KiB body" ;;
    push64k) echo "POST /api/v1/push, 64 KiB body" ;;
    esac
}

target_port() {
    case $1 in
    direct) echo "$UP_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    gateway) echo "$GW_PORT" ;;
    gateway_b) echo "$GW_B_PORT" ;;
    gw_local) echo "$GW_LOCAL_PORT" ;;
    gw_redis) echo "$GW_REDIS_PORT" ;;
    esac
}
target_pids() { # the proxy's processes (none for direct)
    case $1 in
    direct) ;;
    nginx) echo "$NGINX_PID $(children_of "$NGINX_PID")" ;;
    gateway) echo "$GW_PID" ;;
    gateway_b) echo "$GW_B_PID" ;;
    gw_local) echo "$GW_LOCAL_PID" ;;
    gw_redis) echo "$GW_REDIS_PID" ;; # the gateway's own cost; Redis's CPU is not counted
    esac
}

to_ms() { # wrk's "1.23ms" / "456.00us" / "1.02s" / "1.5m" -> milliseconds
    awk -v t="$1" 'BEGIN {
        if (t ~ /us$/) { sub(/us$/, "", t); printf "%.3f", t / 1000 }
        else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.3f", t }
        else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.3f", t * 1000 }
        else if (t ~ /m$/) { sub(/m$/, "", t); printf "%.3f", t * 60000 }
        else if (t ~ /h$/) { sub(/h$/, "", t); printf "%.3f", t * 3600000 }
        else { print "NaN" }
    }'
}

# Every request sends the same headers, the token included, to every target:
# NGINX and the upstream ignore it, the gateway verifies it.
run_wrk() { # run_wrk WORKLOAD TARGET SECONDS OUTFILE
    local w=$1 t=$2 secs=$3 out=$4 extra
    extra=$(workload_args "$w")
    # shellcheck disable=SC2086  # $extra is "-s FILE" or empty
    timeout $((secs + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${secs}s" --latency \
        -H "$AUTH" $extra "http://127.0.0.1:$(target_port "$t")$(workload_path "$w")" >"$out" 2>&1 ||
        die "wrk failed for $w/$t: $(tail -3 "$out")"
}

RUNS=$RESULTS_DIR/runs.tsv
printf 'workload\ttarget\tround\treq_s\tp50_ms\tp99_ms\tpeak_rss_kib\tcpu_us_per_req\trequests\terrors\n' >"$RUNS"
ERRORS_SEEN=0

measure() { # measure WORKLOAD TARGET ROUND
    local w=$1 t=$2 r=$3 out pids before after peak=NA cpu=NA reqs rps p50 p99 errs
    out=$RESULTS_DIR/wrk-$w-$t-$r.txt
    read -ra pids <<<"$(target_pids "$t")"
    if ((${#pids[@]})); then
        before=$(cpu_ticks "${pids[@]}")
        start_rss_sampler "$WORK/peak" $((DURATION + 30)) "${pids[@]}"
    fi
    run_wrk "$w" "$t" "$DURATION" "$out"
    if ((${#pids[@]})); then
        after=$(cpu_ticks "${pids[@]}")
        stop_rss_sampler
        peak=$(<"$WORK/peak")
    fi
    reqs=$(awk '/requests in/ { print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
    errs=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
                /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                END { print n + 0 }' "$out")
    [[ -n $reqs && -n $rps ]] || die "could not parse $out"
    if ((${#pids[@]})); then
        cpu=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
            'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
    fi
    if ((errs > 0)); then
        ERRORS_SEEN=1
        echo "warning: $w/$t round $r: $errs errors or non-2xx answers (see $out)" >&2
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$w" "$t" "$r" "$rps" "$p50" "$p99" "$peak" "$cpu" "$reqs" "$errs" >>"$RUNS"
    printf '   %-8s %-8s round %d: %10.1f req/s  p50 %8.3f ms  p99 %8.3f ms  peak RSS %6s KiB  CPU %8s us/req  errors %s\n' \
        "$w" "$t" "$r" "$rps" "$p50" "$p99" "$peak" "$cpu" "$errs" >&2
}

for w in $WORKLOADS; do
    log "workload $w: $(workload_title "$w")"
    if ((WARMUP > 0)); then
        for t in $TARGETS; do
            run_wrk "$w" "$t" "$WARMUP" "$WORK/warmup.txt"
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in $TARGETS; do
            measure "$w" "$t" "$r"
        done
    done
done

GW_HWM_END=$(status_kib VmHWM "$GW_PID")

# ---------------------------------------------------------------- summary
SUMMARY=$RESULTS_DIR/summary.md
median() { # median of the numbers on stdin; NA if none
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "NA"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
col() { # col WORKLOAD TARGET COLUMN -> median of that column over rounds
    awk -F'\t' -v w="$1" -v t="$2" -v c="$3" 'NR > 1 && $1 == w && $2 == t && $c != "NA" && $c != "" { print $c }' "$RUNS" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }'; }
ratio_cells() { # ratio_cells WORKLOAD A B COLUMN... -> "r1 | r2 ...": A/B of each column's median
    local w=$1 a=$2 b=$3 cells=() c out=""
    shift 3
    for c in "$@"; do cells+=("$(ratio "$(col "$w" "$a" "$c")" "$(col "$w" "$b" "$c")")"); done
    for c in "${cells[@]}"; do out+="${out:+ | }$c"; done
    echo "$out"
}

{
    echo "Medians of $ROUNDS rounds after ${WARMUP}s of warm-up per target and workload; each run: wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${DURATION}s --latency -H 'Authorization: Bearer …' (POSTs: -s, a Lua script that sends the body)"
    echo "(RSS and CPU are the proxy's; \"direct\" has no proxy.)"
    echo
    echo "| workload | target | req/s | p50 ms | p99 ms | peak RSS MiB | CPU µs/req |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    for w in $WORKLOADS; do
        for t in $TARGETS; do
            rps=$(col "$w" "$t" 4)
            p50=$(col "$w" "$t" 5)
            p99=$(col "$w" "$t" 6)
            rss=$(col "$w" "$t" 7)
            cpu=$(col "$w" "$t" 8)
            [[ $rss == NA ]] || rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
            [[ $cpu == NA ]] || cpu=$(awk -v c="$cpu" 'BEGIN { printf "%.1f", c }')
            printf '| %s | %s | %.0f | %.3f | %.3f | %s | %s |\n' "$w" "$t" "$rps" "$p50" "$p99" \
                "${rss/NA/-}" "${cpu/NA/-}"
        done
    done
    echo
    echo "| workload | gateway/nginx req/s | gateway/nginx p99 | gateway/nginx CPU/req | gateway/direct req/s | gateway/direct p99 |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for w in $WORKLOADS; do
        echo "| $w | $(ratio_cells "$w" gateway nginx 4 6 8) | $(ratio_cells "$w" gateway direct 4 6) |"
    done
    if [[ $TARGETS == *gateway_b* ]]; then
        echo
        echo "Second build (gateway_b: $GATEWAY_B_BIN, sha256 $GATEWAY_B_SHA…${GATEWAY_B_ENV:+, environment $GATEWAY_B_ENV}) against gateway:"
        echo
        echo "| workload | gateway_b/gateway req/s | gateway_b/gateway p99 | gateway_b/gateway CPU/req | gateway_b/nginx req/s | gateway_b/nginx CPU/req |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: |"
        for w in $WORKLOADS; do
            echo "| $w | $(ratio_cells "$w" gateway_b gateway 4 6 8) | $(ratio_cells "$w" gateway_b nginx 4 8) |"
        done
    fi
    if ((LIMITS)); then
        echo
        echo "Per-tenant limits (every limit on, never reached) against the gateway without limits:"
        echo
        echo "| workload | gw_local/gateway req/s | gw_local/gateway p99 | gw_local/gateway CPU/req | gw_redis/gateway req/s | gw_redis/gateway p99 | gw_redis/gateway CPU/req |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        for w in $WORKLOADS; do
            echo "| $w | $(ratio_cells "$w" gw_local gateway 4 6 8) | $(ratio_cells "$w" gw_redis gateway 4 6 8) |"
        done
        echo
        echo "Requests gw_redis checked locally because Redis failed or was slow (should be 0):" \
            "$(curl -sS -m 5 "http://127.0.0.1:$GW_REDIS_PORT/metrics" |
                awk '$1 == "cortex_gateway_limits_backend_errors_total" { print $2 }')"
    fi
    echo
    awk -v k="$GW_HWM_END" 'BEGIN { printf "Gateway VmHWM (peak RSS since start) after all load runs: %.1f MiB\n", k / 1024 }'
    echo
    echo "Issue targets (medians):"
    for w in $WORKLOADS; do
        tput_ratio=$(ratio "$(col "$w" gateway 4)" "$(col "$w" nginx 4)")
        p99_gw=$(col "$w" gateway 6)
        p99_ng=$(col "$w" nginx 6)
        rss_gw=$(col "$w" gateway 7)
        awk -v w="$w" -v r="$tput_ratio" -v g="$p99_gw" -v n="$p99_ng" -v m="$rss_gw" 'BEGIN {
            printf "- %s: throughput >= 1.2x nginx: %s (%sx); p99 <= nginx: %s (%.3f vs %.3f ms); peak RSS <= 32 MiB: %s (%.1f MiB)\n",
                w, (r >= 1.2 ? "met" : "NOT met"), r, (g <= n ? "met" : "NOT met"), g, n,
                (m / 1024 <= 32 ? "met" : "NOT met"), m / 1024 }'
    done
} >"$SUMMARY"

# ---------------------------------------------------------------- 1 GiB upload
# A fresh gateway, so that its VmHWM (peak RSS since start) is not the peak of
# the load runs above; one small request first so that the worker, its client
# and the connection to the upstream exist before "before" is read.
upload() { # upload MODE (sized|chunked) ; appends to the summary
    local mode=$1 port pid logf before hwm_before peak hwm after_rss code
    free_port port
    logf=$WORK/gateway-upload-$mode.log
    # The default request body limit is below a large upload: raise it for
    # this instance (when the binary has the setting).
    local saved_env=("${GATEWAY_ENV[@]}")
    if "${GATEWAY_ENV[@]}" "$GATEWAY_BIN" check-config 2>/dev/null | grep -q '^max_request_body_size'; then
        GATEWAY_ENV+=(CORTEX_GATEWAY__SERVER__MAX_REQUEST_BODY_SIZE=$((UPLOAD_MIB * 1024 * 1024)))
    fi
    start_gateway "$port" "$logf"
    GATEWAY_ENV=("${saved_env[@]}")
    pid=$STARTED_PID
    wait_for "gateway (upload)" 200 "http://127.0.0.1:$port/health"
    wait_for "gateway (upload) with a token" 200 -H "$AUTH" -X POST --data-binary 'x' \
        "http://127.0.0.1:$port/api/v1/push"
    # Reset the peak to the current RSS where the kernel allows it (Linux >= 4.0).
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    before=$(status_kib VmRSS "$pid")
    hwm_before=$(status_kib VmHWM "$pid")
    start_rss_sampler "$WORK/peak" 600 "$pid"
    # Content-Length: a sparse file of the size (no disk, no curl buffering);
    # chunked: a pipe of unknown length.
    local curl_args=(-sS -m 600 -H "$AUTH" -H "Content-Type: application/x-protobuf"
        -H "Expect:" -o /dev/null -D "$WORK/upload-headers" -w '%{http_code}')
    local t0 t1
    t0=$(date +%s.%N)
    if [[ $mode == sized ]]; then
        code=$(curl "${curl_args[@]}" -T "$WORK/upload.bin" "http://127.0.0.1:$port/api/v1/push") ||
            code="curl failed"
    else
        code=$(head -c "$((UPLOAD_MIB * 1024 * 1024))" /dev/zero |
            curl "${curl_args[@]}" -T - "http://127.0.0.1:$port/api/v1/push") || code="curl failed"
    fi
    t1=$(date +%s.%N)
    stop_rss_sampler
    peak=$(<"$WORK/peak")
    hwm=$(status_kib VmHWM "$pid")
    after_rss=$(status_kib VmRSS "$pid")
    stop_pid "$pid"
    forget_pid "$pid"
    [[ $code == 200 ]] || { ERRORS_SEEN=1; echo "warning: $mode upload answered $code" >&2; }
    # The upstream read the whole body: its request length counts every byte.
    local seen
    seen=$(awk -F': ' 'tolower($1) == "x-request-length" { gsub(/\r/, "", $2); print $2 }' "$WORK/upload-headers")
    if [[ -z $seen ]] || ((seen < UPLOAD_MIB * 1024 * 1024)); then
        ERRORS_SEEN=1
        echo "warning: $mode upload: the upstream read ${seen:-?} bytes, less than the body" >&2
    fi
    awk -v mode="$mode" -v mib="$UPLOAD_MIB" -v code="$code" -v b="$before" -v hb="$hwm_before" \
        -v p="$peak" -v h="$hwm" -v a="$after_rss" -v t0="$t0" -v t1="$t1" 'BEGIN {
        peak = (h > p ? h : p)
        printf "| %s | %d MiB | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f |\n",
            mode, mib, code, b / 1024, hb / 1024, p / 1024, h / 1024, (peak - b) / 1024, a / 1024,
            (t1 - t0), mib / (t1 - t0) }' >>"$SUMMARY"
}

if ((UPLOAD_MIB > 0)); then
    log "upload of $UPLOAD_MIB MiB through a fresh gateway (Content-Length, then chunked)"
    {
        echo
        echo "Large upload through a fresh gateway (RSS in MiB; growth = max(VmHWM, sampled peak) - RSS before):"
        echo
        echo "| framing | size | status | RSS before | VmHWM before | sampled peak | VmHWM after | growth | RSS after | seconds | MiB/s |"
        echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    } >>"$SUMMARY"
    truncate -s "$((UPLOAD_MIB * 1024 * 1024))" "$WORK/upload.bin"
    upload sized
    upload chunked
fi

{
    echo
    echo "Gateway: repository at $GIT_REV; binary sha256 $GATEWAY_SHA…${GATEWAY_EXTRA_ENV:+; environment $GATEWAY_EXTRA_ENV}; load average (1/5/15 min) at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
        "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo);" \
        "$(nginx -v 2>&1 | sed 's/^nginx version: //'); $(wrk --version 2>&1 | head -1 | awk '{ print $1, $2 }')"
} >>"$SUMMARY"

echo
cat "$SUMMARY"
echo
echo "Raw wrk output and runs.tsv: $RESULTS_DIR"
if ((ERRORS_SEEN)); then
    echo "WARNING: some runs had errors or non-2xx answers; see the warnings above." >&2
fi
