#!/usr/bin/env bash
# Memory per idle keep-alive connection, NGINX and the gateway side by side.
#
# For each proxy: a warm-up (WARMUP connections opened WINDOW at a time, one
# request each, then all closed),
# then "RSS before"; then a wave of N client connections, each of which sends
# ONE authenticated `GET /api/v1/query?query=up` (`Authorization: Bearer
# <token>`), reads the whole response and then stays open and idle. With all N
# idle the proxy's RSS is read again: KiB per idle connection = (RSS with N
# idle - RSS before) / N. RSS is also read when the first N/2 are idle: the
# "second half" figure, (RSS with N idle - RSS with N/2 idle) / (N - N/2), is
# what a connection adds while the proxy is serving, whatever the warm-up left
# resident or the allocator gave back before the wave (the gateway trims the
# allocator every 5 s after closes, NGINX never does; BENCHMARKS.md, Scale,
# fifth round). Then the client closes all N, waits SETTLE seconds
# and reads "RSS after close"; a second wave does the same again. The ratio
# to start is RSS after close / RSS before (issue 16: within 25%, <= 1.25).
#
# NGINX allocates every connection slot (worker_connections, per worker) at
# start-up, so its "before" already holds what a connection needs; the script
# also reads a reference NGINX with a stock 1024 slots after the same warm-up
# and reports NGINX "all-in": (RSS with N idle - that baseline) / N.
#
# RSS is VmRSS from /proc/PID/status, summed over the proxy's processes: the
# NGINX master and its 2 workers; the gateway's one process (2 workers).
# Socket buffers live in the kernel and are not in any RSS.
#
# The client is one Python 3 process (stdlib only: non-blocking sockets and
# selectors), written to the temporary directory; it reads /proc itself, so
# that RSS is read the moment the last connection has gone idle.
#
# Installs nothing. Needs: nginx with the njs module (Debian: `apt-get install
# nginx-light libnginx-mod-http-js`), python3, prlimit, curl and the release
# binary (`cargo build --release`).
#
# Usage:  bench/idle.sh
# Environment:
#   N=5000          idle connections per wave
#   WAVES=2         waves per proxy
#   TARGETS="nginx gateway"
#   WINDOW=64       connections being opened or waiting for their response at
#                   once
#   WARMUP=1000     connections of the warm-up, opened like a wave's (at least
#                   WINDOW): pools that grow with concurrency (the gateway's
#                   upstream connections and actix-web's used requests; NGINX's
#                   upstream keep-alive) then reach the size a wave gives them
#                   before "RSS before" is read, so that a connection's figure
#                   is what the connection holds. WARMUP=64 (= WINDOW) was the
#                   warm-up of the rounds before the fifth (BENCHMARKS.md)
#   SETTLE=3        seconds between closing a wave and reading RSS after close
#                   (and before the next wave opens); RSS is also sampled every
#                   second meanwhile (`after_by_s` in RESULTS). To see the
#                   upstream pool shrink, make it longer than the gateway's
#                   proxy.idle_connection_timeout plus half of it (the reaper's
#                   period), e.g. SETTLE=15 with GATEWAY_EXTRA_ENV=
#                   CORTEX_GATEWAY__PROXY__IDLE_CONNECTION_TIMEOUT=5s
#   BEFORE_SETTLE=  seconds between the warm-up and reading RSS before (default
#                   SETTLE/2, at least 6: the gateway trims the allocator
#                   within 5 s once a few hundred connections have closed, the
#                   warm-up's among them, so "before" and the wave find it
#                   trimmed; read sooner, "before" still holds the warm-up's
#                   freed memory, which the wave then reuses, and a trim may
#                   fall inside the wave); set it to SETTLE so that "before"
#                   and "after close" find the upstream pool in the same state
#   HOLD=0          seconds to keep a wave open after RSS was read (counts the
#                   connections the proxy closes on its own in that time)
#   TLS=0           1: both proxies serve HTTPS (a self-signed P-256
#                   certificate made with openssl) and every client connection
#                   does a full TLS handshake before its request
#   GATEWAY_BIN=... default: target/release/cortex-gateway
#   GATEWAY_EXTRA_ENV="K=V ..."  more environment for the gateway (e.g. glibc
#                   malloc settings: MALLOC_ARENA_MAX=1)
#   NGINX_JS_MODULE=...  default: /usr/lib/nginx/modules/ngx_http_js_module.so
#   RESULTS=...     also append the measurements (JSON lines) to this file
#
# Everything listens on 127.0.0.1 on free ports, under a temporary prefix that
# is removed on exit; every process started here is stopped by PID on exit.
set -euo pipefail

N=${N:-5000}
WAVES=${WAVES:-2}
TARGETS=${TARGETS:-"nginx gateway"}
WINDOW=${WINDOW:-64}
WARMUP=${WARMUP:-1000}
SETTLE=${SETTLE:-3}
HOLD=${HOLD:-0}
BEFORE_SETTLE=${BEFORE_SETTLE:--1}
TLS=${TLS:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/cortex-gateway}

SCRIPT_NAME=idle.sh
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need_tools "nginx-light libnginx-mod-http-js curl python3 util-linux" nginx curl python3 prlimit timeout
need_njs
need_int N 1
[[ $WAVES =~ ^[1-9]$ ]] || die "WAVES must be 1..9"
need_int WINDOW 1
need_int WARMUP "$WINDOW"
need_int SETTLE 0
need_int HOLD 0
[[ $BEFORE_SETTLE == -1 ]] || need_int BEFORE_SETTLE 0
[[ $TLS == 0 || $TLS == 1 ]] || die "TLS must be 0 or 1"
((TLS == 0)) || need_tools openssl openssl
for t in $TARGETS; do
    case $t in nginx) ;; gateway) need_gateway_bin ;; *) die "unknown target $t (nginx, gateway)" ;; esac
done

# ---------------------------------------------------------------- file limits
# N client sockets in the client, N accepted sockets in one proxy process (an
# NGINX worker may accept nearly all of them), plus upstream connections. The
# limit is raised for this shell, so the client and both proxies inherit it;
# the proxies are also started under prlimit / worker_rlimit_nofile.
NOFILE=$((N + 4096))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < NOFILE)); then
    ulimit -Hn "$NOFILE" 2>/dev/null ||
        die "N=$N needs $NOFILE open files, the hard limit is $hard (lower N or raise it: ulimit -Hn)"
fi
ulimit -Sn "$NOFILE"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cortex-gateway-idle.XXXXXX")
# NGINX workers started by root run as nobody and must reach their temp paths.
chmod 755 "$WORK"

# ---------------------------------------------------------------- the client
cat >"$WORK/idle_client.py" <<'PY'
"""Idle keep-alive connections against one proxy; prints one JSON line."""
import argparse, errno, json, os, resource, selectors, socket, ssl, sys, time

p = argparse.ArgumentParser()
p.add_argument("--label", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--token", required=True)
p.add_argument("--pids", required=True, help="comma-separated PIDs whose RSS is summed")
p.add_argument("--n", type=int, required=True)
p.add_argument("--waves", type=int, default=2)
p.add_argument("--window", type=int, default=64)
p.add_argument("--warmup", type=int, default=1000)
p.add_argument("--settle", type=float, default=3)
p.add_argument("--hold", type=float, default=0)
p.add_argument("--before-settle", type=float, default=-1,
               help="seconds between the warm-up and reading RSS before; default max(6, settle/2)")
p.add_argument("--deadline", type=float, default=40, help="seconds per wave, at most")
p.add_argument("--tls", action="store_true", help="a TLS handshake on each connection first")
a = p.parse_args()

TLS_CONTEXT = None
if a.tls:  # the proxies' certificate is self-signed: encryption, no verification
    TLS_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    TLS_CONTEXT.check_hostname = False
    TLS_CONTEXT.verify_mode = ssl.CERT_NONE

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = hard
if soft != resource.RLIM_INFINITY and soft < a.n + 64:
    sys.exit(f"idle_client: {a.n} connections need {a.n + 64} open files, the limit is {soft}")

PIDS = [int(x) for x in a.pids.split(",") if x]
ADDR = ("127.0.0.1", a.port)
REQUEST = (f"GET /api/v1/query?query=up HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
           f"Authorization: Bearer {a.token}\r\nUser-Agent: bench-idle\r\n\r\n").encode()


def proc_kib(path_fmt, key):
    total = 0
    for pid in PIDS:
        with open(path_fmt % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
                    break
    return total


def memory():
    m = {"rss": proc_kib("/proc/%d/status", "VmRSS"),
         "data": proc_kib("/proc/%d/status", "VmData"),
         "fds": sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in PIDS)}
    try:  # where the RSS is: anonymous (heap, stacks) or file-backed
        m["anon"] = proc_kib("/proc/%d/smaps_rollup", "Anonymous")
    except OSError:
        m["anon"] = None
    return m


CONNECTING, HANDSHAKE, READING, IDLE = 0, 1, 2, 3


class Conn:
    __slots__ = ("sock", "state", "buf", "since")

    def __init__(self, sock):
        self.sock, self.state, self.buf, self.since = sock, CONNECTING, b"", time.monotonic()


def read_available(s):
    """The bytes readable now, and whether the peer has closed."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return data, False
        if not chunk:
            return data, True
        data += chunk


def response_complete(buf):
    """(status, complete?) of an HTTP/1.1 response read so far; None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip().lower()
    body = buf[end + 4:]
    if "chunked" in headers.get("transfer-encoding", ""):
        return status if body.endswith(b"0\r\n\r\n") else None
    if "content-length" in headers:
        return status if len(body) >= int(headers["content-length"]) else None
    if status in (204, 304) or 100 <= status < 200:
        return status
    return -1  # body until close: no keep-alive


class Wave:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.idle = 0
        self.failed = {}
        self.statuses = {}
        self.server_closed = 0

    def fail(self, c, why):
        self.failed[why] = self.failed.get(why, 0) + 1
        self.sel.unregister(c.sock)
        c.sock.close()

    def send_request(self, c):
        """Handshakes (with TLS) as far as it goes now, then sends the
        request; False if the connection failed."""
        try:
            if c.state == HANDSHAKE:
                c.sock.do_handshake()
            c.sock.sendall(REQUEST)  # small: fits an empty socket buffer
        except ssl.SSLWantReadError:
            self.sel.modify(c.sock, selectors.EVENT_READ, c)
            return True
        except ssl.SSLWantWriteError:
            self.sel.modify(c.sock, selectors.EVENT_WRITE, c)
            return True
        except OSError as e:
            self.fail(c, f"send: {e.strerror or e}")
            return False
        c.state = READING
        self.sel.modify(c.sock, selectors.EVENT_READ, c)
        return True

    def events(self, timeout):
        """Handles ready sockets; returns how many left the in-flight window."""
        done = 0
        for key, ev in self.sel.select(timeout):
            c = key.data
            s = c.sock
            if c.state == CONNECTING:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.fail(c, "connect: " + os.strerror(err))
                    done += 1
                    continue
                if TLS_CONTEXT:
                    self.sel.unregister(s)
                    c.sock = TLS_CONTEXT.wrap_socket(s, do_handshake_on_connect=False)
                    c.state = HANDSHAKE
                    self.sel.register(c.sock, selectors.EVENT_WRITE, c)
                if not self.send_request(c):
                    done += 1
                continue
            if c.state == HANDSHAKE:
                if not self.send_request(c):
                    done += 1
                continue
            try:
                data, closed = read_available(s)
            except OSError as e:
                if c.state == READING:
                    self.fail(c, f"recv: {e.strerror or e}")
                    done += 1
                    continue
                data, closed = b"", True  # a reset idle connection: closed too
            if c.state == READING:
                c.buf += data
                status = response_complete(c.buf)
                if status is None:
                    if closed:
                        self.fail(c, "closed before the response")
                        done += 1
                    continue
                self.statuses[status] = self.statuses.get(status, 0) + 1
                done += 1
                if status != 200:
                    self.fail(c, f"status {status}")
                    continue
                c.state, c.buf, c.since = IDLE, b"", time.monotonic()
                self.idle += 1
            elif closed or data:  # an idle connection: the proxy closed it
                self.server_closed += 1
                self.idle -= 1
                self.sel.unregister(s)
                s.close()
        return done

    def open(self, n, window, deadline):
        t0 = time.monotonic()
        started = inflight = 0
        while (started < n or inflight) and time.monotonic() - t0 < deadline:
            while started < n and inflight < window:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                started += 1
                err = s.connect_ex(ADDR)
                if err not in (0, errno.EINPROGRESS):
                    self.failed["connect: " + os.strerror(err)] = self.failed.get("connect: " + os.strerror(err), 0) + 1
                    s.close()
                    continue
                self.sel.register(s, selectors.EVENT_WRITE, Conn(s))
                inflight += 1
            inflight -= self.events(0.5)
        stuck = [k.data for k in list(self.sel.get_map().values()) if k.data.state != IDLE]
        for c in stuck:
            self.fail(c, "no response within the deadline")
        return time.monotonic() - t0

    def close_all(self):
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()
        self.idle = 0
        self.sel.close()

    def oldest_idle(self):
        now = time.monotonic()
        return max((now - k.data.since for k in self.sel.get_map().values()), default=0)


def settle(seconds):
    """Sleeps `seconds`; returns the RSS (KiB) read at each whole second."""
    t0, series = time.monotonic(), []
    for k in range(1, int(seconds) + 1):
        time.sleep(max(0.0, t0 + k - time.monotonic()))
        series.append(memory()["rss"])
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    return series


out = {"label": a.label, "n": a.n, "window": a.window, "warmup": a.warmup, "settle": a.settle, "waves": []}

# Warm-up: workers, upstream pools and allocator arenas as they are under the
# same concurrency, so that "before" holds what does not depend on N.
w = Wave()
w.open(a.warmup, a.window, a.deadline)
warm_ok = w.idle
w.close_all()
if warm_ok != a.warmup:
    sys.exit(f"idle_client: warm-up: {warm_ok} of {a.warmup} requests answered 200 "
             f"(statuses {w.statuses}, failures {w.failed})")
out["before_by_s"] = settle(a.before_settle if a.before_settle >= 0 else max(6.0, a.settle / 2))
out["before"] = memory()

for i in range(a.waves):
    w = Wave()
    # Read at N/2 as well: what the second half adds is what a connection
    # costs, whatever the warm-up left resident or the allocator gave back.
    ramp = w.open(a.n // 2, a.window, a.deadline / 2)
    w.events(0.2)
    half_mem, open_at_half = memory(), w.idle
    ramp += w.open(a.n - a.n // 2, a.window, a.deadline / 2)
    w.events(0.2)  # any close that was already on its way
    idle_mem = memory()
    rec = {"ramp_s": round(ramp, 2), "open_at_read": w.idle,
           "oldest_idle_s": round(w.oldest_idle(), 2), "idle": idle_mem,
           "open_at_half": open_at_half, "half": half_mem,
           "statuses": w.statuses, "failed": w.failed}
    if a.hold > 0:
        closed_before = w.server_closed
        t_end = time.monotonic() + a.hold
        while time.monotonic() < t_end and w.idle:
            w.events(min(0.5, max(0.0, t_end - time.monotonic())))
        rec["hold_s"] = a.hold
        rec["closed_by_proxy_in_hold"] = w.server_closed - closed_before
    rec["closed_by_proxy"] = w.server_closed
    w.close_all()
    rec["after_by_s"] = settle(a.settle)
    rec["after"] = memory()
    out["waves"].append(rec)
    print(f"idle_client: {a.label} wave {i + 1}: {rec['open_at_read']} open after {ramp:.2f} s, "
          f"RSS {out['before']['rss']} -> {idle_mem['rss']} -> {rec['after']['rss']} KiB, "
          f"fds {out['before']['fds']} -> {idle_mem['fds']} -> {rec['after']['fds']}, "
          f"failures {w.failed or 0}, closed by the proxy {w.server_closed}", file=sys.stderr)

print(json.dumps(out))
PY

cat >"$WORK/report.py" <<'PY'
"""Markdown tables from the JSON lines of idle_client.py."""
import json, sys

lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
runs = [r for r in lines if r["label"] != "nginx-baseline"]
baseline = next((r for r in lines if r["label"] == "nginx-baseline"), None)
fmt = lambda k: "-" if k is None else f"{k:.1f}"
mib = lambda k: f"{k / 1024:.1f}"


def per_conn(r, wave, key="rss"):
    w = r["waves"][wave]
    if r["before"][key] is None or not w["open_at_read"]:
        return None
    return (w["idle"][key] - r["before"][key]) / w["open_at_read"]


def second_half(r, wave):
    """KiB per connection that the second N/2 of a wave added."""
    w = r["waves"][wave]
    added = w["open_at_read"] - w["open_at_half"]
    return (w["idle"]["rss"] - w["half"]["rss"]) / added if added > 0 else None


print("| target | N | RSS before MiB | RSS with N idle MiB | KiB per idle conn | "
      "KiB per idle conn, second half (waves 1…n) | RSS after close (waves 1…n) MiB | ratio to start |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
kib, halves = {}, {}
for r in runs:
    b = r["before"]["rss"]
    w1 = r["waves"][0]
    kib[r["label"]] = per_conn(r, 0)
    halves[r["label"]] = [second_half(r, i) for i in range(len(r["waves"]))]
    after = ", ".join(mib(w["after"]["rss"]) for w in r["waves"])
    ratio = ", ".join(f"{w['after']['rss'] / b:.2f}" for w in r["waves"])
    n = str(r["n"]) if w1["open_at_read"] == r["n"] else f"{w1['open_at_read']} of {r['n']}"
    half = ", ".join(f"{k:.2f}" if k is not None else "-" for k in halves[r["label"]])
    print(f"| {r['label']} | {n} | {mib(b)} | {mib(w1['idle']['rss'])} | {fmt(kib[r['label']])} | "
          f"{half} | {after} | {ratio} |")
if kib.get("gateway") is not None and kib.get("nginx"):
    print()
    print(f"gateway/nginx KiB per idle connection: {kib['gateway'] / kib['nginx']:.2f}")
# Later waves start by taking back what the wave before freed, so their second
# half is not comparable between the proxies: wave 1 only.
if halves.get("gateway") and halves.get("nginx") and halves["gateway"][0] and halves["nginx"][0]:
    print(f"gateway/nginx KiB per idle connection, second half of wave 1: "
          f"{halves['gateway'][0] / halves['nginx'][0]:.2f}")
nginx = next((r for r in runs if r["label"] == "nginx"), None)
if baseline and nginx and nginx["waves"][0]["open_at_read"]:
    w1 = nginx["waves"][0]
    slots = (nginx["before"]["rss"] - baseline["before"]["rss"]) / w1["open_at_read"]
    all_in = (w1["idle"]["rss"] - baseline["before"]["rss"]) / w1["open_at_read"]
    print()
    print(f"nginx with worker_connections 1024 after the same warm-up: {mib(baseline['before']['rss'])} MiB; "
          f"{nginx['n'] + 1024} slots in each of its 2 workers instead add {slots:.1f} KiB per connection to 'before': "
          f"all-in, (RSS with N idle - that baseline) / N = {all_in:.1f} KiB per idle connection")
    if kib.get("gateway") is not None:
        print(f"gateway/nginx KiB per idle connection, all-in: {kib['gateway'] / all_in:.2f}")
print()
print("Per wave (RSS in MiB; KiB/conn = (RSS with N idle - RSS before) / connections open at the reading; "
      "anon = the Anonymous part of RSS, from smaps_rollup; VmData = the private writable "
      "address space, touched or not):")
print()
print("| target | wave | open at reading | ramp s | oldest idle s | RSS with N idle | KiB/conn | "
      "anon KiB/conn | VmData KiB/conn | RSS after close | after/before | fds before, idle, after | "
      "closed by proxy | failures |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in runs:
    for i, w in enumerate(r["waves"]):
        k = per_conn(r, i)
        ka = per_conn(r, i, "anon")
        kd = per_conn(r, i, "data")
        fds = f"{r['before']['fds']}, {w['idle']['fds']}, {w['after']['fds']}"
        closed = str(w["closed_by_proxy"])
        if "hold_s" in w:
            closed += f" ({w['closed_by_proxy_in_hold']} in a {w['hold_s']:g} s hold)"
        failed = ", ".join(f"{why}: {c}" for why, c in w["failed"].items()) or "none"
        print(f"| {r['label']} | {i + 1} | {w['open_at_read']} | {w['ramp_s']:.2f} | {w['oldest_idle_s']:.2f} | "
              f"{mib(w['idle']['rss'])} | {fmt(k)} | {fmt(ka)} | {fmt(kd)} | "
              f"{mib(w['after']['rss'])} | {w['after']['rss'] / r['before']['rss']:.2f} | {fds} | {closed} | {failed} |")
PY

# ---------------------------------------------------------------- servers
start_upstream

# The gateway's environment, as in bench/compare.sh; also mints the token.
gateway_env "bench-secret-0123456789abcdef0123456789abcdef"
TOKEN=""
if [[ $TARGETS == *gateway* ]]; then
    # Run a private copy: a `cargo build` elsewhere during the run cannot swap it.
    cp "$GATEWAY_BIN" "$WORK/cortex-gateway"
    GATEWAY_SHA=$(sha256sum "$WORK/cortex-gateway" | cut -c1-16)
    TOKEN=$("${GATEWAY_ENV[@]}" "$WORK/cortex-gateway" token --tenant tenant-a) || die "could not mint a token"
fi
SCHEME=http
CURL_TLS=()
CLIENT_TLS=()
if ((TLS)); then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1 ||
        die "openssl could not make a certificate"
    GATEWAY_ENV+=(CORTEX_GATEWAY__SERVER__HTTP_TLS_CERT_PATH="$WORK/cert.pem"
        CORTEX_GATEWAY__SERVER__HTTP_TLS_KEY_PATH="$WORK/key.pem")
    SCHEME=https
    CURL_TLS=(-k)
    CLIENT_TLS=(--tls)
fi
# NGINX ignores the header, but gets the same request bytes.
[[ -n $TOKEN ]] || TOKEN=bench-idle-token-not-checked-by-nginx
AUTH="Authorization: Bearer $TOKEN"

start_proxy_nginx() { # sets PROXY_PORT and PROXY_PIDS (master and workers)
    # As compare.sh's "nginx" target; worker_connections: one worker may
    # accept nearly all N connections, and NGINX refuses past the limit.
    start_nginx_with_slots nginx $((N + 1024))
}

# NGINX allocates the structures of every connection it may hold
# (worker_connections, in each worker) when it starts, so they are already in
# its "RSS before": a connection then costs it only what it adds on top. To
# show that share, the same configuration runs once more with the slots of a
# stock configuration (1024) and no N: its RSS after the same warm-up is the
# baseline of the "all-in" figure, (RSS with N idle - this baseline) / N.
nginx_baseline() {
    start_nginx_with_slots nginx-baseline 1024
    run_client nginx-baseline 0
}

run_client() { # run_client LABEL WAVES : idle_client.py against PROXY_PORT, then the proxy stopped
    # per wave: up to 40 s to open, then HOLD and SETTLE; the warm-up too
    timeout $((66 + ${BEFORE_SETTLE#-} + SETTLE + $2 * (45 + HOLD + SETTLE))) python3 "$WORK/idle_client.py" --label "$1" --port "$PROXY_PORT" \
        --token "$TOKEN" --pids "${PROXY_PIDS// /,}" --n "$N" --waves "$2" \
        --window "$WINDOW" --warmup "$WARMUP" --settle "$SETTLE" --hold "$HOLD" --before-settle "$BEFORE_SETTLE" "${CLIENT_TLS[@]}" >>"$RESULTS_TMP" &
    client=$!
    PIDS+=("$client")
    wait "$client" || die "the client failed against $1 (exit $?)"
    forget_pid "$client"
    stop_pid "$PROXY_MAIN" # NGINX's master stops its workers
    forget_pid "$PROXY_MAIN"
}

start_nginx_with_slots() { # NAME SLOTS; sets PROXY_PORT and PROXY_PIDS
    local dir=$WORK/$1 slots=$2 i
    free_port PROXY_PORT
    if ((TLS)); then
        write_nginx_proxy "$dir" "$PROXY_PORT" "$UP_PORT" "$slots" "$NOFILE" "$WORK/cert.pem" "$WORK/key.pem"
    else
        write_nginx_proxy "$dir" "$PROXY_PORT" "$UP_PORT" "$slots" "$NOFILE"
    fi
    start_nginx "$dir" # inherits this shell's `ulimit -n`
    PROXY_MAIN=$STARTED_PID
    wait_for nginx 200 "${CURL_TLS[@]}" -H "$AUTH" "$SCHEME://127.0.0.1:$PROXY_PORT/api/v1/query?query=up"
    for ((i = 0; i < 50; i++)); do # both workers up
        (($(wc -w <<<"$(children_of "$PROXY_MAIN")") >= 2)) && break
        sleep 0.1
    done
    (($(wc -w <<<"$(children_of "$PROXY_MAIN")") >= 2)) || die "NGINX in $dir did not start both workers"
    PROXY_PIDS="$PROXY_MAIN $(children_of "$PROXY_MAIN")"
}

start_proxy_gateway() { # sets PROXY_PORT and PROXY_PIDS (the one process)
    free_port PROXY_PORT
    # prlimit and env exec: $! is the gateway's own PID.
    prlimit --nofile="$NOFILE:$NOFILE" -- "${GATEWAY_ENV[@]}" "$WORK/cortex-gateway" \
        -server.http-listen-address=127.0.0.1 -server.http-listen-port="$PROXY_PORT" \
        -log.level=warn >"$WORK/gateway.log" 2>&1 &
    PROXY_MAIN=$!
    PIDS+=("$PROXY_MAIN")
    wait_for gateway 200 "${CURL_TLS[@]}" -H "$AUTH" "$SCHEME://127.0.0.1:$PROXY_PORT/api/v1/query?query=up"
    PROXY_PIDS=$PROXY_MAIN
}

# ---------------------------------------------------------------- measure
RESULTS_TMP=$WORK/results.jsonl
: >"$RESULTS_TMP"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
[[ $TARGETS == *nginx* ]] && nginx_baseline
for target in $TARGETS; do
    "start_proxy_$target"
    limits=""
    for pid in $PROXY_PIDS; do
        limits+=" $(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")"
    done
    log "$target on 127.0.0.1:$PROXY_PORT, PIDs $PROXY_PIDS (open-file limits:$limits): $WAVES waves of $N idle connections"
    run_client "$target" "$WAVES"
done
[[ -n ${RESULTS:-} ]] && cat "$RESULTS_TMP" >>"$RESULTS"

echo
python3 "$WORK/report.py" "$RESULTS_TMP"
echo
echo "N=$N WAVES=$WAVES WINDOW=$WINDOW WARMUP=$WARMUP SETTLE=$SETTLE HOLD=$HOLD BEFORE_SETTLE=$BEFORE_SETTLE (-1: max(6, SETTLE/2)) TLS=$TLS;" \
    "gateway: ${GATEWAY_SHA:+binary sha256 $GATEWAY_SHA…, }server.workers=2${GATEWAY_EXTRA_ENV:+, $GATEWAY_EXTRA_ENV}; nginx: worker_processes 2, worker_connections $((N + 1024)) (baseline: 1024);" \
    "load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
