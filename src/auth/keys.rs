//! Where the keys that verify tokens come from.
//!
//! Each source owns how its keys are loaded and when they change; the
//! authenticator only gathers the keys of all its sources into one key set
//! and asks each source to refresh on a reload. A new kind of source is one
//! more implementation of [`KeySource`]: HMAC secrets (inline or in a file)
//! and PEM public keys live here, JWKS URLs in [`super::jwks`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::reload::modified;
use crate::settings::Secret;

/// The algorithms an HMAC secret verifies: the one allow-list of the
/// symmetric family, which `auth.algorithms` may narrow.
pub const HMAC_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// The algorithms public keys verify (RSA, ECDSA, EdDSA): added to the
/// default of `auth.algorithms` when a public-key source is configured.
pub const PUBLIC_KEY_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a source could not deliver keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{0} holds no key")]
    Empty(PathBuf),
    #[error("{0} is not usable as an HMAC key")]
    Unusable(String),
    #[error("{0}: not an RSA, EC (P-256, P-384) or Ed25519 public key in PEM form (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")]
    NotAPublicKey(PathBuf),
    #[error("{0} holds a private key: give the gateway only the public key")]
    PrivateKey(PathBuf),
    #[error(
        "JWKS and OIDC sources need the gateway's HTTP client, which this command does not run"
    )]
    Offline,
}

/// A key a token may be verified with, and what it may verify.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    /// The `kid` that selects this key; `None` for keys that are tried by
    /// algorithm family (secrets, PEM files).
    pub kid: Option<Arc<str>>,
    /// The one algorithm this key verifies, when its publisher said so (a
    /// JWK's `alg`); otherwise any algorithm of its family.
    pub algorithm: Option<Algorithm>,
    /// Where the key came from, as `verify` and log lines name it; never
    /// the key material.
    pub origin: Arc<str>,
    /// The `iss` every token verified by this key must carry: an OIDC
    /// issuer vouches only for its own tokens.
    pub issuer: Option<Arc<str>>,
}

impl Key {
    /// An HMAC key; never empty (an empty key would accept tokens anyone
    /// can sign), and never a PEM document (whoever holds the public key
    /// could then sign HS256 tokens with it: the classic RS/HS confusion).
    pub fn hmac(secret: &[u8], origin: &str) -> Result<Self, KeyError> {
        if secret.is_empty() || secret.starts_with(b"-----BEGIN") {
            return Err(KeyError::Unusable(origin.to_owned()));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret).map_err(|_| KeyError::Unusable(origin.to_owned()))?,
            origin,
        ))
    }

    /// A key tried by family, without `kid` or issuer.
    pub fn new(decoding: DecodingKey, origin: &str) -> Self {
        Self {
            decoding,
            kid: None,
            algorithm: None,
            origin: Arc::from(origin),
            issuer: None,
        }
    }

    /// Whether a token signed with `algorithm` may be checked against this
    /// key: only ever within the key's own family, so a public key never
    /// becomes an HMAC secret.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.decoding.family() == algorithm.family()
            && self.algorithm.is_none_or(|only| only == algorithm)
    }
}

/// A public key from PEM text: SubjectPublicKeyInfo (`PUBLIC KEY`), PKCS#1
/// (`RSA PUBLIC KEY`) or a certificate's key; RSA, EC or Ed25519.
pub fn public_key_from_pem(pem: &[u8], path: &Path) -> Result<Key, KeyError> {
    if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(KeyError::PrivateKey(path.to_owned()));
    }
    let decoding = DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| KeyError::NotAPublicKey(path.to_owned()))?;
    Ok(Key::new(decoding, &path.display().to_string()))
}

/// A source of verification keys.
pub trait KeySource: Send + Sync {
    /// What log lines call this source.
    fn describe(&self) -> String;

    /// The keys the source holds now.
    fn keys(&self) -> Vec<Key>;

    /// Re-reads the source when it changed, or always with `force`.
    /// Returns whether its keys changed; on an error the keys in use stay.
    fn refresh(&self, force: bool) -> Result<bool, KeyError>;

    /// The source's fetcher, for sources whose keys come over the network.
    fn remote(&self) -> Option<&Arc<super::jwks::JwksSource>> {
        None
    }
}

/// `auth.jwt_secret` and `auth.jwt_secrets`: secrets from the
/// configuration, fixed until the configuration is reloaded.
pub struct StaticSecrets {
    keys: Vec<Key>,
}

impl StaticSecrets {
    pub fn new(secrets: &[Secret]) -> Result<Self, KeyError> {
        let keys = secrets
            .iter()
            .map(|secret| Key::hmac(secret.expose(), "auth.jwt_secret"))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }
}

impl KeySource for StaticSecrets {
    fn describe(&self) -> String {
        "auth.jwt_secret".to_owned()
    }

    fn keys(&self) -> Vec<Key> {
        self.keys.clone()
    }

    fn refresh(&self, _force: bool) -> Result<bool, KeyError> {
        Ok(false)
    }
}

/// Files re-read when they change: the modification times they were read
/// at, and the keys read from them.
struct Watched {
    stamps: Vec<Option<SystemTime>>,
    keys: Vec<Key>,
}

/// Keys read from files and read again when a file changes, so keys rotate
/// without a restart. `read` turns the files into keys.
pub struct KeyFiles {
    name: &'static str,
    paths: Vec<PathBuf>,
    read: fn(&[PathBuf]) -> Result<Vec<Key>, KeyError>,
    loaded: Mutex<Watched>,
}

impl KeyFiles {
    /// `auth.jwt_secret_file`: one secret per line, the first signs (add
    /// the new key as the first line, hand out new tokens, then drop the
    /// old line).
    pub fn secrets(path: &Path) -> Result<Self, KeyError> {
        Self::open("auth.jwt_secret_file", vec![path.to_owned()], |paths| {
            let origin = paths[0].display().to_string();
            read_secret_file(&paths[0])?
                .iter()
                .map(|secret| Key::hmac(secret, &origin))
                .collect()
        })
    }

    /// `auth.public_keys`: one PEM public key per file.
    pub fn public_keys(paths: &[PathBuf]) -> Result<Self, KeyError> {
        Self::open("auth.public_keys", paths.to_vec(), |paths| {
            paths
                .iter()
                .map(|path| public_key_from_pem(&read_file(path)?, path))
                .collect()
        })
    }

    fn open(
        name: &'static str,
        paths: Vec<PathBuf>,
        read: fn(&[PathBuf]) -> Result<Vec<Key>, KeyError>,
    ) -> Result<Self, KeyError> {
        let stamps = paths.iter().map(|path| modified(path)).collect();
        let keys = read(&paths)?;
        Ok(Self {
            name,
            paths,
            read,
            loaded: Mutex::new(Watched { stamps, keys }),
        })
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeySource for KeyFiles {
    fn describe(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        format!("{} ({})", self.name, paths.join(", "))
    }

    fn keys(&self) -> Vec<Key> {
        self.loaded().keys.clone()
    }

    fn refresh(&self, force: bool) -> Result<bool, KeyError> {
        let stamps: Vec<_> = self.paths.iter().map(|path| modified(path)).collect();
        let mut loaded = self.loaded();
        if loaded.stamps == stamps && !force {
            return Ok(false);
        }
        let keys = (self.read)(&self.paths)?;
        *loaded = Watched { stamps, keys };
        Ok(true)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError::Unreadable {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Reads the keys of a secret file: one per line, the first signs; blank
/// lines and trailing whitespace (the newline `echo` and kubectl add) are not
/// part of any key.
pub fn read_secret_file(path: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
    let contents = read_file(path)?;
    let keys: Vec<Vec<u8>> = contents
        .split(|&b| b == b'\n')
        .map(|line| {
            let end = line
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |last| last + 1);
            line[..end].to_vec()
        })
        .filter(|key| !key.is_empty())
        .collect();
    if keys.is_empty() {
        return Err(KeyError::Empty(path.to_owned()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_only_their_own_family() {
        let hmac = Key::hmac(b"a-secret", "test").unwrap();
        assert!(hmac.accepts(Algorithm::HS256));
        for algorithm in PUBLIC_KEY_ALGORITHMS {
            assert!(!hmac.accepts(algorithm), "{algorithm:?}");
        }
        let pinned = Key {
            algorithm: Some(Algorithm::HS384),
            ..hmac
        };
        assert!(pinned.accepts(Algorithm::HS384));
        assert!(!pinned.accepts(Algorithm::HS256));
    }

    #[test]
    fn a_pem_document_is_never_an_hmac_secret() {
        let pem = b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            Key::hmac(pem, "auth.jwt_secret"),
            Err(KeyError::Unusable(_))
        ));
        assert!(Key::hmac(b"", "auth.jwt_secret").is_err());
    }

    #[test]
    fn private_keys_and_garbage_are_refused_as_public_keys() {
        let path = Path::new("k.pem");
        let private =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            public_key_from_pem(private, path),
            Err(KeyError::PrivateKey(_))
        ));
        assert!(matches!(
            public_key_from_pem(b"not a key", path),
            Err(KeyError::NotAPublicKey(_))
        ));
    }
}
