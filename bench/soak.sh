#!/usr/bin/env bash
# Soak: at least 100k requests of mixed tenants, sizes and faults through the
# gateway, then the checks a multi-tenant front door must pass:
#   - no unexpected status: good requests 200, bad tokens 401, the route to a
#     dead upstream 502, and nothing else (read from the gateway's own
#     per-route, per-status histogram);
#   - every request that reached the upstream carried the tenant its token
#     names (the upstream answers 421 otherwise, which would be unexpected);
#   - resident memory flat: the mean of the last 10% of samples within 10%
#     (or 2 MiB) of the first 10%;
#   - no file descriptor growth between before and after the load.
#
# Installs nothing. Needs: wrk, nginx with the njs module (Debian:
# `apt-get install wrk nginx-light libnginx-mod-http-js`), curl, and the
# release binary (`cargo build --release`).
#
# Environment: DURATION=40 (seconds of load), CONNECTIONS=32, MIN_REQUESTS=100000,
# GATEWAY_BIN, NGINX_JS_MODULE.
set -euo pipefail

DURATION=${DURATION:-40}
CONNECTIONS=${CONNECTIONS:-32}
MIN_REQUESTS=${MIN_REQUESTS:-100000}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
SCRIPT_NAME=soak.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/cortex-gateway}

need_tools "wrk nginx-light libnginx-mod-http-js curl" wrk nginx curl awk
need_njs
need_gateway_bin
need_int DURATION 1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cortex-gateway-soak.XXXXXX")
chmod 755 "$WORK"

# ---------------------------------------------------------------- upstream
# Reads the whole body, then answers 200 only if X-Scope-OrgID is the tenant
# the client expects (X-Expected-Tenant travels end to end, untouched).
free_port UP_PORT
mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/upstream.js" <<'JS'
function handle(r) {
    var body = r.requestBuffer;
    var expected = r.headersIn['X-Expected-Tenant'];
    var tenant = r.headersIn['X-Scope-OrgID'];
    if (!expected || tenant !== expected) {
        r.return(421, 'tenant mismatch: got ' + tenant + ', expected ' + expected + '\n');
        return;
    }
    r.return(200, 'ok ' + (body ? body.length : 0) + '\n');
}
export default { handle };
JS
write_njs_upstream "$WORK/upstream" "$UP_PORT"
start_nginx "$WORK/upstream"
wait_for upstream 200 -H 'X-Expected-Tenant: t' -H 'X-Scope-OrgID: t' "http://127.0.0.1:$UP_PORT/"

# ---------------------------------------------------------------- gateway
free_port GW_PORT
free_port DEAD_PORT # nothing listens there: the fault route
cat >"$WORK/gateway.toml" <<TOML
[server]
http_listen_address = "127.0.0.1"
http_listen_port = $GW_PORT
workers = 2
graceful_shutdown_timeout = "2s"
[upstreams]
distributor = "http://127.0.0.1:$UP_PORT"
query_frontend = "http://127.0.0.1:$UP_PORT"
dead = "http://127.0.0.1:$DEAD_PORT"
[auth]
jwt_secret = "soak-secret-0123456789abcdef0123456789abcdef"
leeway = "0s"
[log]
level = "warn"
[[routes]]
prefix = "/api/v1/fault"
upstream = "dead"
TOML
cp "$GATEWAY_BIN" "$WORK/cortex-gateway"
GW=(env -u CORTEX_GATEWAY_CONFIG "$WORK/cortex-gateway")
"${GW[@]}" --config "$WORK/gateway.toml" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_for gateway 200 "http://127.0.0.1:$GW_PORT/health"

token() { "${GW[@]}" --config "$WORK/gateway.toml" token "$@"; }
TENANTS=(team-a team-b team-c team-d team-e team-f team-g team-h)
declare -A TOKENS
for tenant in "${TENANTS[@]}"; do
    TOKENS[$tenant]=$(token --tenant "$tenant")
done
EXPIRED=$(token --tenant team-x --expires-in 1s)
FORGED=$(CORTEX_GATEWAY__AUTH__JWT_SECRET=not-the-gateways-secret-0123456789 token --tenant team-a)
sleep 2 # let EXPIRED expire (leeway is 0 here)

# ---------------------------------------------------------------- requests
# One Lua table of ready-made requests, cycled by wrk: per tenant a query, a
# 2 KiB and a 64 KiB push; bad tokens on /prometheus/api/v1/query (401); a push
# to the dead upstream (502).
head -c 2048 /dev/urandom | base64 -w0 | head -c 2048 >"$WORK/body2k"
head -c 65536 /dev/urandom | base64 -w0 | head -c 65536 >"$WORK/body64k"
{
    # Built in init(): wrk sets the Host header only after the script loads.
    echo 'local requests = {}'
    echo 'local function add(method, path, headers, body) requests[#requests + 1] = wrk.format(method, path, headers, body) end'
    echo 'init = function(args)'
    echo 'local body2k = io.open("'"$WORK"'/body2k"):read("*a")'
    echo 'local body64k = io.open("'"$WORK"'/body64k"):read("*a")'
    for tenant in "${TENANTS[@]}"; do
        h="{[\"Authorization\"] = \"Bearer ${TOKENS[$tenant]}\", [\"X-Expected-Tenant\"] = \"$tenant\", [\"X-Scope-OrgID\"] = \"spoofed\"}"
        echo "add(\"GET\", \"/api/v1/query?query=up\", $h, nil)"
        echo "add(\"POST\", \"/api/v1/push\", $h, body2k)"
        echo "add(\"POST\", \"/api/v1/push\", $h, body64k)"
    done
    echo "add(\"GET\", \"/prometheus/api/v1/query?query=up\", {[\"Authorization\"] = \"Bearer $EXPIRED\"}, nil)"
    echo "add(\"GET\", \"/prometheus/api/v1/query?query=up\", {[\"Authorization\"] = \"Bearer $FORGED\"}, nil)"
    echo "add(\"GET\", \"/prometheus/api/v1/query?query=up\", {}, nil)"
    echo "add(\"POST\", \"/api/v1/fault\", {[\"Authorization\"] = \"Bearer ${TOKENS[team-a]}\"}, body2k)"
    echo 'end'
    echo 'local i = 0'
    echo 'request = function() i = i % #requests + 1; return requests[i] end'
} >"$WORK/soak.lua"

fds() { find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

log "warm-up (3 s)"
wrk -t1 -c"$CONNECTIONS" -d3s -s "$WORK/soak.lua" "http://127.0.0.1:$GW_PORT" >/dev/null
sleep 1
FDS_BEFORE=$(fds)

log "soak: ${DURATION}s, $CONNECTIONS connections, gateway PID $GW_PID"
: >"$WORK/rss"
(
    for ((n = 0; n < DURATION + 5; n++)); do
        status_kib VmRSS "$GW_PID" >>"$WORK/rss" 2>/dev/null || break
        sleep 1
    done
) &
SAMPLER=$!
PIDS+=("$SAMPLER")
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/soak.lua" "http://127.0.0.1:$GW_PORT" | tee "$WORK/wrk.txt"
stop_pid "$SAMPLER"
forget_pid "$SAMPLER"
sleep 2 # idle keep-alive connections from wrk are gone by now
FDS_AFTER=$(fds)

# ---------------------------------------------------------------- checks
curl -sS -m 10 "http://127.0.0.1:$GW_PORT/metrics" >"$WORK/metrics"
# route status count, for every (route, status) the gateway served
awk -F'[{}]' '/^cortex_gateway_request_duration_seconds_count/ {
    route = $2; sub(/.*route="/, "", route); sub(/".*/, "", route)
    status = $2; sub(/.*status_code="/, "", status); sub(/".*/, "", status)
    split($3, v, " "); print route, status, v[1]
}' "$WORK/metrics" | sort >"$WORK/statuses"

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
total=0
while read -r route status count; do
    case "$route $status" in
        "api 200" | "api_v1_push 200" | "prometheus 401" | "api_v1_fault 502" | "health 200") ;;
        *) fail "unexpected status $status on route $route ($count requests)" ;;
    esac
    [[ $route == health ]] || total=$((total + ${count%.*}))
done <"$WORK/statuses"
echo "requests by route and status:"
sed 's/^/  /' "$WORK/statuses"
((total >= MIN_REQUESTS)) || fail "only $total requests (want at least $MIN_REQUESTS: raise DURATION)"

read -r rss_first rss_last samples < <(awk '{ v[NR] = $1 } END {
    k = int(NR / 10); if (k < 1) k = 1
    for (i = 1; i <= k; i++) { a += v[i]; b += v[NR - k + i] }
    print int(a / k), int(b / k), NR }' "$WORK/rss")
growth=$((rss_last - rss_first))
allowed=$((rss_first / 10 > 2048 ? rss_first / 10 : 2048))
((growth <= allowed)) || fail "RSS grew from $rss_first KiB to $rss_last KiB (allowed +$allowed KiB)"
((FDS_AFTER <= FDS_BEFORE)) || fail "open file descriptors grew from $FDS_BEFORE to $FDS_AFTER"

echo
echo "soak summary: $total requests (warm-up included) in ${DURATION}s + 3s; RSS first 10% ${rss_first} KiB, last 10% ${rss_last} KiB ($samples samples);" \
    "fds before $FDS_BEFORE, after $FDS_AFTER; a wrong tenant upstream would show as status 421 above"
if ((failures > 0)); then
    echo "soak: FAILED ($failures)"
    exit 1
fi
echo "soak: OK"
