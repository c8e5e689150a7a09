//! TLS with rustls (ring): the listener's certificate, reloaded without a
//! restart, optional client certificates (mTLS), and the trust settings for
//! https upstreams.
//!
//! Certificates rotate (cert-manager renews them every few weeks), so the
//! listener reads them through a resolver that swaps in new files on SIGHUP
//! or when their modification time changes. A bad new file is logged and the
//! old certificate stays in use: a rotation mistake must not take the
//! gateway down.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::reload::{Reload, Trigger};
use crate::settings::ConfigError;
use crate::upstream::ProxySettings;

/// A TLS setting that cannot be used, naming its key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

fn error(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path)
        .map_err(|e| error(key, format!("cannot read {}: {e}", path.display())))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            error(
                key,
                format!("{}: not PEM certificates: {e}", path.display()),
            )
        })?;
    if certificates.is_empty() {
        return Err(error(
            key,
            format!("{} holds no certificate", path.display()),
        ));
    }
    Ok(certificates)
}

fn read_roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(key, path)? {
        roots
            .add(certificate)
            .map_err(|e| error(key, format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn load_certified_key(settings: &ServerTlsSettings) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates("server.http_tls_cert_path", &settings.cert_path)?;
    let pem = std::fs::read(&settings.key_path).map_err(|e| {
        error(
            "server.http_tls_key_path",
            format!("cannot read {}: {e}", settings.key_path.display()),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        error(
            "server.http_tls_key_path",
            format!(
                "{}: not a PEM private key: {e}",
                settings.key_path.display()
            ),
        )
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        error(
            "server.http_tls_key_path",
            format!("does not match the certificate: {e}"),
        )
    })?;
    Ok(Arc::new(certified))
}

/// Serves the current certificate and swaps in new files on [`reload`].
///
/// [`reload`]: ReloadingCertificate::reload
#[derive(Debug)]
pub struct ReloadingCertificate {
    settings: ServerTlsSettings,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

fn modified(settings: &ServerTlsSettings) -> Option<SystemTime> {
    let cert = crate::reload::modified(&settings.cert_path)?;
    let key = crate::reload::modified(&settings.key_path)?;
    Some(cert.max(key))
}

impl ReloadingCertificate {
    fn new(settings: ServerTlsSettings) -> Result<Self, TlsError> {
        let key = load_certified_key(&settings)?;
        let stamp = modified(&settings);
        Ok(Self {
            settings,
            current: RwLock::new((key, stamp)),
        })
    }
}

/// Re-reads the files when they changed, or always on `SIGHUP`.
impl Reload for ReloadingCertificate {
    fn reload(&self, trigger: Trigger) {
        let stamp = modified(&self.settings);
        let unchanged = self.current.read().map(|c| c.1 == stamp).unwrap_or(false);
        if unchanged && !trigger.is_forced() {
            return;
        }
        match load_certified_key(&self.settings) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (key, stamp);
                }
                tracing::info!(
                    cert = %self.settings.cert_path.display(),
                    trigger = trigger.name(),
                    "TLS certificate reloaded"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.0.clone())
    }
}

/// The listener's TLS configuration and the handle to reload its certificate.
pub fn server_config(
    settings: &ServerTlsSettings,
) -> Result<(rustls::ServerConfig, Arc<ReloadingCertificate>), TlsError> {
    let certificate = Arc::new(ReloadingCertificate::new(settings.clone())?);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error("server.http_tls_cert_path", e.to_string()))?;
    let builder = match settings.client_auth {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let ca = settings.ca_path.as_deref().ok_or_else(|| {
                error(
                    "server.http_tls_ca_path",
                    "must be set when client certificates are verified",
                )
            })?;
            let roots = Arc::new(read_roots("server.http_tls_ca_path", ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if settings.client_auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| error("server.http_tls_ca_path", e.to_string()))?,
            )
        }
    };
    let mut config = builder.with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumption from stateless tickets, and no session cache: a cache
    // holds entries made by the last few hundred handshakes, scattered over
    // the heap, which keep the allocator from giving back the memory of
    // thousands of closed connections (BENCHMARKS.md, idle TLS connections).
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| {
        error(
            "server.http_tls_cert_path",
            format!("cannot make TLS session ticket keys: {e}"),
        )
    })?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok((config, certificate))
}

/// The client configuration for JWKS and OIDC documents: the upstreams' CA
/// settings, but always verified, whatever `proxy.tls_insecure_skip_verify`
/// says: whoever can change a key document in transit can sign tokens.
pub fn key_fetch_client_config(
    settings: &ProxySettings,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    upstream_client_config(&ProxySettings {
        tls_insecure_skip_verify: false,
        ..settings.clone()
    })
}

/// TLS settings for https upstreams: the system's root certificates, plus
/// `proxy.tls_ca_file`, or no verification at all when explicitly asked.
pub fn upstream_client_config(
    settings: &ProxySettings,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error("proxy.tls_ca_file", e.to_string()))?;
    if settings.tls_insecure_skip_verify {
        tracing::warn!(
            "proxy.tls_insecure_skip_verify is true: upstream certificates are NOT verified; anyone on the path can read and change traffic"
        );
        return Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth(),
        ));
    }
    let mut roots = system_roots();
    if let Some(path) = &settings.tls_ca_file {
        for certificate in read_certificates("proxy.tls_ca_file", path)? {
            roots
                .add(certificate)
                .map_err(|e| error("proxy.tls_ca_file", format!("{}: {e}", path.display())))?;
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// The system's root certificates. A malformed one must not stop the
/// gateway; the peers it would have verified fail visibly instead.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    roots
}

/// TLS settings for a `rediss://` limits backend: the system's roots, as a
/// managed Redis (ElastiCache, Memorystore) presents a publicly trusted
/// certificate; `key` is the setting named when TLS cannot be set up.
pub fn system_client_config(key: &'static str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(key, e.to_string()))?;
    Ok(Arc::new(
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth(),
    ))
}

/// Accepts any upstream certificate; only behind `proxy.tls_insecure_skip_verify`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are still checked: only the certificate chain is not.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Validates a TLS listener configuration at start-up (files readable and
/// matching), so `check-config` catches what serving would.
pub fn check(settings: &ServerTlsSettings) -> Result<(), TlsError> {
    server_config(settings).map(drop)
}

// ---- settings: the `server.http_tls_*` keys ------------------------------------

/// The listener's certificate and client-certificate policy; serialized
/// into `[server]` under the keys it is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerTlsSettings {
    #[serde(rename = "http_tls_cert_path")]
    pub cert_path: PathBuf,
    #[serde(rename = "http_tls_key_path")]
    pub key_path: PathBuf,
    #[serde(rename = "http_tls_client_auth")]
    pub client_auth: ClientAuth,
    #[serde(rename = "http_tls_ca_path", skip_serializing_if = "Option::is_none")]
    pub ca_path: Option<PathBuf>,
}

/// Client certificate policy, named as Go's `tls.ClientAuthType` (the Go
/// gateway's `-server.http-tls-client-auth` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// The `server.http_tls_*` keys as written.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RawServerTls {
    http_tls_cert_path: Option<PathBuf>,
    http_tls_key_path: Option<PathBuf>,
    http_tls_client_auth: String,
    http_tls_ca_path: Option<PathBuf>,
}

impl RawServerTls {
    /// `None` for plain HTTP; the certificate and key are loaded once here
    /// so that a broken file is a start-up error naming its key.
    pub fn validate(self) -> Result<Option<ServerTlsSettings>, ConfigError> {
        validate_server_tls(
            self.http_tls_cert_path,
            self.http_tls_key_path,
            &self.http_tls_client_auth,
            self.http_tls_ca_path,
        )
    }
}

fn validate_server_tls(
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
    client_auth: &str,
    ca_path: Option<PathBuf>,
) -> Result<Option<ServerTlsSettings>, ConfigError> {
    let client_auth = match client_auth {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(ConfigError::invalid(
                "server.http_tls_client_auth",
                format!("`{client_auth}` accepts unverified client certificates; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                "server.http_tls_client_auth",
                format!("`{other}` is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ))
        }
    };
    let empty = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
    let settings = match (cert_path, key_path) {
        (cert, key) if empty(&cert) && empty(&key) => {
            if client_auth != ClientAuth::NoClientCert {
                return Err(ConfigError::invalid(
                    "server.http_tls_client_auth",
                    "needs server.http_tls_cert_path and server.http_tls_key_path",
                ));
            }
            return Ok(None);
        }
        (Some(cert_path), Some(key_path))
            if !cert_path.as_os_str().is_empty() && !key_path.as_os_str().is_empty() =>
        {
            ServerTlsSettings {
                cert_path,
                key_path,
                client_auth,
                ca_path: ca_path.filter(|p| !p.as_os_str().is_empty()),
            }
        }
        (cert, _) if empty(&cert) => {
            return Err(ConfigError::invalid(
                "server.http_tls_cert_path",
                "must be set together with server.http_tls_key_path",
            ))
        }
        _ => {
            return Err(ConfigError::invalid(
                "server.http_tls_key_path",
                "must be set together with server.http_tls_cert_path",
            ))
        }
    };
    check(&settings).map_err(|e| ConfigError::invalid(e.key, e.message))?;
    Ok(Some(settings))
}
