//! The shared buckets in Redis: one GCRA script call per request, from one
//! connection on a thread of its own.
//!
//! Why a small RESP2 client here rather than the `redis` crate: the gateway
//! needs four commands (AUTH, SELECT, SCRIPT LOAD, EVALSHA/EVAL) and its
//! own failure policy (a deadline per call, fail open, reconnect in the
//! background), which is about 300 lines over the tokio and tokio-rustls
//! the gateway already has. `redis` 1.x with `tokio-rustls-comp` adds nine
//! crates (combine, async-lock, event-listener, …) and its async
//! connections spawn their driver on whichever runtime first touches them,
//! which under actix (one runtime per worker) ties a shared connection to
//! one worker.
//!
//! Why one thread: actix workers each run a single-threaded runtime, and a
//! socket registered with one cannot be driven from another. The thread
//! owns the connection and its own runtime; workers send it calls over a
//! channel and wait for the answer at most `limits.redis_timeout`. Calls
//! that queue up while one round trip is out are pipelined together, so
//! one connection keeps up with every worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::{Effective, Refusal};
use crate::settings::{ConfigError, Secret};

/// GCRA over every key given, all or nothing: each key is a bucket's
/// theoretical arrival time (TAT) in microseconds of Redis's clock, so that
/// replicas with skewed clocks agree. ARGV holds, per key, the emission
/// interval (µs per cell), the burst and the cost. Returns `{0, 0}` when
/// every bucket had room (and charges them all), or `{i, wait_µs}` for the
/// first key `i` that had not. Keys expire once their bucket is full again.
const GCRA_SCRIPT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i * 3 - 2])
  local burst = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  local tat = math.max(tonumber(redis.call('GET', key) or 0), now)
  local new_tat = tat + cost * interval
  local wait = new_tat - burst * interval - now
  if wait > 0 then
    return {i, math.ceil(wait)}
  end
  tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.3f', tats[i]), 'PX', ttl)
end
return {0, 0}
"#;

/// Calls waiting for the Redis thread; past that a call falls back at once.
const QUEUE: usize = 4096;
/// The most calls written in one pipelined round trip.
const MAX_BATCH: usize = 256;
/// The longest line, bulk string or array accepted from Redis. Every answer
/// here is a few dozen bytes (a script's SHA, two integers, an error); a
/// larger one comes from a broken or hostile peer (plain `redis://` can be
/// tampered with) and is refused before anything that size is allocated.
const MAX_REPLY: usize = 64 * 1024;
/// Pause between connection attempts while Redis is down.
const RECONNECT: Duration = Duration::from_millis(500);
/// The key prefix; the tenant is a hash tag (`{…}`), so that a tenant's
/// keys share a Redis Cluster slot, as one script call needs.
const KEY_PREFIX: &str = "cortex-gateway:limit:";

/// `limits.redis_url` (and `limits.redis_password_file`), parsed.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    tls: bool,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<Secret>,
    db: u32,
}

impl RedisTarget {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (`rediss://` for
    /// TLS); a password read from `limits.redis_password_file` is
    /// `password`.
    pub fn parse(url: &str, password: Option<Secret>) -> Result<Self, ConfigError> {
        let invalid = |message: &str| ConfigError::invalid("limits.redis_url", message);
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else {
            return Err(invalid("must start with redis:// or rediss://"));
        };
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (username, url_password) = match userinfo.map(|u| u.split_once(':')) {
            None => (None, None),
            Some(None) => return Err(invalid("a user without a password: write user:password@")),
            Some(Some((user, password))) => (
                Some(percent_decode(user).ok_or_else(|| invalid("malformed user name"))?)
                    .filter(|user| !user.is_empty()),
                Some(Secret::new(
                    percent_decode(password).ok_or_else(|| invalid("malformed password"))?,
                )),
            ),
        };
        if url_password.is_some() && password.is_some() {
            return Err(invalid(
                "give the password in limits.redis_url or limits.redis_password_file, not both",
            ));
        }
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse()
                    .map_err(|_| invalid("the port is not a number"))?,
            ),
            _ => (host_port, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || db.contains(['?', '#']) {
            return Err(invalid(
                "must be redis://[[user]:password@]host[:port][/db]",
            ));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            username,
            password: url_password.or(password),
            db: match db {
                "" => 0,
                db => db
                    .parse()
                    .map_err(|_| invalid("the database after / is not a number"))?,
            },
        })
    }

    /// The URL without its credentials: for logs and `check-config`.
    pub fn redacted_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let credentials = if self.password.is_some() {
            "<redacted>@"
        } else {
            ""
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{credentials}{host}:{}/{}", self.port, self.db)
    }
}

/// `%XX` escapes of a URL's user information.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Why a call did not get Redis's answer; the request is then checked
/// against the local buckets.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("not connected to Redis")]
    Unavailable,
    #[error("too many calls waiting for Redis")]
    Busy,
    #[error("Redis did not answer within limits.redis_timeout")]
    Timeout,
    #[error("Redis answered with an error: {0}")]
    Redis(String),
}

/// One script call for the Redis thread.
struct Call {
    keys: Vec<String>,
    argv: Vec<String>,
    reply: oneshot::Sender<Result<Vec<i64>, String>>,
}

/// The handle the workers share.
pub struct RedisBackend {
    calls: mpsc::Sender<Call>,
    /// Whether the thread has a working connection: while it has not,
    /// requests fall back at once instead of waiting out the timeout.
    connected: Arc<AtomicBool>,
    timeout: Duration,
}

impl RedisBackend {
    /// Starts the Redis thread. Redis being down is not an error here:
    /// the gateway serves under its local limits until Redis answers.
    pub fn start(target: RedisTarget, timeout: Duration) -> Result<Self, ConfigError> {
        let tls = match target.tls {
            true => Some(
                crate::tls::system_client_config("limits.redis_url")
                    .map_err(|e| ConfigError::invalid(e.key, e.message))?,
            ),
            false => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConfigError::invalid("limits.backend", e.to_string()))?;
        let (calls, queue) = mpsc::channel(QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let link = Link {
            target,
            tls,
            connected: Arc::clone(&connected),
            // A reply this late means a stuck connection, not a slow one.
            io_timeout: (timeout * 20).max(Duration::from_secs(1)),
        };
        std::thread::Builder::new()
            .name("limits-redis".to_owned())
            .spawn(move || runtime.block_on(link.serve(queue)))
            .map_err(|e| ConfigError::invalid("limits.backend", e.to_string()))?;
        Ok(Self {
            calls,
            connected,
            timeout,
        })
    }

    /// Charges one request and `bytes` of body to the tenant's buckets in
    /// Redis; `Ok(Some(_))` is Redis refusing, `Err` is Redis failing.
    pub async fn charge(
        &self,
        tenant: &str,
        effective: &Effective,
        bytes: u64,
    ) -> Result<Option<Refusal>, BackendError> {
        let mut keys = Vec::with_capacity(2);
        let mut argv = Vec::with_capacity(6);
        let mut refusals: Vec<fn(Duration) -> Refusal> = Vec::with_capacity(2);
        let buckets = [
            (
                effective.requests,
                1,
                "requests",
                Refusal::Requests as fn(_) -> _,
            ),
            (
                effective.ingest,
                bytes,
                "ingest_bytes",
                Refusal::IngestBytes,
            ),
        ];
        for (bucket, cells, name, refusal) in buckets {
            if let (Some(bucket), 1..) = (bucket, cells) {
                keys.push(format!("{KEY_PREFIX}{{{tenant}}}:{name}"));
                let interval_us = 1e6 / bucket.per_second;
                argv.extend([
                    format!("{interval_us:.6}"),
                    bucket.burst.to_string(),
                    bucket.cost(cells).to_string(),
                ]);
                refusals.push(refusal);
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        if !self.connected.load(Ordering::Acquire) {
            return Err(BackendError::Unavailable);
        }
        let (reply, answer) = oneshot::channel();
        self.calls
            .try_send(Call { keys, argv, reply })
            .map_err(|_| BackendError::Busy)?;
        let answer = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(|_| BackendError::Unavailable)?
            .map_err(BackendError::Redis)?;
        match answer[..] {
            [0, _] => Ok(None),
            [index, wait_us] if index >= 1 && (index as usize) <= refusals.len() => Ok(Some(
                refusals[index as usize - 1](Duration::from_micros(wait_us.max(0) as u64)),
            )),
            _ => Err(BackendError::Redis(format!(
                "unexpected script reply {answer:?}"
            ))),
        }
    }
}

/// The Redis thread's side: where to connect, and the flag it keeps.
struct Link {
    target: RedisTarget,
    tls: Option<Arc<rustls::ClientConfig>>,
    connected: Arc<AtomicBool>,
    io_timeout: Duration,
}

impl Link {
    /// Connects, serves calls until the connection fails, reconnects; ends
    /// when every handle is gone. State changes are logged, once each.
    async fn serve(self, mut queue: mpsc::Receiver<Call>) {
        let url = self.target.redacted_url();
        let mut failure_logged = false;
        loop {
            let opened = tokio::time::timeout(self.io_timeout, Connection::open(&self))
                .await
                .unwrap_or_else(|_| Err("connecting timed out".to_owned()));
            let mut connection = match opened {
                Ok(connection) => connection,
                Err(error) => {
                    if !failure_logged {
                        tracing::warn!(redis = %url, %error, "limits backend: cannot connect to Redis; retrying");
                        failure_logged = true;
                    }
                    // Calls that raced the flag get no answer: they fall back.
                    while queue.try_recv().is_ok() {}
                    if queue.is_closed() {
                        return;
                    }
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                }
            };
            self.connected.store(true, Ordering::Release);
            tracing::info!(redis = %url, "limits backend connected to Redis");
            let error = loop {
                let Some(first) = queue.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(call) => batch.push(call),
                        Err(_) => break,
                    }
                }
                match tokio::time::timeout(self.io_timeout, connection.run(&batch)).await {
                    Ok(Ok(replies)) => {
                        for (call, reply) in batch.into_iter().zip(replies) {
                            let _ = call.reply.send(reply);
                        }
                    }
                    Ok(Err(error)) => break error.to_string(),
                    Err(_) => break "no reply in time".to_owned(),
                }
            };
            self.connected.store(false, Ordering::Release);
            tracing::warn!(redis = %url, %error, "limits backend lost Redis: using local limits until it answers again");
            failure_logged = true;
        }
    }
}

/// Anything a connection can run over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A RESP2 value, as far as these commands answer.
#[derive(Debug)]
enum Value {
    Simple,
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

/// One connection, authenticated, with the script loaded.
struct Connection {
    io: BufStream<Box<dyn Io>>,
    sha: String,
}

impl Connection {
    async fn open(link: &Link) -> Result<Self, String> {
        let target = &link.target;
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let io: Box<dyn Io> = match &link.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| e.to_string())?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            None => Box::new(tcp),
        };
        let mut connection = Self {
            io: BufStream::new(io),
            sha: String::new(),
        };
        if let Some(password) = &target.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.username {
                auth.push(user.as_bytes());
            }
            auth.push(password.expose());
            connection.expect_ok(&auth).await?;
        }
        if target.db != 0 {
            connection
                .expect_ok(&[b"SELECT", target.db.to_string().as_bytes()])
                .await?;
        }
        match connection
            .command(&[b"SCRIPT", b"LOAD", GCRA_SCRIPT.as_bytes()])
            .await
            .map_err(|e| e.to_string())?
        {
            Value::Bulk(Some(sha)) => connection.sha = String::from_utf8_lossy(&sha).into_owned(),
            other => return Err(format!("SCRIPT LOAD answered {other:?}")),
        }
        Ok(connection)
    }

    /// Runs a command whose answer must be `+OK`.
    async fn expect_ok(&mut self, args: &[&[u8]]) -> Result<(), String> {
        match self.command(args).await.map_err(|e| e.to_string())? {
            Value::Simple => Ok(()),
            Value::Error(error) => Err(error),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    async fn command(&mut self, args: &[&[u8]]) -> std::io::Result<Value> {
        write_command(&mut self.io, args).await?;
        self.io.flush().await?;
        read_value(&mut self.io).await
    }

    /// Runs a batch of script calls in one round trip (two when Redis lost
    /// the script, restarted say: those calls go again with EVAL).
    async fn run(&mut self, batch: &[Call]) -> std::io::Result<Vec<Result<Vec<i64>, String>>> {
        for call in batch {
            self.write_call(call, false).await?;
        }
        self.io.flush().await?;
        let mut replies = Vec::with_capacity(batch.len());
        for _ in batch {
            replies.push(read_value(&mut self.io).await?);
        }
        let mut retried = Vec::new();
        for (index, reply) in replies.iter().enumerate() {
            if matches!(reply, Value::Error(error) if error.starts_with("NOSCRIPT")) {
                self.write_call(&batch[index], true).await?;
                retried.push(index);
            }
        }
        if !retried.is_empty() {
            self.io.flush().await?;
            for index in retried {
                replies[index] = read_value(&mut self.io).await?;
            }
        }
        Ok(replies.into_iter().map(script_reply).collect())
    }

    async fn write_call(&mut self, call: &Call, full_script: bool) -> std::io::Result<()> {
        let key_count = call.keys.len().to_string();
        let mut args: Vec<&[u8]> = Vec::with_capacity(3 + call.keys.len() + call.argv.len());
        if full_script {
            args.extend([b"EVAL".as_slice(), GCRA_SCRIPT.as_bytes()]);
        } else {
            args.extend([b"EVALSHA".as_slice(), self.sha.as_bytes()]);
        }
        args.push(key_count.as_bytes());
        args.extend(call.keys.iter().map(String::as_bytes));
        args.extend(call.argv.iter().map(String::as_bytes));
        write_command(&mut self.io, &args).await
    }
}

/// The script's `{i, wait}` as numbers, or Redis's error.
fn script_reply(value: Value) -> Result<Vec<i64>, String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Integer(n) => Ok(n),
                other => Err(format!("unexpected item {other:?}")),
            })
            .collect(),
        Value::Error(error) => Err(error),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

async fn write_command<W: AsyncWrite + Unpin>(out: &mut W, args: &[&[u8]]) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    buffer.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        buffer.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        buffer.extend_from_slice(arg);
        buffer.extend_from_slice(b"\r\n");
    }
    out.write_all(&buffer).await
}

/// Reads one value; arrays hold scalars only, as every answer used here.
async fn read_value<R: AsyncBufReadExt + Unpin>(input: &mut R) -> std::io::Result<Value> {
    let line = read_line(input).await?;
    if let Some(count) = line.strip_prefix('*') {
        let count: usize = match count.parse::<i64>() {
            Ok(count) if count <= MAX_REPLY as i64 => count.max(0) as usize,
            _ => return Err(protocol(&line)),
        };
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let item = read_line(input).await?;
            items.push(read_scalar(input, item).await?);
        }
        return Ok(Value::Array(items));
    }
    read_scalar(input, line).await
}

async fn read_scalar<R: AsyncBufReadExt + Unpin>(
    input: &mut R,
    line: String,
) -> std::io::Result<Value> {
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Value::Simple),
        "-" => Ok(Value::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Value::Integer)
            .map_err(|_| protocol(&line)),
        "$" => {
            let length: i64 = rest.parse().map_err(|_| protocol(&line))?;
            if length < 0 {
                return Ok(Value::Bulk(None));
            }
            if length > MAX_REPLY as i64 {
                return Err(protocol(&line));
            }
            let length = length as usize;
            let mut data = vec![0; length + 2];
            input.read_exact(&mut data).await?;
            data.truncate(length);
            Ok(Value::Bulk(Some(data)))
        }
        _ => Err(protocol(&line)),
    }
}

/// One line without its CRLF; end of stream is an error.
async fn read_line<R: AsyncBufReadExt + Unpin>(input: &mut R) -> std::io::Result<String> {
    let mut line = Vec::new();
    let read = (&mut *input)
        .take(MAX_REPLY as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if line.last() != Some(&b'\n') {
        return Err(protocol("a line that does not end"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| protocol("a line that is not UTF-8"))
}

fn protocol(line: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("not a RESP2 value: {line:.40}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_database_and_credentials() {
        let target = RedisTarget::parse("rediss://app:p%40ss@redis.example:6380/2", None).unwrap();
        assert!(target.tls);
        assert_eq!(
            (target.host.as_str(), target.port, target.db),
            ("redis.example", 6380, 2)
        );
        assert_eq!(target.username.as_deref(), Some("app"));
        assert_eq!(target.password.as_ref().unwrap().expose(), b"p@ss");
        assert_eq!(
            target.redacted_url(),
            "rediss://<redacted>@redis.example:6380/2"
        );

        let plain = RedisTarget::parse("redis://10.0.0.1", Some(Secret::new("file"))).unwrap();
        assert_eq!(
            (plain.port, plain.db, plain.username.is_none()),
            (6379, 0, true)
        );
        assert_eq!(plain.password.unwrap().expose(), b"file");
        let v6 = RedisTarget::parse("redis://:pw@[::1]:7000", None).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7000));
        assert_eq!(v6.redacted_url(), "redis://<redacted>@[::1]:7000/0");

        for bad in [
            "http://redis",
            "redis://",
            "redis://host:port",
            "redis://host/db",
            "redis://user@host",
        ] {
            let error = RedisTarget::parse(bad, None).unwrap_err().to_string();
            assert!(error.starts_with("limits.redis_url: "), "{bad}: {error}");
        }
        let both = RedisTarget::parse("redis://:pw@h", Some(Secret::new("x")));
        assert!(both.unwrap_err().to_string().contains("not both"));
    }

    #[actix_rt::test]
    async fn resp_values_round_trip() {
        let mut written = Vec::new();
        write_command(&mut written, &[b"GET", b"k"]).await.unwrap();
        assert_eq!(written, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let mut input: &[u8] = b"*2\r\n:1\r\n:1500\r\n$3\r\nabc\r\n$-1\r\n-NOSCRIPT x\r\n";
        let reply = script_reply(read_value(&mut input).await.unwrap());
        assert_eq!(reply, Ok(vec![1, 1500]));
        assert!(
            matches!(read_value(&mut input).await.unwrap(), Value::Bulk(Some(b)) if b == b"abc")
        );
        assert!(matches!(
            read_value(&mut input).await.unwrap(),
            Value::Bulk(None)
        ));
        assert!(
            matches!(read_value(&mut input).await.unwrap(), Value::Error(e) if e == "NOSCRIPT x")
        );
        assert!(read_value(&mut input).await.is_err(), "end of stream");
    }

    /// Sizes a peer announces are checked before anything is allocated.
    #[actix_rt::test]
    async fn oversized_answers_are_refused() {
        let long_line = format!("+{}\r\n", "x".repeat(MAX_REPLY));
        for answer in [
            "$4294967296\r\n",
            "*4294967296\r\n",
            "+OK",
            long_line.as_str(),
        ] {
            let mut input = answer.as_bytes();
            let error = read_value(&mut input).await.unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::InvalidData,
                "{answer:.20}"
            );
        }
        let mut input: &[u8] = b"$3\r\nabc\r\n";
        assert!(matches!(
            read_value(&mut input).await,
            Ok(Value::Bulk(Some(_)))
        ));
    }
}
