//! HTTPS listener (certificates generated here with rcgen), mTLS, certificate
//! reload without a restart, and https upstreams.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::HandshakeKind;

struct Pki {
    dir: PathBuf,
}

/// A CA and the PEM files of certificates it signed.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: String,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let pem = issuer.pem();
    Ca { issuer, pem }
}

/// (certificate PEM, key PEM) for `names`, signed by `ca`.
fn leaf(ca: &Ca, names: &[&str], common_name: &str) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("cortex-gateway-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        // Write then rename, as Kubernetes does, so a reader never sees half a file.
        let temporary = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, contents).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
        path
    }
}

fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn tls_client(config: Arc<rustls::ClientConfig>) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(config))
        .timeout(Duration::from_secs(20))
        .finish()
}

async fn status(client: &awc::Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .bearer_auth(tenant_token("tls-tenant"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn https_gateway(upstream: &Upstream, cert: &Path, key: &Path, extra: &[String]) -> Gateway {
    let mut builder = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .arg(&format!("-server.http-tls-cert-path={}", cert.display()))
        .arg(&format!("-server.http-tls-key-path={}", key.display()))
        .https();
    for arg in extra {
        builder = builder.arg(arg);
    }
    builder.start()
}

/// A gateway serving HTTPS with a leaf (for 127.0.0.1 and localhost) of a
/// new CA, in front of a recording upstream.
struct HttpsSetup {
    ca: Ca,
    upstream: Upstream,
    gateway: Gateway,
    _pki: Pki,
}

impl HttpsSetup {
    fn start(tag: &str) -> Self {
        let pki = Pki::new(tag);
        let ca = new_ca("test CA");
        let (cert, key) = leaf(&ca, &["127.0.0.1", "localhost"], "gateway");
        let upstream = Upstream::start("q");
        let gateway = https_gateway(
            &upstream,
            &pki.write("tls.crt", &cert),
            &pki.write("tls.key", &key),
            &[],
        );
        Self {
            ca,
            upstream,
            gateway,
            _pki: pki,
        }
    }
}

#[actix_rt::test]
async fn serves_https_with_the_configured_certificate() {
    let HttpsSetup {
        ca,
        upstream,
        gateway,
        _pki,
    } = HttpsSetup::start("serve");
    let url = format!("https://127.0.0.1:{}/api/v1/labels", gateway.port);
    assert_eq!(
        status(&tls_client(client_config(&ca.pem, None)), &url).await,
        Ok(200)
    );
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("tls-tenant"));
    let other_ca = new_ca("someone else");
    assert!(
        status(&tls_client(client_config(&other_ca.pem, None)), &url)
            .await
            .is_err()
    );
}

/// A client that reconnects resumes its session from the ticket the
/// gateway gave it (the gateway keeps no session cache), so Prometheus
/// replicas that reconnect skip the full handshake where their TLS stack
/// resumes.
#[test]
fn a_reconnecting_client_resumes_its_tls_session() {
    use std::io::{Read, Write};
    let setup = HttpsSetup::start("resume");
    let config = client_config(&setup.ca.pem, None);
    for expected in [HandshakeKind::Full, HandshakeKind::Resumed] {
        let mut connection =
            rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
        let mut socket = std::net::TcpStream::connect(setup.gateway.addr()).unwrap();
        let mut tls = rustls::Stream::new(&mut connection, &mut socket);
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response);
        assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
        assert_eq!(connection.handshake_kind(), Some(expected));
    }
}

#[actix_rt::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new("mtls");
    let ca = new_ca("test CA");
    let (cert, key) = leaf(&ca, &["127.0.0.1"], "gateway");
    let (client_cert, client_key) = leaf(&ca, &["prometheus"], "prometheus");
    let stranger_ca = new_ca("stranger CA");
    let (stranger_cert, stranger_key) = leaf(&stranger_ca, &["intruder"], "intruder");
    let upstream = Upstream::start("q");
    let gateway = https_gateway(
        &upstream,
        &pki.write("tls.crt", &cert),
        &pki.write("tls.key", &key),
        &[
            "-server.http-tls-client-auth=RequireAndVerifyClientCert".to_owned(),
            format!(
                "-server.http-tls-ca-path={}",
                pki.write("ca.crt", &ca.pem).display()
            ),
        ],
    );
    let url = format!("https://127.0.0.1:{}/api/v1/labels", gateway.port);
    assert!(
        status(&tls_client(client_config(&ca.pem, None)), &url)
            .await
            .is_err(),
        "no client certificate"
    );
    assert!(
        status(
            &tls_client(client_config(
                &ca.pem,
                Some((&stranger_cert, &stranger_key))
            )),
            &url
        )
        .await
        .is_err(),
        "a certificate from another CA"
    );
    assert_eq!(
        status(
            &tls_client(client_config(&ca.pem, Some((&client_cert, &client_key)))),
            &url
        )
        .await,
        Ok(200)
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[actix_rt::test]
async fn certificates_reload_on_sighup_and_on_file_change_without_a_restart() {
    let pki = Pki::new("reload");
    let old_ca = new_ca("old CA");
    let new_ca = new_ca("new CA");
    let (cert, key) = leaf(&old_ca, &["127.0.0.1"], "gateway-old");
    let cert_path = pki.write("tls.crt", &cert);
    let key_path = pki.write("tls.key", &key);
    let upstream = Upstream::start("q");
    let gateway = https_gateway(&upstream, &cert_path, &key_path, &[]);
    let url = format!("https://127.0.0.1:{}/api/v1/labels", gateway.port);
    let trusts_new = tls_client(client_config(&new_ca.pem, None));
    assert!(status(&trusts_new, &url).await.is_err());

    let (cert, key) = leaf(&new_ca, &["127.0.0.1"], "gateway-new");
    pki.write("tls.key", &key);
    pki.write("tls.crt", &cert);
    gateway.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // New connections each time: the client must see the new certificate.
        if status(&tls_client(client_config(&new_ca.pem, None)), &url).await == Ok(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served:\n{}",
            gateway.logs()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // The signal reloaded it, not the poll that would have found the file
    // a few seconds later anyway.
    assert!(
        reload_lines(&gateway, "TLS certificate reloaded", "SIGHUP") >= 1,
        "{}",
        gateway.logs()
    );

    // A broken file is refused and the working certificate stays.
    pki.write("tls.crt", "not a certificate");
    gateway.signal("HUP");
    wait_for_log(&gateway, "TLS certificate reload failed");
    assert_eq!(
        status(&tls_client(client_config(&new_ca.pem, None)), &url).await,
        Ok(200)
    );
    assert!(gateway.logs().contains("TLS certificate reload failed"));

    // File change alone (no signal) is picked up by the poll.
    let (cert, key) = leaf(&old_ca, &["127.0.0.1"], "gateway-again");
    pki.write("tls.key", &key);
    pki.write("tls.crt", &cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if status(&tls_client(client_config(&old_ca.pem, None)), &url).await == Ok(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the changed files were never picked up"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn bad_tls_settings_are_startup_errors_naming_the_key() {
    let pki = Pki::new("bad");
    let ca = new_ca("test CA");
    let (cert, _) = leaf(&ca, &["127.0.0.1"], "gateway");
    let (_, other_key) = leaf(&ca, &["127.0.0.1"], "other");
    let cert_path = pki.write("tls.crt", &cert);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!(
                "-server.http-tls-cert-path={}",
                cert_path.display()
            )],
            "server.http_tls_key_path: ",
        ),
        (
            vec![
                format!("-server.http-tls-cert-path={}", cert_path.display()),
                format!(
                    "-server.http-tls-key-path={}",
                    pki.write("other.key", &other_key).display()
                ),
            ],
            "server.http_tls_key_path: does not match",
        ),
        (
            vec![
                format!(
                    "-server.http-tls-cert-path={}",
                    pki.write("junk.crt", "junk").display()
                ),
                format!(
                    "-server.http-tls-key-path={}",
                    pki.write("other2.key", &other_key).display()
                ),
            ],
            "server.http_tls_cert_path: ",
        ),
        (
            vec![
                format!("-server.http-tls-cert-path={}", cert_path.display()),
                format!(
                    "-server.http-tls-key-path={}",
                    pki.write("k.key", &other_key).display()
                ),
                "-server.http-tls-client-auth=RequireAnyClientCert".to_owned(),
            ],
            "server.http_tls_client_auth: ",
        ),
    ];
    for (args, expected) in cases {
        let output = command()
            .arg("check-config")
            .args(&args)
            .args([
                "-gateway.auth.jwt-secret=s",
                "-gateway.distributor.address=http://d",
                "-gateway.query-frontend.address=http://q",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
    }
}

/// An https upstream serving with `cert`/`key`.
fn https_upstream(cert: &str, key: &str) -> String {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(|| {
                App::new().default_service(web::to(|req: actix_web::HttpRequest| async move {
                    let tenant = req
                        .headers()
                        .get("x-scope-orgid")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    HttpResponse::Ok().body(format!("tls upstream saw {tenant}"))
                }))
            })
            .workers(1)
            .disable_signals()
            .listen_rustls_0_23(listener, config)
            .unwrap()
            .run()
            .await
        })
    });
    format!("https://localhost:{port}")
}

#[actix_rt::test]
async fn https_upstreams_are_verified_against_system_roots_or_the_configured_ca() {
    let pki = Pki::new("upstream");
    let ca = new_ca("upstream CA");
    let (cert, key) = leaf(&ca, &["localhost"], "upstream");
    let upstream = https_upstream(&cert, &key);
    let plain = Upstream::start("plain");
    let ca_file = pki.write("upstream-ca.crt", &ca.pem);

    let untrusted = GatewayBuilder::new(&upstream, &plain.url()).start();
    let response = client()
        .post(untrusted.url("/api/v1/push"))
        .bearer_auth(tenant_token("t1"))
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(response.status(), 502, "an unknown CA is refused");

    let trusted = GatewayBuilder::new(&upstream, &plain.url())
        .env(
            "CORTEX_GATEWAY__PROXY__TLS_CA_FILE",
            ca_file.to_str().unwrap(),
        )
        .start();
    let mut response = client()
        .post(trusted.url("/api/v1/push"))
        .bearer_auth(tenant_token("t1"))
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().await.unwrap(), "tls upstream saw t1");

    let insecure = GatewayBuilder::new(&upstream, &plain.url())
        .env("CORTEX_GATEWAY__PROXY__TLS_INSECURE_SKIP_VERIFY", "true")
        .start();
    let response = client()
        .post(insecure.url("/api/v1/push"))
        .bearer_auth(tenant_token("t2"))
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        insecure.logs().contains("NOT verified"),
        "skipping verification is logged loudly"
    );
}
