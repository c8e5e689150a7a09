//! Harness for `tests/real_peers.rs`: real Prometheus and Alertmanager
//! processes (Debian's packages), the `cortex-gateway` binary, and a small
//! in-process upstream that records the remote_write batches reaching it.
//!
//! Every process runs on 127.0.0.1 on a port of its own, with its data in a
//! directory of its own, and is killed by PID when its handle drops (and,
//! should the test binary itself be killed, by the kernel: see [`spawn`]).
#![allow(dead_code)]

use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::Value;

pub use crate::common::{free_port, raw_http, serve_on_thread, RawResponse};

/// The packages the suite needs, as CI installs them.
pub const APT_LINE: &str = "apt-get install -y prometheus prometheus-alertmanager";

/// Secret of every gateway the suite starts (at least 256 bits, as HS256 wants).
pub const SECRET: &str = "real-peers-suite-secret-0123456789abcdef";

/// How long data may take to travel scrape -> remote_write -> gateway ->
/// receiver. Typically 6-10 s (Prometheus replays its WAL before the first
/// send); generous, because the suite may share two cores with a build.
pub const ARRIVAL: Duration = Duration::from_secs(90);

/// How long a process may take to become ready.
pub const STARTUP: Duration = Duration::from_secs(60);

// ---- the peers' binaries ---------------------------------------------------

/// Paths (or names on PATH) of the peer binaries.
#[derive(Debug, Clone)]
pub struct Tools {
    pub prometheus: String,
    pub promtool: String,
    pub alertmanager: String,
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn find_tool(env: &str, candidates: &[&str]) -> Result<String, String> {
    if let Ok(path) = std::env::var(env) {
        return if runs(&path) {
            Ok(path)
        } else {
            Err(format!("{env}={path} does not run"))
        };
    }
    candidates
        .iter()
        .find(|name| runs(name))
        .map(|name| (*name).to_owned())
        .ok_or_else(|| format!("none of {candidates:?} found on PATH (or set {env})"))
}

/// Whether missing peers fail the suite instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The peer binaries, or `None` (after printing why) when they are missing
/// on a developer machine. Under CI a missing binary fails the test.
pub fn tools(test: &str) -> Option<Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    let found = TOOLS.get_or_init(|| {
        let prometheus = find_tool("PROMETHEUS_BIN", &["prometheus"]);
        let promtool = find_tool("PROMTOOL_BIN", &["promtool"]);
        let alertmanager = find_tool(
            "ALERTMANAGER_BIN",
            &["prometheus-alertmanager", "alertmanager"],
        );
        match (prometheus, promtool, alertmanager) {
            (Ok(prometheus), Ok(promtool), Ok(alertmanager)) => Ok(Tools {
                prometheus,
                promtool,
                alertmanager,
            }),
            (p, t, a) => Err([p.err(), t.err(), a.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")),
        }
    });
    match found {
        Ok(tools) => Some(tools.clone()),
        Err(missing) if in_ci() => {
            panic!("{test}: real peers missing under CI: {missing}. Install them: {APT_LINE}")
        }
        Err(missing) => {
            notice(&format!(
                "SKIPPED {test}: real peers missing: {missing}. \
                 Install them ({APT_LINE}) to run this test; with CI set it fails instead."
            ));
            None
        }
    }
}

/// Prints a line that shows even when libtest captures test output (it
/// captures the print macros, not direct writes): skips must not go unseen.
pub fn notice(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

// ---- processes ---------------------------------------------------------------

/// Spawns `command` so that the kernel kills it if this test binary dies
/// without running destructors (SIGKILL, a crash): `PR_SET_PDEATHSIG` fires
/// when the spawning *thread* exits, so all spawning happens on one thread
/// that lives as long as the process.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("peer-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawner thread starts");
        Mutex::new(tx)
    });
    die_with_parent(&mut command);
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap()
        .send((command, tx))
        .expect("spawner thread alive");
    rx.recv().expect("spawner thread answers")
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::raw::{c_int, c_ulong};
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: c_int, arg2: c_ulong, ...) -> c_int;
    }
    const PR_SET_PDEATHSIG: c_int = 1;
    const SIGKILL: c_ulong = 9;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// A child process with its output in a log file; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(name: &str, dir: &Path, mut command: Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = spawn(command).unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the process's output, headed by its name.
    pub fn tail(&self) -> String {
        format!(
            "---- {} ({}) ----\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, 30)
        )
    }

    /// `Err` with the log tail once the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status})\n{}", self.name, self.tail())),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A scratch directory, removed when dropped unless the test failed (then
/// its path is printed: configs and logs of every peer are in it).
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir()
            .join(format!("cortex-gateway-real-peers-{}", std::process::id()))
            .join(format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept {} (configs and logs) for inspection",
                self.path.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.path);
            if let Some(parent) = self.path.parent() {
                let _ = fs::remove_dir(parent); // only once empty
            }
        }
    }
}

/// Polls `check` every 250 ms until it returns `Ok`, for at most `timeout`;
/// then fails with the last observation and `context` (log tails).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => {
                eprintln!(
                    "[real_peers] {what}: after {:.1}s",
                    start.elapsed().as_secs_f64()
                );
                return value;
            }
            Err(last) if start.elapsed() >= timeout => {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nlast observation: {last}\n{}",
                    context()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

// ---- HTTP ------------------------------------------------------------------

/// A credential as a client sends it.
#[derive(Debug, Clone)]
pub enum Cred {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

impl Cred {
    pub fn basic(user: &str, password: &str) -> Self {
        Self::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    fn header(&self) -> Option<String> {
        match self {
            Cred::None => None,
            Cred::Bearer(token) => Some(format!("Bearer {token}")),
            Cred::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Cred::None => "no credential",
            Cred::Bearer(_) => "Authorization: Bearer",
            Cred::Basic { .. } => "basic auth",
        }
    }
}

/// Percent-encodes a query or form value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `a=1&b=2`, percent-encoded.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One HTTP/1.1 request to an `http://host:port/path?query` URL, with
/// `Connection: close`; chunked answers are decoded.
pub fn http(
    method: &str,
    url: &str,
    cred: &Cred,
    extra_headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> io::Result<RawResponse> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("not an http:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("cannot resolve {authority}")))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: real-peers-test\r\n"
    );
    if let Some(value) = cred.header() {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body_bytes = match body {
        Some((content_type, bytes)) => {
            request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
            bytes
        }
        None if method == "POST" || method == "PUT" => {
            request.push_str("Content-Length: 0\r\n");
            &[][..]
        }
        None => &[][..],
    };
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body_bytes);
    let mut response = raw_http(addr, &request)?;
    if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body)?;
    }
    Ok(response)
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io::Error::other("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size_text:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

pub fn get(url: &str, cred: &Cred) -> io::Result<RawResponse> {
    http("GET", url, cred, &[], None)
}

pub fn post_form(url: &str, cred: &Cred, form_body: &str) -> io::Result<RawResponse> {
    http(
        "POST",
        url,
        cred,
        &[],
        Some(("application/x-www-form-urlencoded", form_body.as_bytes())),
    )
}

/// Calls a Prometheus HTTP API endpoint (`GET` with the parameters in the
/// query string, or `POST` with them form-encoded, as Grafana does) and
/// returns `data` of a `"status":"success"` answer.
pub fn prom_api(
    base: &str,
    endpoint: &str,
    method: &str,
    params: &[(&str, &str)],
    cred: &Cred,
) -> Result<Value, String> {
    prom_api_with(base, endpoint, method, params, cred, &[])
}

/// [`prom_api`] with extra request headers (e.g. `X-Scope-OrgID` for a
/// request straight to Cortex, or a spoofed one sent to the gateway).
pub fn prom_api_with(
    base: &str,
    endpoint: &str,
    method: &str,
    params: &[(&str, &str)],
    cred: &Cred,
    headers: &[(&str, &str)],
) -> Result<Value, String> {
    let url = format!("{base}{endpoint}");
    let response = match method {
        "GET" => http(
            "GET",
            &format!("{url}?{}", form(params)),
            cred,
            headers,
            None,
        ),
        "POST" => http(
            "POST",
            &url,
            cred,
            headers,
            Some(("application/x-www-form-urlencoded", form(params).as_bytes())),
        ),
        other => panic!("unsupported method {other}"),
    }
    .map_err(|e| format!("{method} {endpoint}: {e}"))?;
    if response.status != 200 {
        return Err(format!(
            "{method} {endpoint}: status {}: {}",
            response.status,
            response.text()
        ));
    }
    let json = response.json()?;
    if json["status"] != "success" {
        return Err(format!("{method} {endpoint}: {json}"));
    }
    Ok(json["data"].clone())
}

/// The result of an instant query; `Err` while it is empty.
pub fn query_nonempty(base: &str, promql: &str, cred: &Cred) -> Result<Vec<Value>, String> {
    let data = prom_api(base, "/api/v1/query", "GET", &[("query", promql)], cred)?;
    match data["result"].as_array() {
        Some(result) if !result.is_empty() => Ok(result.clone()),
        _ => Err(format!("`{promql}` is still empty: {data}")),
    }
}

/// Series matching `selector` in the last `window_secs`, at any time
/// (unlike an instant query, this also finds series that went stale).
pub fn series(base: &str, selector: &str, window_secs: u64) -> Result<Vec<Value>, String> {
    let now = unix_now();
    let data = prom_api(
        base,
        "/api/v1/series",
        "GET",
        &[
            ("match[]", selector),
            ("start", &(now - window_secs).to_string()),
            ("end", &(now + 60).to_string()),
        ],
        &Cred::None,
    )?;
    Ok(data.as_array().cloned().unwrap_or_default())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The sum of every sample of metric `name` whose labels contain all of
/// `labels` (each written as `key="value"`), in a text exposition.
pub fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_part, value) = match rest.strip_prefix('{') {
                Some(inner) => {
                    let (labels, value) = inner.split_once('}')?;
                    (labels, value)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None, // a longer metric name
            };
            labels
                .iter()
                .all(|wanted| label_part.split(',').any(|l| l.trim() == *wanted))
                .then(|| value.split_whitespace().next()?.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

// ---- Prometheus --------------------------------------------------------------

/// A Prometheus process on its own port with its own data directory.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML) and waits until it is ready.
    pub fn start(tools: &Tools, dir: &Path, name: &str, config: &str, extra_args: &[&str]) -> Self {
        let port = free_port();
        let config_path = dir.join(format!("{name}.yml"));
        fs::write(&config_path, config).unwrap();
        let mut command = Command::new(&tools.prometheus);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("{name}-data")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args);
        let mut prometheus = Self {
            proc: Proc::start(name, dir, command),
            port,
        };
        let ready = prometheus.url("/-/ready");
        let start = Instant::now();
        loop {
            if let Err(exited) = prometheus.proc.check_alive() {
                panic!("{exited}");
            }
            if get(&ready, &Cred::None).is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(
                start.elapsed() < STARTUP,
                "{name} not ready in {STARTUP:?}\n{}",
                prometheus.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// A Prometheus that scrapes itself every second as job `job` and sends
    /// everything to `remote_writes`.
    pub fn writer(tools: &Tools, dir: &Path, job: &str, remote_writes: &[RemoteWrite]) -> Self {
        // The port is chosen before the config is written: the config names it.
        let port = free_port();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n\
             remote_write:\n"
        );
        for write in remote_writes {
            config.push_str(&write.yaml());
        }
        let config_path = dir.join(format!("{job}.yml"));
        fs::write(&config_path, &config).unwrap();
        let mut command = Command::new(&tools.prometheus);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("{job}-data")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut prometheus = Self {
            proc: Proc::start(job, dir, command),
            port,
        };
        let start = Instant::now();
        loop {
            if let Err(exited) = prometheus.proc.check_alive() {
                panic!("{exited}\nconfig:\n{config}");
            }
            if get(&prometheus.url("/-/ready"), &Cred::None).is_ok_and(|r| r.status == 200) {
                return prometheus;
            }
            assert!(
                start.elapsed() < STARTUP,
                "{job} not ready in {STARTUP:?}\n{}",
                prometheus.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn base(&self) -> String {
        self.url("")
    }

    /// This Prometheus's own `/metrics`.
    pub fn own_metrics(&self) -> String {
        get(&self.url("/metrics"), &Cred::None)
            .map(|r| r.text())
            .unwrap_or_default()
    }
}

/// How a remote_write entry authenticates, in Prometheus's own terms.
#[derive(Debug, Clone)]
pub enum WriteAuth {
    /// `authorization: { credentials: … }` (type Bearer).
    Authorization(String),
    /// `authorization: { credentials_file: … }`: the token in a file.
    AuthorizationFile(PathBuf),
    /// The legacy `bearer_token: …`.
    BearerToken(String),
    /// `basic_auth: { username, password }`.
    BasicAuth { username: String, password: String },
    /// No credential (for control queues that bypass the gateway).
    None,
}

/// One `remote_write` entry of a writer.
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    /// Also names the queue in Prometheus's logs and metrics.
    pub name: String,
    pub url: String,
    pub auth: WriteAuth,
    /// Added to every series this queue sends (`write_relabel_configs`), so
    /// the receiver tells apart what came through which queue.
    pub tag: Option<(String, String)>,
    /// Extra request headers (`headers:`).
    pub headers: Vec<(String, String)>,
}

impl RemoteWrite {
    pub fn new(name: &str, url: &str, auth: WriteAuth) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            auth,
            tag: None,
            headers: Vec::new(),
        }
    }

    pub fn tag(mut self, label: &str, value: &str) -> Self {
        self.tag = Some((label.to_owned(), value.to_owned()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn yaml(&self) -> String {
        let mut out = format!("  - name: {}\n    url: \"{}\"\n", self.name, self.url);
        match &self.auth {
            WriteAuth::Authorization(token) => {
                out.push_str(&format!(
                    "    authorization:\n      type: Bearer\n      credentials: \"{token}\"\n"
                ));
            }
            WriteAuth::AuthorizationFile(path) => {
                out.push_str(&format!(
                    "    authorization:\n      type: Bearer\n      credentials_file: \"{}\"\n",
                    path.display()
                ));
            }
            WriteAuth::BearerToken(token) => {
                out.push_str(&format!("    bearer_token: \"{token}\"\n"));
            }
            WriteAuth::BasicAuth { username, password } => {
                out.push_str(&format!(
                    "    basic_auth:\n      username: \"{username}\"\n      password: \"{password}\"\n"
                ));
            }
            WriteAuth::None => {}
        }
        if !self.headers.is_empty() {
            out.push_str("    headers:\n");
            for (name, value) in &self.headers {
                out.push_str(&format!("      \"{name}\": \"{value}\"\n"));
            }
        }
        out.push_str(
            "    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 50ms\n      max_backoff: 1s\n",
        );
        if let Some((label, value)) = &self.tag {
            out.push_str(&format!(
                "    write_relabel_configs:\n      - target_label: {label}\n        replacement: \"{value}\"\n"
            ));
        }
        out
    }
}

/// The receiving Prometheus (`--web.enable-remote-write-receiver`), standing
/// in for Cortex's distributor and query-frontend. Tests running at the same
/// time share one; it stops when the last of them drops its handle.
pub struct Receiver {
    pub prometheus: Prometheus,
    _dir: TestDir, // after `prometheus`: removed once the process is gone
}

impl Receiver {
    pub fn shared(tools: &Tools) -> Arc<Receiver> {
        static SHARED: Mutex<Weak<Receiver>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(receiver) = slot.upgrade() {
            return receiver;
        }
        let dir = TestDir::new("receiver");
        let prometheus = Prometheus::start(
            tools,
            &dir.path,
            "receiver",
            "# receives remote_write; scrapes nothing\nglobal:\n  scrape_interval: 15s\n",
            &["--web.enable-remote-write-receiver"],
        );
        let receiver = Arc::new(Receiver {
            prometheus,
            _dir: dir,
        });
        *slot = Arc::downgrade(&receiver);
        receiver
    }

    pub fn base(&self) -> String {
        self.prometheus.base()
    }

    pub fn tail(&self) -> String {
        self.prometheus.proc.tail()
    }
}

// ---- Alertmanager ------------------------------------------------------------

pub struct Alertmanager {
    pub proc: Proc,
    pub port: u16,
}

impl Alertmanager {
    /// Serves under `/alertmanager`, as Cortex's does: the gateway forwards
    /// paths unchanged. Clustering is off; data in `dir`.
    pub fn start(tools: &Tools, dir: &Path, receiver_name: &str) -> Self {
        let port = free_port();
        let config = dir.join("alertmanager.yml");
        fs::write(
            &config,
            format!(
                "route:\n  receiver: {receiver_name}\n  group_wait: 1s\nreceivers:\n  - name: {receiver_name}\n"
            ),
        )
        .unwrap();
        let mut command = Command::new(&tools.alertmanager);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.join("alertmanager-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.route-prefix=/alertmanager")
            .arg("--cluster.listen-address=");
        let mut alertmanager = Self {
            proc: Proc::start("alertmanager", dir, command),
            port,
        };
        let ready = alertmanager.url("/alertmanager/-/ready");
        let start = Instant::now();
        loop {
            if let Err(exited) = alertmanager.proc.check_alive() {
                panic!("{exited}");
            }
            if get(&ready, &Cred::None).is_ok_and(|r| r.status == 200) {
                return alertmanager;
            }
            assert!(
                start.elapsed() < STARTUP,
                "alertmanager not ready in {STARTUP:?}\n{}",
                alertmanager.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

// ---- the gateway -------------------------------------------------------------

pub fn gateway_binary() -> &'static str {
    env!("CARGO_BIN_EXE_cortex-gateway")
}

/// A `cortex-gateway` command that ignores the caller's CORTEX_GATEWAY_* and
/// RUST_LOG variables.
pub fn gateway_command() -> Command {
    let mut command = Command::new(gateway_binary());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CORTEX_GATEWAY") || key_text == "RUST_LOG" {
            command.env_remove(&key);
        }
    }
    command
}

pub struct Gateway {
    pub proc: Proc,
    pub port: u16,
    pub config: PathBuf,
}

impl Gateway {
    /// Starts the gateway with `toml` plus the suite's secret, listening on a
    /// free port of 127.0.0.1, and waits until `/health` answers.
    pub fn start(dir: &Path, toml: &str) -> Self {
        let port = free_port();
        let config = dir.join("gateway.toml");
        fs::write(
            &config,
            format!("{toml}\n[auth]\njwt_secret = \"{SECRET}\"\n\n[server]\nworkers = 2\n"),
        )
        .unwrap();
        let mut command = gateway_command();
        command
            .arg("--config")
            .arg(&config)
            .arg("-server.http-listen-address=127.0.0.1")
            .arg(format!("-server.http-listen-port={port}"));
        let mut gateway = Self {
            proc: Proc::start("gateway", dir, command),
            port,
            config,
        };
        let health = gateway.url("/health");
        let start = Instant::now();
        loop {
            if let Err(exited) = gateway.proc.check_alive() {
                panic!("{exited}");
            }
            if get(&health, &Cred::None).is_ok_and(|r| r.status == 200) {
                return gateway;
            }
            assert!(
                start.elapsed() < STARTUP,
                "gateway not healthy in {STARTUP:?}\n{}",
                gateway.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn base(&self) -> String {
        self.url("")
    }

    /// A token minted the way users mint them: `cortex-gateway token`.
    pub fn mint(&self, tenant: &str) -> String {
        let output = gateway_command()
            .args([
                "token",
                "--tenant",
                tenant,
                "--expires-in",
                "1h",
                "--config",
            ])
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cortex-gateway token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        assert_eq!(token.split('.').count(), 3, "one JWT on stdout: {token:?}");
        token
    }

    pub fn metrics(&self) -> String {
        get(&self.url("/metrics"), &Cred::None)
            .map(|r| r.text())
            .unwrap_or_default()
    }

    pub fn failed_auth(&self, reason: &str) -> f64 {
        metric_sum(
            &self.metrics(),
            "cortex_gateway_failed_authentications_total",
            &[&format!("reason=\"{reason}\"")],
        )
    }

    pub fn tail(&self) -> String {
        self.proc.tail()
    }
}

/// Signs `claims` with HS256 and `secret`, for tokens the CLI will not mint
/// (already expired, or signed with the wrong key).
pub fn sign(claims: Value, secret: &[u8]) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

// ---- a recording upstream for remote_write ----------------------------------

/// One remote_write request as it reached the recording upstream.
#[derive(Debug, Clone)]
pub struct Batch {
    pub uri: String,
    /// Every `X-Scope-OrgID` header, in order.
    pub org_ids: Vec<String>,
    pub authorization: Option<String>,
    /// Labels of each time series in the decoded WriteRequest.
    pub series: Vec<Vec<(String, String)>>,
    /// The body as received (snappy-compressed protobuf).
    pub body: Vec<u8>,
    pub decode_error: Option<String>,
}

impl Batch {
    /// The distinct `job` label values in this batch.
    pub fn jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self
            .series
            .iter()
            .filter_map(|labels| {
                labels
                    .iter()
                    .find(|(n, _)| n == "job")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        jobs.sort();
        jobs.dedup();
        jobs
    }
}

/// A tiny actix-web server on 127.0.0.1 that decodes (snappy + protobuf) and
/// records every remote_write batch it receives, and answers 204.
pub struct Recorder {
    pub addr: SocketAddr,
    batches: Arc<Mutex<Vec<Batch>>>,
    handle: actix_web::dev::ServerHandle,
}

async fn record_batch(
    req: HttpRequest,
    mut payload: web::Payload,
    batches: web::Data<Mutex<Vec<Batch>>>,
) -> HttpResponse {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    let (series, decode_error) = match snappy_decode(&body).and_then(|raw| write_request(&raw)) {
        Ok(series) => (series, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let header_values = |name: &str| -> Vec<String> {
        req.headers()
            .get_all(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    batches.lock().unwrap().push(Batch {
        uri: req.uri().to_string(),
        org_ids: header_values("x-scope-orgid"),
        authorization: header_values("authorization").into_iter().next(),
        series,
        decode_error,
        body,
    });
    HttpResponse::NoContent().finish()
}

impl Recorder {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let data = web::Data::from(batches.clone());
        let handle = serve_on_thread(listener, move |cfg| {
            cfg.app_data(data.clone())
                .default_service(web::to(record_batch));
        });
        Self {
            addr,
            batches,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn batches(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }

    /// Batches whose request URI contains `needle`.
    pub fn batches_with(&self, needle: &str) -> Vec<Batch> {
        self.batches()
            .into_iter()
            .filter(|b| b.uri.contains(needle))
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Decodes a snappy *block* (the remote_write body encoding).
pub fn snappy_decode(input: &[u8]) -> Result<Vec<u8>, String> {
    let (expected, mut pos) = varint(input, 0)?;
    let expected = usize::try_from(expected).map_err(|_| "length overflow")?;
    let mut out: Vec<u8> = Vec::with_capacity(expected.min(64 << 20));
    let byte = |pos: usize| input.get(pos).copied().ok_or("truncated snappy block");
    while pos < input.len() {
        let tag = input[pos];
        pos += 1;
        let (len, offset) = match tag & 3 {
            0 => {
                let mut len = usize::from(tag >> 2);
                if len >= 60 {
                    let extra = len - 59;
                    len = 0;
                    for i in 0..extra {
                        len |= usize::from(byte(pos + i)?) << (8 * i);
                    }
                    pos += extra;
                }
                len += 1;
                let literal = input
                    .get(pos..pos + len)
                    .ok_or("truncated snappy literal")?;
                out.extend_from_slice(literal);
                pos += len;
                continue;
            }
            1 => {
                let len = 4 + usize::from((tag >> 2) & 7);
                let offset = (usize::from(tag >> 5) << 8) | usize::from(byte(pos)?);
                pos += 1;
                (len, offset)
            }
            2 => {
                let offset = usize::from(byte(pos)?) | usize::from(byte(pos + 1)?) << 8;
                pos += 2;
                (1 + usize::from(tag >> 2), offset)
            }
            _ => {
                let mut offset = 0usize;
                for i in 0..4 {
                    offset |= usize::from(byte(pos + i)?) << (8 * i);
                }
                pos += 4;
                (1 + usize::from(tag >> 2), offset)
            }
        };
        if offset == 0 || offset > out.len() {
            return Err(format!("bad snappy copy offset {offset}"));
        }
        let start = out.len() - offset;
        for i in 0..len {
            out.push(out[start + i]); // copies may overlap their own output
        }
    }
    if out.len() != expected {
        return Err(format!(
            "snappy: {} bytes, header said {expected}",
            out.len()
        ));
    }
    Ok(out)
}

fn varint(data: &[u8], mut pos: usize) -> Result<(u64, usize), String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(pos).ok_or("truncated varint")?;
        pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
    Err("varint too long".into())
}

/// The length-delimited fields of protobuf `message`, as (field number,
/// payload); fields of other wire types are skipped.
fn fields(message: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let (key, next) = varint(message, pos)?;
        pos = next;
        match key & 7 {
            0 => pos = varint(message, pos)?.1,
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let (len, next) = varint(message, pos)?;
                let end = next + usize::try_from(len).map_err(|_| "length overflow")?;
                let payload = message.get(next..end).ok_or("truncated field")?;
                out.push((key >> 3, payload));
                pos = end;
            }
            other => return Err(format!("unsupported wire type {other}")),
        }
    }
    Ok(out)
}

/// The label sets of a Prometheus `WriteRequest`
/// (`timeseries = 1 { labels = 1 { name = 1, value = 2 } }`).
pub fn write_request(message: &[u8]) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut all = Vec::new();
    for (number, series) in fields(message)? {
        if number != 1 {
            continue; // metadata = 3
        }
        let mut labels = Vec::new();
        for (number, label) in fields(series)? {
            if number != 1 {
                continue; // samples = 2
            }
            let (mut name, mut value) = (String::new(), String::new());
            for (number, text) in fields(label)? {
                let text = String::from_utf8_lossy(text).into_owned();
                match number {
                    1 => name = text,
                    2 => value = text,
                    _ => {}
                }
            }
            labels.push((name, value));
        }
        all.push(labels);
    }
    Ok(all)
}

// ---- remote_write, hand-encoded ------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited protobuf field (wire type 2).
fn put_bytes_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// One series of a [`encode_write_request`]: labels (`__name__` among
/// them; sorted here, as Cortex wants them) and one sample.
#[derive(Debug, Clone)]
pub struct WriteSeries {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

impl WriteSeries {
    /// A series with one sample at the current time.
    pub fn now(labels: &[(&str, &str)], value: f64) -> Self {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        Self {
            labels: labels
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            value,
            timestamp_ms,
        }
    }
}

/// A Prometheus `WriteRequest` protobuf (`timeseries = 1 { labels = 1
/// { name = 1, value = 2 }, samples = 2 { value = 1 (double), timestamp = 2
/// (int64) } }`), not yet compressed.
pub fn encode_write_request(series: &[WriteSeries]) -> Vec<u8> {
    let mut request = Vec::new();
    for one in series {
        let mut labels = one.labels.clone();
        labels.sort();
        let mut timeseries = Vec::new();
        for (name, value) in &labels {
            let mut label = Vec::new();
            put_bytes_field(&mut label, 1, name.as_bytes());
            put_bytes_field(&mut label, 2, value.as_bytes());
            put_bytes_field(&mut timeseries, 1, &label);
        }
        let mut sample = Vec::new();
        put_varint(&mut sample, 1 << 3 | 1);
        sample.extend_from_slice(&one.value.to_le_bytes());
        put_varint(&mut sample, 2 << 3);
        put_varint(&mut sample, one.timestamp_ms as u64);
        put_bytes_field(&mut timeseries, 2, &sample);
        put_bytes_field(&mut request, 1, &timeseries);
    }
    request
}

/// A valid snappy block holding `raw` as one literal, uncompressed: the
/// length preamble, then one literal element.
pub fn snappy_literal(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 10);
    put_varint(&mut out, raw.len() as u64);
    if raw.is_empty() {
        return out;
    }
    let n = raw.len() - 1;
    if n < 60 {
        out.push((n as u8) << 2);
    } else {
        out.push(63 << 2); // the length follows in 4 bytes
        out.extend_from_slice(&u32::try_from(n).expect("< 4 GiB").to_le_bytes());
    }
    out.extend_from_slice(raw);
    out
}

/// A remote_write body (snappy-framed `WriteRequest`) for `series`.
pub fn remote_write_body(series: &[WriteSeries]) -> Vec<u8> {
    snappy_literal(&encode_write_request(series))
}

/// POSTs a remote_write `body` to `url` with the headers Prometheus sends,
/// plus `headers` (e.g. an `X-Scope-OrgID`).
pub fn push(
    url: &str,
    cred: &Cred,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<RawResponse> {
    let mut all = vec![
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    all.extend_from_slice(headers);
    http(
        "POST",
        url,
        cred,
        &all,
        Some(("application/x-protobuf", body)),
    )
}

// ---- Cortex --------------------------------------------------------------------

/// The real Cortex binary: `CORTEX_BIN`, else `../shared/bin/cortex` beside
/// the project; `None` (after printing why) when it does not run on a
/// developer machine. Under CI a missing binary fails the test.
pub fn cortex_binary(test: &str) -> Option<PathBuf> {
    let (path, source) = match std::env::var_os("CORTEX_BIN") {
        Some(path) => (PathBuf::from(path), "CORTEX_BIN="),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bin/cortex"),
            "",
        ),
    };
    let runs = Command::new(&path)
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if runs {
        return Some(path);
    }
    let why = format!("{source}{} does not run", path.display());
    if in_ci() {
        panic!(
            "{test}: real Cortex missing under CI: {why}. Set CORTEX_BIN to a Cortex 1.15 binary."
        );
    }
    notice(&format!(
        "SKIPPED {test}: real Cortex missing: {why}. Set CORTEX_BIN to a Cortex binary \
         (the project expects ../shared/bin/cortex) to run it; with CI set it fails instead."
    ));
    None
}

/// A single-process Cortex 1.15 configuration (as `../shared/cortex/
/// single-process.yaml`, with faster ruler and Alertmanager polling): every
/// listener on 127.0.0.1, data paths relative to the working directory.
pub fn cortex_config(http_port: u16, grpc_port: u16) -> String {
    format!(
        r#"# Written by the cortex-gateway tests: single-process Cortex, multi-tenant.
target: all,alertmanager
auth_enabled: true
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {http_port}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {grpc_port}
  log_level: info
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
  active_query_tracker_dir: ./data/active-query-tracker
blocks_storage:
  backend: filesystem
  filesystem:
    dir: ./data/blocks
  tsdb:
    dir: ./data/tsdb
  bucket_store:
    sync_dir: ./data/tsdb-sync
store_gateway:
  sharding_enabled: false
compactor:
  data_dir: ./data/compactor
  sharding_ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory
frontend_worker:
  match_max_concurrent: true
ruler:
  enable_api: true
  rule_path: ./data/ruler-tmp
  alertmanager_url: http://127.0.0.1:{http_port}/alertmanager
  enable_alertmanager_v2: true
  evaluation_interval: 1s
  poll_interval: 1s
  resend_delay: 1s
  ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory
ruler_storage:
  backend: filesystem
  filesystem:
    dir: ./data/ruler
alertmanager:
  enable_api: true
  data_dir: ./data/alertmanager
  poll_interval: 1s
  external_url: http://127.0.0.1:{http_port}/alertmanager
  sharding_enabled: false
  cluster:
    listen_address: ""
alertmanager_storage:
  backend: filesystem
  filesystem:
    dir: ./data/alertmanager-configs
"#
    )
}

/// A single-process Cortex (`target: all,alertmanager`, multi-tenant) on
/// free HTTP and gRPC ports of 127.0.0.1, working in `dir/cortex`; killed
/// by PID when dropped.
pub struct Cortex {
    pub proc: Proc,
    pub port: u16,
    pub grpc_port: u16,
}

impl Cortex {
    pub fn start(binary: &Path, dir: &Path) -> Self {
        let port = free_port();
        let grpc_port = loop {
            let candidate = free_port();
            if candidate != port {
                break candidate;
            }
        };
        let work = dir.join("cortex");
        fs::create_dir_all(work.join("data/ruler-tmp")).unwrap();
        let config = work.join("cortex.yaml");
        fs::write(&config, cortex_config(port, grpc_port)).unwrap();
        let mut command = Command::new(binary);
        command
            .current_dir(&work)
            .arg(format!("-config.file={}", config.display()));
        let mut cortex = Self {
            proc: Proc::start("cortex", dir, command),
            port,
            grpc_port,
        };
        let ready = cortex.url("/ready");
        let start = Instant::now();
        loop {
            if let Err(exited) = cortex.proc.check_alive() {
                panic!("{exited}");
            }
            if get(&ready, &Cred::None).is_ok_and(|r| r.status == 200) {
                eprintln!(
                    "[real_cortex] cortex ready after {:.2}s (http {port}, grpc {grpc_port}, pid {})",
                    start.elapsed().as_secs_f64(),
                    cortex.proc.pid()
                );
                return cortex;
            }
            assert!(
                start.elapsed() < STARTUP,
                "cortex not ready in {STARTUP:?}\n{}",
                cortex.proc.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn base(&self) -> String {
        self.url("")
    }

    /// A request straight to Cortex (no gateway) as `tenant`: the test
    /// itself sets `X-Scope-OrgID`.
    pub fn as_tenant(
        &self,
        method: &str,
        path: &str,
        tenant: &str,
        body: Option<(&str, &[u8])>,
    ) -> io::Result<RawResponse> {
        http(
            method,
            &self.url(path),
            &Cred::None,
            &[("X-Scope-OrgID", tenant)],
            body,
        )
    }

    /// The instant-query result for `promql` in `tenant`, asked of Cortex
    /// directly.
    pub fn query(&self, tenant: &str, promql: &str) -> Result<Vec<Value>, String> {
        let data = prom_api_with(
            &self.url("/prometheus"),
            "/api/v1/query",
            "GET",
            &[("query", promql)],
            &Cred::None,
            &[("X-Scope-OrgID", tenant)],
        )?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Every series matching `selector` in `tenant` during the last hour
    /// (stale or not), asked of Cortex directly.
    pub fn series(&self, tenant: &str, selector: &str) -> Result<Vec<Value>, String> {
        let now = unix_now();
        let data = prom_api_with(
            &self.url("/prometheus"),
            "/api/v1/series",
            "GET",
            &[
                ("match[]", selector),
                ("start", &(now - 3600).to_string()),
                ("end", &(now + 60).to_string()),
            ],
            &Cred::None,
            &[("X-Scope-OrgID", tenant)],
        )?;
        Ok(data.as_array().cloned().unwrap_or_default())
    }

    pub fn tail(&self) -> String {
        self.proc.tail()
    }
}
