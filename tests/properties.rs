//! Property tests over the parsers that face attackers: path canonical
//! checks, credential extraction and token verification. They stand in for
//! fuzzing where no nightly toolchain is available.

use std::time::Duration;

use cortex_gateway::auth::extract::token_from_value;
use cortex_gateway::auth::{mint_token, Authenticator, TokenRequest};
use cortex_gateway::config::AuthSettings;
use cortex_gateway::routes::check_canonical;
use proptest::prelude::*;

fn settings() -> AuthSettings {
    AuthSettings {
        leeway: Duration::ZERO,
        ..AuthSettings::with_secret("property-test-secret-0123456789ab")
    }
}

fn valid_token(tenant: &str) -> String {
    mint_token(
        &settings(),
        &TokenRequest {
            expires_in: Some(Duration::from_secs(3600)),
            ..TokenRequest::new(tenant)
        },
    )
    .unwrap()
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_paths_have_no_traversal(path in "(/|[a-z.%2eEfF/\\\\]{0,4}|%[0-9a-fA-F]{2}){0,12}") {
        if check_canonical(&path).is_ok() {
            prop_assert!(path.starts_with('/'));
            let trimmed = path.strip_suffix('/').unwrap_or(&path);
            if trimmed.len() > 1 {
                for segment in trimmed[1..].split('/') {
                    prop_assert!(!segment.is_empty() && segment != "." && segment != "..", "{path}");
                }
            }
            let lower = path.to_ascii_lowercase();
            for forbidden in ["%2e", "%2f", "%5c", "%00", "\\"] {
                prop_assert!(!lower.contains(forbidden), "{path}");
            }
        }
    }

    #[test]
    fn check_canonical_never_panics(path in any::<String>()) {
        let _ = check_canonical(&path);
    }

    #[test]
    fn credential_parsing_never_panics(value in any::<String>()) {
        let _ = token_from_value(&value);
    }

    #[test]
    fn arbitrary_tokens_are_refused_without_panicking(token in "[A-Za-z0-9_.=-]{0,400}") {
        let authenticator = Authenticator::new(&settings()).unwrap();
        prop_assert!(authenticator.verify(&token).is_err());
    }

    #[test]
    fn any_change_to_header_or_claims_breaks_the_signature(
        tenant in "[a-z0-9-]{1,20}",
        position in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
    ) {
        let authenticator = Authenticator::new(&settings()).unwrap();
        let token = valid_token(&tenant);
        let verified = authenticator.verify(&token).unwrap();
        prop_assert_eq!(verified.as_str(), tenant.as_str());
        let signed_part = token.rfind('.').unwrap();
        let mut bytes = token.into_bytes();
        let at = position.index(signed_part);
        prop_assume!(bytes[at] != b'.');
        let new = BASE64URL[replacement.index(BASE64URL.len())];
        prop_assume!(new != bytes[at]);
        bytes[at] = new;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(authenticator.verify(&tampered).is_err());
    }
}

// ---- the response side: what an upstream sends ------------------------------

mod upstream_responses {
    use std::convert::Infallible;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use cortex_gateway::config::{ProxySettings, Upstream};
    use cortex_gateway::upstream::UpstreamClient;
    use futures_util::StreamExt;
    use hyper::body::{Bytes, Frame};
    use proptest::prelude::*;

    /// A request without a body.
    struct NoBody;

    impl hyper::body::Body for NoBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(None)
        }

        fn is_end_stream(&self) -> bool {
            true
        }
    }

    /// One upstream answer built from its parts: interim responses, the
    /// final status, its framing, and what follows it on the connection.
    fn answer(interim: &[u16], status: u16, framing: u8, trailing: bool, secret: &str) -> Vec<u8> {
        let mut out = String::new();
        for code in interim {
            out.push_str(&format!("HTTP/1.1 {code} Interim\r\n\r\n"));
        }
        out.push_str(&format!("HTTP/1.1 {status} Status\r\n"));
        match framing {
            0 => out.push_str(&format!("Content-Length: {}\r\n\r\n{secret}", secret.len())),
            1 => out.push_str(&format!(
                "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{secret}\r\n0\r\n\r\n",
                secret.len()
            )),
            2 => out.push_str(&format!(
                "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{secret}\r\n0\r\n\r\n",
                secret.len()
            )),
            3 => out.push_str(&format!("Transfer-Encoding: identity\r\n\r\n{secret}")),
            4 => out.push_str(&format!("Content-Length: 2\r\n\r\nok{secret}")),
            _ => out.push_str(&format!("\r\n{secret}")),
        }
        if trailing {
            out.push_str(&format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{secret}",
                secret.len()
            ));
        }
        out.into_bytes()
    }

    /// Serves `first` to the first request (closing that connection after
    /// it when `closes`), then `for-second` to every request on any
    /// connection, keeping connections open.
    fn serve(first: Vec<u8>, closes: bool) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut first = Some(first);
            for stream in listener.incoming().take(8).flatten() {
                let mut answer = first.take();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line != "\r\n" => continue,
                            Ok(_) => {}
                        }
                        let (bytes, last) = match answer.take() {
                            Some(first) => (first, closes),
                            None => (
                                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfor-second".to_vec(),
                                false,
                            ),
                        };
                        if writer.write_all(&bytes).is_err() || last {
                            return;
                        }
                    }
                });
            }
        });
        Upstream::parse(&format!("http://{addr}")).unwrap()
    }

    fn request(upstream: &Upstream) -> hyper::Request<NoBody> {
        hyper::Request::builder()
            .uri("/api/v1/query")
            .header("host", upstream.authority())
            .body(NoBody)
            .unwrap()
    }

    /// The default `[proxy]` settings, with short timeouts.
    fn settings() -> ProxySettings {
        let mut settings = cortex_gateway::config::Settings::load(
            None,
            [
                ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://d"),
                ("CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND", "http://q"),
                ("CORTEX_GATEWAY__AUTH__JWT_SECRET", "s"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
            &Default::default(),
        )
        .unwrap()
        .proxy;
        settings.timeout = Duration::from_secs(2);
        settings.connect_timeout = Duration::from_secs(2);
        settings
    }

    fn gauges() -> prometheus::IntGaugeVec {
        prometheus::IntGaugeVec::new(prometheus::Opts::new("c", "c"), &["upstream", "state"])
            .unwrap()
    }

    fn tls() -> Arc<rustls::ClientConfig> {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the first response looks like, the next request on the
        /// same client gets its own answer, never a byte of the first.
        #[test]
        fn the_next_request_never_reads_the_previous_response(
            interim in prop::collection::vec(prop::sample::select(vec![100u16, 102, 103]), 0..3),
            status in prop::sample::select(vec![200u16, 404, 500, 101]),
            framing in 0u8..6,
            trailing in any::<bool>(),
        ) {
            let secret = "SECRET-first";
            // A body delimited by the close ends when the upstream closes.
            let closes = matches!(framing, 3 | 5);
            let upstream = serve(answer(&interim, status, framing, trailing, secret), closes);
            let second = actix_rt::System::new().block_on(async {
                let client = UpstreamClient::new(tls(), &settings(), gauges());
                if let Ok(response) = client.send(&upstream, request(&upstream)).await {
                    let mut body = response.into_body();
                    while let Some(Ok(_)) = body.next().await {}
                }
                let response = client.send(&upstream, request(&upstream)).await;
                let response = response.map_err(|e| e.to_string())?;
                let mut text = Vec::new();
                let mut body = response.into_body();
                while let Some(chunk) = body.next().await {
                    text.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
                }
                Ok::<_, String>(String::from_utf8_lossy(&text).into_owned())
            });
            prop_assert_eq!(second, Ok("for-second".to_owned()));
        }
    }
}
