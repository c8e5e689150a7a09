//! A minimal blocking HTTP/1.1 client for OTLP export.
//!
//! The batch span processor exports from its own thread, so a blocking
//! client is enough, and writing the one POST it needs here keeps a second
//! HTTP stack (reqwest, hyper) out of the build. Plain `http://` only: the
//! collector or agent is expected on the node or in the pod.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct BlockingHttpClient;

#[async_trait]
impl HttpClient for BlockingHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        post(request).map_err(|e| Box::new(e) as HttpError)
    }
}

fn post(request: Request<Bytes>) -> std::io::Result<Response<Bytes>> {
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other("OTLP endpoint has no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let address = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("OTLP endpoint does not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;

    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        request.method(),
        request.body().len()
    );
    for (name, value) in request.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(request.body())?;

    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed response from the OTLP endpoint"))?;
    // The body only matters for partial-success details; read a bounded amount.
    let mut rest = Vec::new();
    reader.take(64 * 1024).read_to_end(&mut rest)?;
    let body = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| Bytes::copy_from_slice(&rest[end + 4..]))
        .unwrap_or_default();
    Response::builder()
        .status(status)
        .body(body)
        .map_err(std::io::Error::other)
}
