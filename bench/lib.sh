#!/usr/bin/env bash
# Shared helpers of the bench/ scripts: checks of what a script needs,
# process bookkeeping (every process a script starts is stopped by PID on
# exit), free loopback ports, bounded readiness checks, /proc readings and
# NGINX start-up.
#
# The sourcing script sets SCRIPT_NAME, then WORK (a temporary directory,
# removed on exit) before starting processes, and sets no traps of its own.

# Numbers are printed and sorted with a decimal point, whatever the locale.
export LC_ALL=C

die() { echo "${SCRIPT_NAME:-bench}: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- checks
# need_tools PACKAGES TOOL... : dies naming every missing tool at once, and
# the Debian PACKAGES that bring them.
need_tools() {
    local packages=$1 tool missing=()
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian: apt-get install $packages)"
}

need_njs() { # NGINX's njs module, which every upstream here runs on
    NGINX_JS_MODULE=${NGINX_JS_MODULE:-/usr/lib/nginx/modules/ngx_http_js_module.so}
    [[ -r $NGINX_JS_MODULE ]] ||
        die "NGINX njs module not found at $NGINX_JS_MODULE (Debian: apt-get install libnginx-mod-http-js; or set NGINX_JS_MODULE)"
}

need_gateway_bin() {
    [[ -x $GATEWAY_BIN ]] ||
        die "gateway binary not found at $GATEWAY_BIN: build it with 'cargo build --release' or set GATEWAY_BIN"
}

# need_int NAME MIN : the variable NAME holds a decimal integer >= MIN (no
# leading zero, which bash arithmetic would read as octal).
need_int() {
    local value=${!1}
    [[ $value =~ ^(0|[1-9][0-9]*)$ ]] && ((value >= $2)) || die "$1 must be an integer >= $2 (got '$value')"
}

# ---------------------------------------------------------------- cleanup
PIDS=() # every long-running process started here, stopped on exit

alive() { # running and not yet a zombie
    local state
    state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

stop_pid() { # SIGTERM, up to 10 s to exit, then SIGKILL; reaps it
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    [[ -n ${WORK:-} ]] && rm -rf "$WORK"
    exit "$status"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # drop $1 from PIDS once it has been stopped by hand
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- ports
USED_PORTS=" "
# free_port VAR : a port nothing on 127.0.0.1 listens on, not handed out
# before, and below the kernel's ephemeral port range when there is room: no
# listener can bind a port that a closed client connection still holds as
# its local port in TIME_WAIT (60 s), and the benchmarks open and close
# thousands of connections (bench/idle.sh most of all).
free_port() {
    local low rest i p base span
    read -r low rest </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=0
    if ((low > 11000)); then
        base=10000 span=$((low - 10000))
    else
        base=20000 span=40000
    fi
    for ((i = 0; i < 200; i++)); do
        p=$((base + RANDOM % span))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}

wait_for() { # wait_for NAME EXPECTED_CODE CURL_ARGS... : bounded readiness check
    local name=$1 want=$2 i code=""
    shift 2
    for ((i = 0; i < 100; i++)); do # up to ~10 s
        code=$(curl -sS -o /dev/null -m 2 -w '%{http_code}' "$@" 2>/dev/null) || code=""
        [[ $code == "$want" ]] && return 0
        sleep 0.1
    done
    die "$name did not answer $want (last: ${code:-no answer}); see $WORK"
}

# ---------------------------------------------------------------- /proc
children_of() { # direct children of PID (NGINX workers of a master)
    local pid=$1 f
    f=/proc/$pid/task/$pid/children
    if [[ -r $f ]]; then
        cat "$f"
    else
        pgrep -P "$pid" | tr '\n' ' '
    fi
}

cpu_ticks() { # utime+stime in clock ticks, summed over the PIDs given
    local total=0 pid stat f
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat") || die "process $pid is gone"
        stat=${stat##*) } # comm may hold spaces; fields restart after it
        read -ra f <<<"$stat"
        total=$((total + f[11] + f[12])) # fields 14 (utime) and 15 (stime)
    done
    echo "$total"
}

status_kib() { # status_kib FIELD PID... : a /proc/PID/status field in KiB, summed; fails when a PID is gone
    local field=$1 total=0 pid key value _
    shift
    for pid in "$@"; do
        [[ -r /proc/$pid/status ]] || return 1
        while read -r key value _; do
            if [[ $key == "$field:" ]]; then
                total=$((total + value))
                break
            fi
        done <"/proc/$pid/status"
    done
    echo "$total"
}

start_rss_sampler() { # start_rss_sampler OUTFILE MAX_SECONDS PID... ; sets SAMPLER_PID
    local out=$1 max=$2
    shift 2
    SAMPLER_OUT=$out
    echo NA >"$out" # stays NA if no sample is taken
    rm -f "$out.stop"
    (
        peak=0
        for ((n = 0; n < max * 10; n++)); do # every 100 ms, bounded
            [[ -e $out.stop ]] && break
            rss=$(status_kib VmRSS "$@" 2>/dev/null) || break
            ((rss > peak)) && peak=$rss
            sleep 0.1
        done
        # written once, after the loop, so it is never read half-written
        ((peak > 0)) && echo "$peak" >"$out"
    ) &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
}

stop_rss_sampler() { # asks the sampler to finish (up to 3 s), then stops it
    local i
    : >"$SAMPLER_OUT.stop"
    for ((i = 0; i < 30; i++)); do
        alive "$SAMPLER_PID" || break
        sleep 0.1
    done
    stop_pid "$SAMPLER_PID"
    forget_pid "$SAMPLER_PID"
}

# ---------------------------------------------------------------- nginx
start_nginx() { # start_nginx DIR ; the master's PID goes to STARTED_PID and PIDS
    nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" -t -q ||
        die "nginx config in $1 is invalid"
    nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" -g 'daemon off;' \
        >"$1/stdout.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# ---------------------------------------------------------------- upstream
# write_njs_upstream DIR PORT [CONNECTION_LOG] : an NGINX config in DIR
# (start it with start_nginx DIR) that hands every request, its body read
# whole and in memory, to the `handle` function exported by DIR/upstream.js
# (written by the caller). One worker, keep-alive without limit. No access
# log, or with CONNECTION_LOG one line per request: the serial number of the
# connection it came on (distinct numbers = connections opened).
write_njs_upstream() {
    local dir=$1 port=$2 access_log="access_log off;"
    if [[ -n ${3:-} ]]; then
        access_log="log_format connection '\$connection'; access_log $3 connection;"
    fi
    need_njs
    [[ -r $dir/upstream.js ]] || die "write_njs_upstream: $dir/upstream.js is missing"
    cat >"$dir/nginx.conf" <<EOF
load_module $NGINX_JS_MODULE;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    $access_log
    js_import main from $dir/upstream.js;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$port backlog=4096;
        client_max_body_size 0;
        client_body_buffer_size 1m;
        client_body_in_single_buffer on;
        location / { js_content main.handle; }
    }
}
EOF
}

# write_body_reading_upstream DIR PORT [CONNECTION_LOG] : the upstream of
# bench/compare.sh (CONNECTION_LOG: see write_njs_upstream). It
# reads each request body whole before it answers 200, as Cortex does; NGINX's
# plain `return 200` would answer before reading a POST body and flatter any
# proxy in front of it.
write_body_reading_upstream() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    cat >"$dir/upstream.js" <<'EOF'
function handle(r) {
    var n = -1;
    try {
        var body = r.requestBuffer; // the body nginx has read, when in memory
        n = body ? body.length : 0;
    } catch (e) {
        // bodies larger than client_body_buffer_size were read to a file
    }
    r.headersOut['X-Body-Bytes'] = String(n);
    // request line + headers + body as read: lets the upload check its size
    r.headersOut['X-Request-Length'] = r.variables.request_length;
    r.return(200, "");
}
export default { handle };
EOF
    write_njs_upstream "$dir" "$port" "${3:-}"
}

# write_nginx_proxy DIR PORT UPSTREAM_PORT SLOTS NOFILE [CERT KEY] : the
# NGINX that the gateway replaces, as the benchmarks run it: two workers of
# SLOTS connections each, in front of the upstream on UPSTREAM_PORT, keeping
# up to 64 idle upstream connections per worker (`keepalive 64`); it sets the
# tenant and checks nothing. With CERT and KEY (PEM files) it serves HTTPS.
write_nginx_proxy() {
    local dir=$1 port=$2 up_port=$3 slots=$4 nofile=$5 tls=""
    if [[ -n ${6:-} ]]; then
        tls="ssl; ssl_certificate $6; ssl_certificate_key $7"
    fi
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $slots; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream cortex {
        server 127.0.0.1:$up_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port backlog=4096 $tls;
        client_max_body_size 0;
        client_body_buffer_size 128k;
        location / {
            proxy_pass http://cortex;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Scope-OrgID tenant-a;
        }
    }
}
EOF
}

# redis_command PORT WORD... : one inline command to the redis-server on
# 127.0.0.1:PORT; prints the first line of its answer (e.g. +PONG, :3).
redis_command() {
    local port=$1
    shift
    ( # a subshell: a refused connection must not end the calling script
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
        printf '%s\r\n' "$*" >&3
        IFS= read -r -t 2 line <&3 || true
        printf '%s\n' "${line%$'\r'}"
    ) 2>/dev/null
}

# start_upstream : the body-reading NGINX+njs upstream on a free port
# (UP_PORT), under $WORK/upstream, answering before it returns.
start_upstream() {
    free_port UP_PORT
    write_body_reading_upstream "$WORK/upstream" "$UP_PORT"
    log "starting upstream (nginx+njs, 1 worker) on 127.0.0.1:$UP_PORT"
    start_nginx "$WORK/upstream"
    wait_for upstream 200 "http://127.0.0.1:$UP_PORT/api/v1/query?query=up"
}

# gateway_env SECRET [WORKERS] : GATEWAY_ENV, the environment (as `env ...`
# words) of a gateway in front of UP_PORT with WORKERS workers (default 2) and
# this HMAC secret, plus the words of GATEWAY_EXTRA_ENV. An array, not a
# function, so that `"${GATEWAY_ENV[@]}" BIN &` is one process whose PID is $!.
gateway_env() {
    local extra
    GATEWAY_ENV=(env -u CORTEX_GATEWAY_CONFIG
        CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR="http://127.0.0.1:$UP_PORT"
        CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND="http://127.0.0.1:$UP_PORT"
        CORTEX_GATEWAY__AUTH__JWT_SECRET="$1"
        CORTEX_GATEWAY__SERVER__WORKERS="${2:-2}"
        CORTEX_GATEWAY__SERVER__GRACEFUL_SHUTDOWN_TIMEOUT=2s)
    read -ra extra <<<"${GATEWAY_EXTRA_ENV:-}"
    if ((${#extra[@]})); then
        GATEWAY_ENV+=("${extra[@]}")
    fi
}

# start_gateway PORT LOGFILE [BINARY [EXTRA_ENV]] : a gateway with
# GATEWAY_ENV (see gateway_env) and the words of EXTRA_ENV, listening on
# 127.0.0.1:PORT; its PID (the gateway's own, checked) goes to STARTED_PID
# and PIDS.
start_gateway() {
    local binary=${3:-$GATEWAY_BIN} extra
    read -ra extra <<<"${4:-}"
    "${GATEWAY_ENV[@]}" "${extra[@]}" "$binary" \
        -server.http-listen-address=127.0.0.1 -server.http-listen-port="$1" \
        -log.level=warn >"$2" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    # env execs the gateway: make sure the PID measured is the gateway's.
    local i exe="" want
    want=$(readlink -f "$binary")
    for ((i = 0; i < 50; i++)); do
        exe=$(readlink "/proc/$STARTED_PID/exe" 2>/dev/null) || exe=""
        [[ $exe == "$want" ]] && return 0
        sleep 0.1
    done
    die "process $STARTED_PID is not $binary (${exe:-exited}); see $2"
}
