//! HTTP/1.1 pipelining: several requests written on one connection before any
//! answer is read must get their answers in order, each framed for its own
//! request. actix-http 3.20.0 framed every answer with the state of the last
//! request it had parsed, so a `GET` pipelined before a `HEAD` lost its body
//! and the client read the `HEAD`'s answer as that body (response
//! desynchronisation); `patches/actix-http` fixes it (see patches/README.md).
//!
//! The requests go to two recording upstreams with different bodies, so each
//! answer shows which request it belongs to.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Body of the distributor's answers (`/api/v1/push`).
const DISTRIBUTOR_BODY: &[u8] = b"distributor answer";
/// Body of the query-frontend's answers (`/api/v1/query`), of another length.
const QUERY_FRONTEND_BODY: &[u8] = b"query-frontend answer, longer";

/// Starts the gateway in front of a distributor and a query-frontend that
/// answer with [`DISTRIBUTOR_BODY`] and [`QUERY_FRONTEND_BODY`] after `delay`.
/// A delay keeps the first request in flight while the gateway reads the
/// ones pipelined behind it, which is when the framing used to get mixed up.
fn stack(delay: Duration) -> (Upstream, Upstream, Gateway) {
    let distributor = Upstream::start("d");
    let query_frontend = Upstream::start("q");
    for (upstream, body) in [
        (&distributor, DISTRIBUTOR_BODY),
        (&query_frontend, QUERY_FRONTEND_BODY),
    ] {
        upstream.set_reply(Reply {
            body: body.to_vec(),
            delay,
            ..Reply::default()
        });
    }
    let gateway = GatewayBuilder::new(&distributor.url(), &query_frontend.url()).start();
    (distributor, query_frontend, gateway)
}

/// One authorised request head, with `extra` header lines (each ending in
/// CRLF). No body: pipelining is about the answers' framing.
fn request(method: &str, target: &str, version: &str, extra: &str) -> String {
    format!(
        "{method} {target} {version}\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n{extra}\r\n",
        tenant_token("team-a")
    )
}

/// Opens one connection and writes all `requests` in a single write, before
/// reading anything: that is what makes them pipelined (the gateway finds
/// them together in its read buffer).
fn pipeline(gateway: &Gateway, requests: &[String]) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(gateway.addr()).unwrap();
    // A desynchronised answer must fail the test, not hang it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(requests.concat().as_bytes()).unwrap();
    BufReader::new(stream)
}

/// One response as a client reads it off the wire.
struct WireResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Shows the body as text, cut after 200 bytes: a failure message must stay
/// readable when the body is large or is another response's head.
impl std::fmt::Debug for WireResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(200)];
        f.debug_struct("WireResponse")
            .field("version", &self.version)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body", &String::from_utf8_lossy(shown))
            .finish()
    }
}

impl WireResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one CRLF-terminated line, without its CRLF. End of stream before
/// the line ends is an error: the response was cut.
fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading a line: {e}"))?;
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "the connection ended inside a line: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        ));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|e| format!("line is not UTF-8: {e}"))
}

/// Reads the next response the way an HTTP/1.1 client must (RFC 9112,
/// section 6.3): the client knows which request it answers, so an answer to
/// `HEAD` (and 1xx/204/304) has no body whatever its headers say; otherwise
/// the body is chunked, sized by `Content-Length`, or runs to the end of the
/// connection. Everything after it belongs to the next response, so a wrongly
/// framed answer shows up as a wrong body or a broken next response.
fn read_response(
    reader: &mut BufReader<TcpStream>,
    answers_head: bool,
) -> Result<WireResponse, String> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = WireResponse {
        version,
        status,
        headers,
        body: Vec::new(),
    };
    if answers_head || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
    if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("not a chunk size: {size_line:?}"))?;
            if size == 0 {
                // Trailer section, up to the empty line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let start = response.body.len();
            response.body.resize(start + size, 0);
            reader
                .read_exact(&mut response.body[start..])
                .map_err(|e| format!("reading a {size}-byte chunk: {e}"))?;
            if !read_line(reader)?.is_empty() {
                return Err("chunk data not followed by CRLF".into());
            }
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length {length:?}"))?;
        response.body.resize(length, 0);
        reader
            .read_exact(&mut response.body)
            .map_err(|e| format!("reading a {length}-byte body: {e}"))?;
    } else {
        reader
            .read_to_end(&mut response.body)
            .map_err(|e| format!("reading a body up to the end of the connection: {e}"))?;
    }
    Ok(response)
}

/// [`read_response`], failing the test with what was read so far.
fn next_response(
    reader: &mut BufReader<TcpStream>,
    answers_head: bool,
    which: &str,
) -> WireResponse {
    read_response(reader, answers_head)
        .unwrap_or_else(|error| panic!("the {which} response cannot be read: {error}"))
}

/// Asserts that `response` is a complete `200` from the upstream `name` with
/// `body` (`None` for an answer to `HEAD`, which announces the body's length
/// but carries none).
fn assert_answer(response: &WireResponse, which: &str, name: &str, body: Option<&[u8]>) {
    assert_eq!(response.status, 200, "{which} response: {response:?}");
    assert_eq!(
        response.header("x-upstream-name"),
        Some(name),
        "{which} response comes from the wrong upstream: {response:?}"
    );
    match body {
        Some(body) => assert!(
            response.body == body,
            "{which} response body is not {:?}: {response:?}",
            String::from_utf8_lossy(body)
        ),
        None => assert!(response.body.is_empty(), "{which} response: {response:?}"),
    }
}

/// After the pipelined answers the connection is still in step: one more
/// request (closing it, to the query-frontend) gets exactly its own answer and
/// then the end of the stream, so no stray body bytes were left behind.
fn assert_in_step(mut reader: BufReader<TcpStream>) {
    let close = request(
        "GET",
        "/api/v1/query?query=up",
        "HTTP/1.1",
        "Connection: close\r\n",
    );
    reader.get_mut().write_all(close.as_bytes()).unwrap();
    let response = next_response(&mut reader, false, "follow-up");
    assert_answer(&response, "follow-up", "q", Some(QUERY_FRONTEND_BODY));
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the gateway closes the connection after the Connection: close answer");
    assert!(
        rest.is_empty(),
        "bytes after the last response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// The methods and targets the upstreams received, sorted: each request
/// reached its upstream exactly once (their order is the order of answers,
/// checked above).
fn received(upstreams: &[&Upstream]) -> Vec<String> {
    let mut seen: Vec<String> = upstreams
        .iter()
        .flat_map(|u| u.requests())
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    seen.sort();
    seen
}

/// `GET` then `HEAD` on one connection, with the upstreams answering after
/// `delay`: the `GET` keeps its body, the `HEAD` gets none, and the
/// connection is still in step after both.
fn get_then_head(delay: Duration) {
    let (distributor, query_frontend, gateway) = stack(delay);
    let mut reader = pipeline(
        &gateway,
        &[
            request("GET", "/api/v1/push", "HTTP/1.1", ""),
            request("HEAD", "/api/v1/query?query=up", "HTTP/1.1", ""),
        ],
    );

    let get = next_response(&mut reader, false, "first (GET)");
    assert_eq!(get.version, "HTTP/1.1", "first (GET) response: {get:?}");
    assert_answer(&get, "first (GET)", "d", Some(DISTRIBUTOR_BODY));

    let head = next_response(&mut reader, true, "second (HEAD)");
    assert_eq!(head.version, "HTTP/1.1", "second (HEAD) response: {head:?}");
    assert_answer(&head, "second (HEAD)", "q", None);
    // The HEAD answer announces the GET body's length, and only announces it.
    assert_eq!(
        head.header("content-length"),
        Some(QUERY_FRONTEND_BODY.len().to_string().as_str())
    );

    assert_in_step(reader);
    assert_eq!(
        received(&[&distributor, &query_frontend]),
        [
            "GET /api/v1/push",
            "GET /api/v1/query?query=up",
            "HEAD /api/v1/query?query=up"
        ]
    );
}

#[test]
fn get_then_head_get_keeps_its_body() {
    get_then_head(Duration::ZERO);
}

#[test]
fn get_then_head_with_a_slow_upstream_get_keeps_its_body() {
    // The HEAD is certainly parsed while the GET waits for its upstream.
    get_then_head(Duration::from_millis(300));
}

#[test]
fn get_head_get_each_answer_framed_for_its_request() {
    let (distributor, query_frontend, gateway) = stack(Duration::from_millis(100));
    let mut reader = pipeline(
        &gateway,
        &[
            request("GET", "/api/v1/push", "HTTP/1.1", ""),
            request("HEAD", "/api/v1/query?query=up", "HTTP/1.1", ""),
            request("GET", "/api/v1/query?query=up", "HTTP/1.1", ""),
        ],
    );

    let first = next_response(&mut reader, false, "first (GET)");
    assert_answer(&first, "first (GET)", "d", Some(DISTRIBUTOR_BODY));
    let second = next_response(&mut reader, true, "second (HEAD)");
    assert_answer(&second, "second (HEAD)", "q", None);
    let third = next_response(&mut reader, false, "third (GET)");
    assert_answer(&third, "third (GET)", "q", Some(QUERY_FRONTEND_BODY));
    for (which, response) in [("first", &first), ("second", &second), ("third", &third)] {
        assert_eq!(
            response.version, "HTTP/1.1",
            "{which} response: {response:?}"
        );
    }

    assert_in_step(reader);
    assert_eq!(
        received(&[&distributor, &query_frontend]),
        [
            "GET /api/v1/push",
            "GET /api/v1/query?query=up",
            "GET /api/v1/query?query=up",
            "HEAD /api/v1/query?query=up"
        ]
    );
}

#[test]
fn chunked_get_then_head_keeps_its_chunks() {
    // An upstream answer without Content-Length reaches the client chunked.
    let (distributor, query_frontend, gateway) = stack(Duration::from_millis(100));
    distributor.set_reply(Reply {
        generated_len: 200_000,
        delay: Duration::from_millis(100),
        ..Reply::default()
    });
    let mut reader = pipeline(
        &gateway,
        &[
            request("GET", "/api/v1/push", "HTTP/1.1", ""),
            request("HEAD", "/api/v1/query?query=up", "HTTP/1.1", ""),
        ],
    );

    let get = next_response(&mut reader, false, "first (GET)");
    assert_eq!(
        get.header("transfer-encoding"),
        Some("chunked"),
        "first (GET) response: {:?}",
        get.headers
    );
    assert_eq!(get.status, 200);
    assert_eq!(get.body.len(), 200_000, "first (GET) body length");
    assert!(
        get.body == pattern_chunk(0, 200_000),
        "first (GET) body bytes"
    );

    let head = next_response(&mut reader, true, "second (HEAD)");
    assert_answer(&head, "second (HEAD)", "q", None);
    assert_in_step(reader);
    assert_eq!(
        received(&[&distributor, &query_frontend]),
        [
            "GET /api/v1/push",
            "GET /api/v1/query?query=up",
            "HEAD /api/v1/query?query=up"
        ]
    );
}

#[test]
fn chunked_get_then_upgrade_request_keeps_its_chunks() {
    // A WebSocket upgrade request has a body that runs to the end of the
    // connection (actix reads it as a stream); its parsing must not turn the
    // chunked answer before it into an unframed one.
    let (distributor, _query_frontend, gateway) = stack(Duration::ZERO);
    distributor.set_reply(Reply {
        generated_len: 200_000,
        delay: Duration::from_millis(100),
        ..Reply::default()
    });
    let mut reader = pipeline(
        &gateway,
        &[
            request("GET", "/api/v1/push", "HTTP/1.1", ""),
            request(
                "GET",
                "/api/v1/query?query=up",
                "HTTP/1.1",
                "Connection: Upgrade\r\nUpgrade: websocket\r\n",
            ),
        ],
    );

    let get = next_response(&mut reader, false, "first (GET)");
    assert_eq!(get.status, 200, "first (GET) response: {get:?}");
    assert_eq!(get.header("transfer-encoding"), Some("chunked"), "{get:?}");
    assert!(
        get.body == pattern_chunk(0, 200_000),
        "first (GET) body: {get:?}"
    );
}

/// An HTTP/1.1 request then an HTTP/1.0 one on one connection, with the
/// upstreams answering after `delay`: each answer carries its request's
/// version, the first keeps the connection open and the second closes it.
fn http11_then_http10(delay: Duration) {
    let (_distributor, _query_frontend, gateway) = stack(delay);
    let mut reader = pipeline(
        &gateway,
        &[
            request("GET", "/api/v1/push", "HTTP/1.1", ""),
            request("GET", "/api/v1/query?query=up", "HTTP/1.0", ""),
        ],
    );

    let first = next_response(&mut reader, false, "first (HTTP/1.1)");
    assert_eq!(
        first.version, "HTTP/1.1",
        "first (HTTP/1.1) response: {first:?}"
    );
    assert_answer(&first, "first (HTTP/1.1)", "d", Some(DISTRIBUTOR_BODY));
    assert_ne!(
        first.header("connection").map(str::to_ascii_lowercase),
        Some("close".into()),
        "the HTTP/1.1 request asked for nothing but keep-alive: {first:?}"
    );

    let second = next_response(&mut reader, false, "second (HTTP/1.0)");
    assert_eq!(
        second.version, "HTTP/1.0",
        "second (HTTP/1.0) response: {second:?}"
    );
    assert_answer(&second, "second (HTTP/1.0)", "q", Some(QUERY_FRONTEND_BODY));
    // HTTP/1.0 without keep-alive: the gateway closes after answering.
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the gateway closes the connection after the HTTP/1.0 answer");
    assert!(
        rest.is_empty(),
        "bytes after the HTTP/1.0 response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn http11_then_http10_each_answered_in_its_version() {
    http11_then_http10(Duration::ZERO);
}

#[test]
fn http11_then_http10_with_a_slow_upstream_each_answered_in_its_version() {
    http11_then_http10(Duration::from_millis(300));
}

/// `Expect: 100-continue` on a kept-alive connection, twice: each push gets
/// `100 Continue` before its body is sent, then its own answer, and the
/// upstream receives each body whole. Between the two the connection is idle,
/// so the second request also covers a connection whose buffers were given
/// back (patches/README.md) and whose request state starts over.
#[test]
fn expect_continue_pushes_on_one_kept_alive_connection_each_get_their_answer() {
    let (distributor, _query_frontend, gateway) = stack(Duration::ZERO);
    let mut stream = TcpStream::connect(gateway.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let bodies: [&[u8]; 2] = [b"first push body", b"the second push body, longer"];
    for (i, body) in bodies.iter().enumerate() {
        let which = format!("push {}", i + 1);
        let head = request(
            "POST",
            "/api/v1/push",
            "HTTP/1.1",
            &format!("Content-Length: {}\r\nExpect: 100-continue\r\n", body.len()),
        );
        stream.write_all(head.as_bytes()).unwrap();
        let interim = next_response(&mut reader, false, &format!("{which}'s interim"));
        assert_eq!(interim.status, 100, "{which}: {interim:?}");
        stream.write_all(body).unwrap();
        let answer = next_response(&mut reader, false, &which);
        assert_answer(&answer, &which, "d", Some(DISTRIBUTOR_BODY));
        std::thread::sleep(Duration::from_millis(200));
    }
    let pushed: Vec<Vec<u8>> = distributor.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(pushed, bodies.map(<[u8]>::to_vec));
}
