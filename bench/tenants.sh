#!/usr/bin/env bash
# Memory with many tenants (issue 16): 100,000 distinct tenants, each with its
# own token, seen over time, with `metrics.per_tenant` off and on.
#
# Why: the gateway keeps two things per token or tenant it has seen. The
# verified-token cache (src/auth/cache.rs) holds up to 4096 tokens per worker
# thread and then starts over, so it must stay bounded however many tokens
# arrive. With `metrics.per_tenant = true` the success counter carries a
# `tenant` label, one series per tenant ever seen, kept for the life of the
# process: that growth is expected, and this script measures what each tenant
# costs in RSS and in the /metrics exposition, so that the README can say when
# to turn it off.
#
# What it does, for per_tenant = false and then true, each on a fresh gateway
# (`server.workers = 2`) in front of the same upstream (bench/lib.sh's NGINX +
# njs, as in bench/compare.sh):
#   - a 2 s warm-up with one token (wrk, C connections), one scrape;
#   - pass 1: tenants t-000000 … t-099999 in waves of WAVE (10,000) tenants,
#     every tenant's token sent exactly once (a Python client, C keep-alive
#     connections, one request at a time on each);
#   - pass 2: the same tenants again, each with a NEW token (another `iat`), so
#     200,000 distinct tokens reach the gateway in all;
#   - after a warm-up and after each wave, SETTLE seconds later: the gateway's
#     VmRSS, RssAnon and VmHWM (/proc/PID/status), then one scrape of /metrics:
#     its size in bytes, its series (sample lines) and how many of them are
#     `cortex_gateway_succeeded_authentications_total` (one per tenant when on),
#     and RSS again after the scrape. Rendering 100,000 series allocates tens
#     of MiB for a moment, and glibc keeps much of it: SCRAPE=end leaves the
#     scrapes out but the last of each pass, to tell the series' own cost from
#     what a scrape leaves behind.
# Then a table: tenants seen -> RSS off / on, and the per-tenant cost:
# (RSS on - RSS off) / tenants, and the slope of RSS on over pass 1.
#
# Tokens are HS256 JWTs (tenant_id, version 0, iat, exp in 1 day), as
# `cortex-gateway token` mints them, signed with Python's stdlib hmac (no
# PyJWT needed), written to the temporary directory.
#
# Installs nothing. Needs: wrk, nginx with the njs module (Debian: `apt-get
# install wrk nginx-light libnginx-mod-http-js`), python3, curl and the release
# binary (`cargo build --release`). About 2 minutes.
#
# Usage:  bench/tenants.sh
# Environment:
#   TENANTS=100000  distinct tenants
#   WAVE=10000      tenants per wave (TENANTS must be a multiple)
#   PASSES=2        passes over all tenants, each with new tokens
#   MODES="false true"   values of metrics.per_tenant to measure, in order
#   C=8             wrk connections
#   SETTLE=1        seconds between the end of a wave and the readings
#   SCRAPE=each     scrape /metrics after each wave; "end": only after the
#                   last wave of each pass (RSS without the scrapes' buffers)
#   GATEWAY_BIN=... default: target/release/cortex-gateway
#   GATEWAY_EXTRA_ENV="K=V ..."  more environment for the gateway
#   NGINX_JS_MODULE=...  default: /usr/lib/nginx/modules/ngx_http_js_module.so
#   RESULTS=...     also append the readings (JSON lines) to this file
#
# Everything listens on 127.0.0.1 on free ports, under a temporary prefix that
# is removed on exit; every process started here is stopped by PID on exit.
set -euo pipefail

TENANTS=${TENANTS:-100000}
WAVE=${WAVE:-10000}
PASSES=${PASSES:-2}
MODES=${MODES:-"false true"}
C=${C:-8}
SETTLE=${SETTLE:-1}
SCRAPE=${SCRAPE:-each}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/cortex-gateway}

SCRIPT_NAME=tenants.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need_tools "wrk nginx-light libnginx-mod-http-js curl python3" wrk nginx curl python3 timeout sha256sum
need_njs
need_gateway_bin
need_int TENANTS 1
need_int WAVE 1
((TENANTS % WAVE == 0)) || die "TENANTS ($TENANTS) must be a multiple of WAVE ($WAVE)"
[[ $PASSES =~ ^[1-9]$ ]] || die "PASSES must be 1..9"
need_int C 1
need_int SETTLE 0
[[ $SCRAPE == each || $SCRAPE == end ]] || die "SCRAPE must be each or end"
for m in $MODES; do
    case $m in true | false) ;; *) die "MODES: $m is not true or false" ;; esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cortex-gateway-tenants.XXXXXX")
# NGINX workers started by root run as nobody and must reach their temp paths.
chmod 755 "$WORK"
SECRET="bench-secret-0123456789abcdef0123456789abcdef"

# ---------------------------------------------------------------- tokens
# One file per pass, line i = the token of tenant t-<i>.
cat >"$WORK/mint.py" <<'PY'
"""HS256 tokens for tenants t-000000 ... ; one per line."""
import base64, hashlib, hmac, json, sys, time

secret, count, iat, out = sys.argv[1].encode(), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
with open(out, "w") as f:
    for i in range(count):
        claims = {"tenant_id": f"t-{i:06d}", "version": 0, "iat": iat, "exp": iat + 86400}
        signing_input = head + b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        f.write((signing_input + b"." + sig).decode() + "\n")
PY
NOW=$(date +%s)
for ((p = 1; p <= PASSES; p++)); do
    # another iat per pass: the same tenants, new tokens
    python3 "$WORK/mint.py" "$SECRET" "$TENANTS" "$((NOW + p))" "$WORK/tokens-$p.txt"
done
log "minted $PASSES x $TENANTS tokens ($(head -c 400 "$WORK/tokens-1.txt" | head -n1 | wc -c) bytes each)"

# ---------------------------------------------------------------- load
# The client: one Python process (stdlib: non-blocking sockets, selectors), C
# keep-alive connections, one request at a time on each. It sends each token
# of the wave exactly once (token i on connection i mod C), reads every
# response whole, and prints one line: responses and their statuses. (wrk
# cannot stop after a number of requests: its main thread sleeps for -d.)
cat >"$WORK/load.py" <<'PY'
"""GET /api/v1/query once with each token of a slice of a token file."""
import json, selectors, socket, sys

port, path, first, count, conns = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                   int(sys.argv[4]), int(sys.argv[5]))
with open(path) as f:
    tokens = [line.strip() for i, line in enumerate(f) if first <= i < first + count]
if len(tokens) != count:
    sys.exit(f"load.py: {path} has {len(tokens)} tokens from {first}, not {count}")


def request(token):
    return (f"GET /api/v1/query?query=up HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nUser-Agent: bench-tenants\r\n\r\n").encode()


def complete(buf):
    """The status and the bytes used, once a whole response is in buf."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].split(b"\r\n")
    length = 0
    for line in head[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
        elif k.strip().lower() == b"transfer-encoding":
            sys.exit("load.py: chunked responses are not expected from this upstream")
    if len(buf) < end + 4 + length:
        return None
    return int(head[0].split()[1]), end + 4 + length


sel = selectors.DefaultSelector()
statuses = {}
for c in range(min(conns, count)):
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    queue = tokens[c::conns]
    state = {"sock": s, "queue": queue, "next": 1, "buf": b""}
    s.sendall(request(queue[0]))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, state)
while sel.get_map():
    events = sel.select(30)
    if not events:
        sys.exit("load.py: no response for 30 s")
    for key, _ in events:
        st = key.data
        data = st["sock"].recv(65536)
        if not data:
            sys.exit("load.py: the gateway closed a connection")
        st["buf"] += data
        done = complete(st["buf"])
        if done is None:
            continue
        status, used = done
        statuses[status] = statuses.get(status, 0) + 1
        st["buf"] = st["buf"][used:]
        if st["next"] < len(st["queue"]):
            st["sock"].setblocking(True)
            st["sock"].sendall(request(st["queue"][st["next"]]))
            st["sock"].setblocking(False)
            st["next"] += 1
        else:
            sel.unregister(st["sock"])
            st["sock"].close()
print(json.dumps({"responses": sum(statuses.values()), "statuses": statuses}))
PY

# While a scrape renders, a probe asks /health over and over, each time on a
# new connection (so that both workers get some), and reports the slowest
# answer: what a client of the gateway waits for while /metrics renders.
cat >"$WORK/probe.py" <<'PY'
"""Asks /health until STOP exists; prints the slowest answer in ms."""
import json, os, socket, sys, time

port, stop = int(sys.argv[1]), sys.argv[2]
worst, probes = 0.0, 0
while not os.path.exists(stop):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    worst = max(worst, time.monotonic() - started)
    probes += 1
    time.sleep(0.005)
print(json.dumps({"worst_ms": round(worst * 1000, 1), "probes": probes}))
PY

# ---------------------------------------------------------------- servers
start_upstream

gateway_env "$SECRET"
# Run a private copy: a `cargo build` elsewhere during the run cannot swap it.
cp "$GATEWAY_BIN" "$WORK/cortex-gateway"
GATEWAY_SHA=$(sha256sum "$WORK/cortex-gateway" | cut -c1-16)
WARM_TOKEN=$("${GATEWAY_ENV[@]}" "$WORK/cortex-gateway" token --tenant warm-up) ||
    die "could not mint a token"

# reading LABEL PASS TENANTS_SEEN TOKENS_SEEN [SCRAPE] : one JSON line to
# $READINGS; RSS before and after a scrape of /metrics, unless SCRAPE=0.
reading() {
    local label=$1 pass=$2 seen=$3 tokens=$4 scrape=${5:-1} rss anon hwm rss2=0
    local bytes=0 series=0 tenant_series=0 scrape_s=0 health_ms=0 probe
    rss=$(status_kib VmRSS "$GW_PID")
    anon=$(status_kib RssAnon "$GW_PID")
    if ((scrape)); then
        rm -f "$WORK/probe.stop"
        python3 "$WORK/probe.py" "$GW_PORT" "$WORK/probe.stop" >"$WORK/probe.json" &
        probe=$!
        PIDS+=("$probe")
        sleep 0.2
        scrape_s=$(curl -sS -m 60 -o "$WORK/metrics.txt" -w '%{time_total}' "http://127.0.0.1:$GW_PORT/metrics") ||
            die "/metrics did not answer"
        touch "$WORK/probe.stop"
        wait "$probe" || die "the /health probe failed"
        forget_pid "$probe"
        health_ms=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["worst_ms"])' "$WORK/probe.json")
        bytes=$(wc -c <"$WORK/metrics.txt")
        series=$(grep -vc '^#' "$WORK/metrics.txt" || true)
        tenant_series=$(grep -c '^cortex_gateway_succeeded_authentications_total{' "$WORK/metrics.txt" || true)
        rss2=$(status_kib VmRSS "$GW_PID")
    fi
    hwm=$(status_kib VmHWM "$GW_PID")
    printf '{"per_tenant":%s,"label":"%s","pass":%d,"tenants":%d,"tokens":%d,"rss":%d,"anon":%d,"hwm":%d,"scraped":%d,"rss_after_scrape":%d,"metrics_bytes":%d,"series":%d,"tenant_series":%d,"scrape_s":%s,"health_worst_ms":%s}\n' \
        "$PER_TENANT" "$label" "$pass" "$seen" "$tokens" "$rss" "$anon" "$hwm" "$scrape" "$rss2" "$bytes" "$series" "$tenant_series" "$scrape_s" "$health_ms" >>"$READINGS"
    log "per_tenant=$PER_TENANT $label: $seen tenants, $tokens tokens: RSS $rss KiB (anon $anon), after scrape $rss2 KiB, HWM $hwm; /metrics $bytes bytes, $series series ($tenant_series tenant), scrape ${scrape_s}s, slowest /health meanwhile ${health_ms} ms"
}

READINGS=$WORK/readings.jsonl
: >"$READINGS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
for PER_TENANT in $MODES; do
    free_port GW_PORT
    "${GATEWAY_ENV[@]}" CORTEX_GATEWAY__METRICS__PER_TENANT="$PER_TENANT" "$WORK/cortex-gateway" \
        -server.http-listen-address=127.0.0.1 -server.http-listen-port="$GW_PORT" \
        -log.level=warn >"$WORK/gateway-$PER_TENANT.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_for gateway 200 -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$GW_PORT/api/v1/query?query=up"
    # Warm-up: C connections, one token, 2 s: worker threads, upstream pools
    # and the allocator's arenas in use, so "start" holds what does not depend
    # on the number of tenants.
    timeout 30 wrk -t1 -c"$C" -d2s -H "Authorization: Bearer $WARM_TOKEN" \
        "http://127.0.0.1:$GW_PORT/api/v1/query?query=up" >"$WORK/warm-$PER_TENANT.txt" 2>&1 &
    client=$!
    PIDS+=("$client")
    wait "$client" || die "warm-up failed: $(cat "$WORK/warm-$PER_TENANT.txt")"
    forget_pid "$client"
    # The first scrape creates the series of /metrics' own requests: one
    # before "start", so that later readings differ by tenants only.
    curl -sS -m 30 -o /dev/null "http://127.0.0.1:$GW_PORT/metrics" || die "/metrics did not answer"
    sleep "$SETTLE"
    reading start 0 0 0
    tokens_seen=0
    for ((p = 1; p <= PASSES; p++)); do
        for ((first = 0; first < TENANTS; first += WAVE)); do
            out=$WORK/wave-$PER_TENANT-$p-$first.json
            # in the background and waited for: a signal's trap runs at once
            timeout 300 python3 "$WORK/load.py" "$GW_PORT" "$WORK/tokens-$p.txt" "$first" "$WAVE" "$C" \
                >"$out" &
            client=$!
            PIDS+=("$client")
            wait "$client" || die "the client failed (exit $?) in pass $p, tenants from $first"
            forget_pid "$client"
            grep -q "^{\"responses\": $WAVE, \"statuses\": {\"200\": $WAVE}}\$" "$out" ||
                die "pass $p, tenants from $first: not $WAVE responses of 200: $(cat "$out")"
            tokens_seen=$((tokens_seen + WAVE))
            seen=$((p == 1 ? first + WAVE : TENANTS))
            sleep "$SETTLE"
            scrape=1
            [[ $SCRAPE == end ]] && ((first + WAVE < TENANTS)) && scrape=0
            reading "pass $p" "$p" "$seen" "$tokens_seen" "$scrape"
        done
    done
    grep -q '^cortex_gateway_succeeded_authentications_total' "$WORK/metrics.txt" ||
        die "no success counter in /metrics"
    stop_pid "$GW_PID"
    forget_pid "$GW_PID"
done
ELAPSED=$((SECONDS - T0))
[[ -n ${RESULTS:-} ]] && cat "$READINGS" >>"$RESULTS"

# ---------------------------------------------------------------- report
cat >"$WORK/report.py" <<'PY'
"""Markdown tables from the readings of bench/tenants.sh."""
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by_mode = {}
for r in rows:
    by_mode.setdefault(r["per_tenant"], []).append(r)
off, on = by_mode.get(False, []), by_mode.get(True, [])
mib = lambda k: f"{k / 1024:.1f}"
n = max(len(off), len(on))

print("| pass | tenants seen | tokens seen | RSS MiB, per_tenant off | RSS MiB, on | "
      "RSS MiB after the scrape, on | /metrics series off / on | /metrics KiB off / on | scrape ms on |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
def cell(r, fmt):
    return fmt(r) if r else "-"


for i in range(n):
    a = off[i] if i < len(off) else None
    b = on[i] if i < len(on) else None
    r = a or b
    series = lambda x: str(x["series"]) if x["scraped"] else "-"
    kib = lambda x: f"{x['metrics_bytes'] / 1024:.0f}" if x["scraped"] else "-"
    ms = lambda x: f"{float(x['scrape_s']) * 1000:.0f}" if x["scraped"] else "-"
    after = lambda x: mib(x["rss_after_scrape"]) if x["scraped"] else "-"
    print(f"| {r['pass'] or 'start'} | {r['tenants']:,} | {r['tokens']:,} | "
          f"{cell(a, lambda x: mib(x['rss']))} | {cell(b, lambda x: mib(x['rss']))} | {cell(b, after)} | "
          f"{cell(a, series)} / {cell(b, series)} | {cell(a, kib)} / {cell(b, kib)} | "
          f"{cell(b, ms)} |")
print()
if off:
    first_wave = off[1]["rss"] if len(off) > 1 else off[0]["rss"]
    peak = max(r["rss"] for r in off[1:]) if len(off) > 1 else off[0]["rss"]
    print(f"per_tenant off: RSS at start {mib(off[0]['rss'])} MiB, after the first wave "
          f"{mib(first_wave)} MiB, highest after any wave {mib(peak)} MiB, after the last "
          f"{mib(off[-1]['rss'])} MiB (last/first wave {off[-1]['rss'] / first_wave:.2f}); "
          f"VmHWM {mib(off[-1]['hwm'])} MiB; /metrics {off[-1]['series']} series throughout "
          f"({min(r['series'] for r in off if r['scraped'])}..{max(r['series'] for r in off if r['scraped'])}).")
if on:
    pass1 = [r for r in on if r["pass"] <= 1 and r["scraped"]]
    last1 = pass1[-1]
    slope = (last1["rss"] - on[0]["rss"]) / last1["tenants"]
    print(f"per_tenant on: RSS {mib(on[0]['rss'])} MiB at start, {mib(last1['rss'])} MiB after "
          f"{last1['tenants']:,} tenants, {mib(on[-1]['rss'])} MiB after the last wave; VmHWM "
          f"{mib(on[-1]['hwm'])} MiB. Slope over pass 1: {slope:.2f} KiB per tenant.")
    print(f"per_tenant on: /metrics grows by "
          f"{(last1['metrics_bytes'] - on[0]['metrics_bytes']) / last1['tenants']:.0f} bytes and "
          f"{(last1['series'] - on[0]['series']) / last1['tenants']:.2f} series per tenant "
          f"({last1['tenant_series']:,} tenant series, {last1['metrics_bytes'] / 1048576:.1f} MiB, "
          f"scraped in {float(last1['scrape_s']) * 1000:.0f} ms; the slowest /health answer meanwhile took "
          f"{last1.get('health_worst_ms', 0)} ms).")
if off and on and len(off) == len(on):
    end1 = max(i for i, r in enumerate(on) if r["pass"] <= 1)
    cost = (on[end1]["rss"] - off[end1]["rss"]) / on[end1]["tenants"]
    cost_last = (on[-1]["rss"] - off[-1]["rss"]) / on[-1]["tenants"]
    print(f"per tenant, on minus off: {cost:.2f} KiB after pass 1, {cost_last:.2f} KiB after the "
          f"last wave ({on[-1]['tenants']:,} tenants).")
PY
echo
python3 "$WORK/report.py" "$READINGS"
echo
echo "TENANTS=$TENANTS WAVE=$WAVE PASSES=$PASSES C=$C SETTLE=$SETTLE SCRAPE=$SCRAPE;" \
    "gateway binary sha256 $GATEWAY_SHA…, server.workers=2${GATEWAY_EXTRA_ENV:+, $GATEWAY_EXTRA_ENV};" \
    "${ELAPSED}s; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
