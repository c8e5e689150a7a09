//! Experiment for issue 5 (feature `hyper-upstream`): the upstream call made
//! with hyper's HTTP/1.1 client inside the actix handler instead of awc, to
//! measure the two side by side. Plain `http://` upstreams only; one pool of
//! idle connections per worker and upstream.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use futures_util::Stream;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::metrics::UpstreamErrorKind;
use crate::proxy::{ProxyError, Target};

/// The request body as hyper sees it.
pub enum UpstreamBody<S> {
    Empty,
    Stream { inner: S, length: Option<u64> },
}

impl<S> Body for UpstreamBody<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Stream { inner, .. } => Pin::new(inner)
                .poll_next(cx)
                .map(|item| item.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, UpstreamBody::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Stream {
                length: Some(length),
                ..
            } => SizeHint::with_exact(*length),
            UpstreamBody::Stream { length: None, .. } => SizeHint::default(),
        }
    }
}

type Sender<S> = SendRequest<UpstreamBody<S>>;

/// Idle connections per upstream authority, for one worker.
pub struct Pool<S> {
    idle: RefCell<HashMap<String, Vec<Sender<S>>>>,
    connect_timeout: Duration,
    timeout: Duration,
}

impl<S> Pool<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + 'static,
{
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Rc<Self> {
        Rc::new(Self {
            idle: RefCell::default(),
            connect_timeout,
            timeout,
        })
    }

    async fn checkout(&self, authority: &str) -> Result<Sender<S>, UpstreamErrorKind> {
        loop {
            let idle = self.idle.borrow_mut().get_mut(authority).and_then(Vec::pop);
            let Some(mut sender) = idle else { break };
            // A connection handed back at the end of a body may not have
            // seen that end yet: wait for it rather than open a new one.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = actix_rt::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(authority),
        )
        .await
        .map_err(|_| UpstreamErrorKind::Timeout)?
        .map_err(|_| UpstreamErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| UpstreamErrorKind::Connect)?;
        actix_rt::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn checkin(&self, authority: &str, sender: Sender<S>) {
        if !sender.is_closed() {
            self.idle
                .borrow_mut()
                .entry(authority.to_owned())
                .or_default()
                .push(sender);
        }
    }

    /// Sends the request and streams the answer back, like the awc path.
    pub async fn forward(
        self: &Rc<Self>,
        target: &Target,
        req: &HttpRequest,
        headers: HeaderMap,
        body: UpstreamBody<S>,
    ) -> Result<Upstreamed<S>, ProxyError> {
        let authority = target
            .upstream
            .origin
            .strip_prefix("http://")
            .expect("the hyper experiment serves http:// upstreams only");
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut uri =
            String::with_capacity(target.upstream.path_prefix.len() + path_and_query.len());
        uri.push_str(&target.upstream.path_prefix);
        uri.push_str(path_and_query);

        let mut outgoing = hyper::Request::builder()
            .method(req.method().as_str())
            .uri(uri)
            .body(body)
            .map_err(|_| ProxyError::ClientBody)?;
        let out_headers = outgoing.headers_mut();
        out_headers.reserve(headers.len() + 1);
        for (name, value) in &headers {
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                hyper::header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                out_headers.append(name, value);
            }
        }
        if let Ok(host) = hyper::header::HeaderValue::from_str(authority) {
            out_headers.insert(hyper::header::HOST, host);
        }

        target.metrics.forwarded();
        let started = Instant::now();
        let failed = |kind: UpstreamErrorKind| {
            target.metrics.error(kind);
            target.metrics.observe("error", started.elapsed());
            let upstream = target.name.clone();
            match kind {
                UpstreamErrorKind::Connect => ProxyError::Unreachable { upstream },
                UpstreamErrorKind::Timeout => ProxyError::Timeout { upstream },
                _ => ProxyError::Failed { upstream },
            }
        };
        let mut sender = self.checkout(authority).await.map_err(failed)?;
        let response = actix_rt::time::timeout(self.timeout, sender.send_request(outgoing))
            .await
            .map_err(|_| failed(UpstreamErrorKind::Timeout))?
            .map_err(|_| failed(UpstreamErrorKind::Reset))?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .map_err(|_| failed(UpstreamErrorKind::Protocol))?;
        target.metrics.observe(status.as_str(), started.elapsed());

        let (parts, incoming) = response.into_parts();
        let mut builder = HttpResponse::build(status);
        let mut length = None;
        for (name, value) in &parts.headers {
            if name == hyper::header::CONTENT_LENGTH {
                length = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
                continue;
            }
            if name == hyper::header::CONNECTION
                || name == hyper::header::TRANSFER_ENCODING
                || name == "keep-alive"
            {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                builder.append_header((name, value));
            }
        }
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            self.checkin(authority, sender);
            return Ok(Upstreamed {
                response: builder,
                body: None,
            });
        }
        let body = ResponseBody {
            incoming,
            sender: Some(sender),
            pool: Rc::clone(self),
            authority: authority.to_owned(),
        };
        Ok(Upstreamed {
            response: builder,
            body: Some((body, length)),
        })
    }
}

/// The upstream's response head, converted, and its body with its length.
pub struct Upstreamed<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + 'static,
{
    pub response: HttpResponseBuilder,
    pub body: Option<(ResponseBody<S>, Option<u64>)>,
}

/// The upstream's body; the connection goes back to the pool at its end.
pub struct ResponseBody<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + 'static,
{
    incoming: Incoming,
    sender: Option<Sender<S>>,
    pool: Rc<Pool<S>>,
    authority: String,
}

impl<S> Drop for ResponseBody<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + 'static,
{
    fn drop(&mut self) {
        // actix never polls a body it knows to be empty (Content-Length: 0):
        // the connection is still reusable when hyper has seen the end.
        if let Some(sender) = self.sender.take() {
            if self.incoming.is_end_stream() {
                let authority = std::mem::take(&mut self.authority);
                self.pool.checkin(&authority, sender);
            }
        }
    }
}

impl<S> Stream for ResponseBody<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin + 'static,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match Pin::new(&mut self.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(error))) => {
                    self.sender = None;
                    Poll::Ready(Some(Err(std::io::Error::other(error))))
                }
                Poll::Ready(None) => {
                    if let Some(sender) = self.sender.take() {
                        let authority = std::mem::take(&mut self.authority);
                        self.pool.checkin(&authority, sender);
                    }
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}
