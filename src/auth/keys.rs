//! Where the keys that verify tokens come from.
//!
//! Each source owns how its keys are loaded and when they change; the
//! authenticator only gathers the keys of all its sources into one key set
//! and asks each source to refresh on a reload. A new kind of source (PEM
//! public keys, a JWKS URL) is one more implementation of [`KeySource`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::settings::Secret;

/// The algorithms an HMAC secret verifies: the one allow-list of the
/// symmetric family, which `auth.algorithms` may narrow.
pub const HMAC_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// Why a source could not deliver keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{0} holds no key")]
    Empty(PathBuf),
    #[error("{0} is not usable as an HMAC key")]
    Unusable(&'static str),
}

/// A key a token may be verified with.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
}

impl Key {
    /// An HMAC key; never empty (an empty key would accept tokens anyone
    /// can sign).
    pub fn hmac(secret: &[u8], origin: &'static str) -> Result<Self, KeyError> {
        // jsonwebtoken refuses an empty key as well; checked first so that
        // the error names where it came from.
        if secret.is_empty() {
            return Err(KeyError::Unusable(origin));
        }
        Ok(Self {
            decoding: DecodingKey::from_secret(secret).map_err(|_| KeyError::Unusable(origin))?,
        })
    }
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
}

/// `auth.jwt_secret`: secrets from the configuration, fixed for the life
/// of the process; the first signs.
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

/// `auth.jwt_secret_file`: one secret per line, the first signs; re-read
/// when the file changes, so keys rotate without a restart (add the new
/// key as the first line, hand out new tokens, then drop the old line).
pub struct SecretFile {
    path: PathBuf,
    /// The file's modification time when its keys were read, and the keys.
    loaded: Mutex<(Option<SystemTime>, Vec<Key>)>,
}

impl SecretFile {
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let stamp = modified(path);
        let keys = hmac_keys(&read_secret_file(path)?)?;
        Ok(Self {
            path: path.to_owned(),
            loaded: Mutex::new((stamp, keys)),
        })
    }
}

impl KeySource for SecretFile {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn keys(&self) -> Vec<Key> {
        match self.loaded.lock() {
            Ok(loaded) => loaded.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    fn refresh(&self, force: bool) -> Result<bool, KeyError> {
        let stamp = modified(&self.path);
        let mut loaded = match self.loaded.lock() {
            Ok(loaded) => loaded,
            Err(poisoned) => poisoned.into_inner(),
        };
        if loaded.0 == stamp && !force {
            return Ok(false);
        }
        let keys = hmac_keys(&read_secret_file(&self.path)?)?;
        *loaded = (stamp, keys);
        Ok(true)
    }
}

fn hmac_keys(secrets: &[Vec<u8>]) -> Result<Vec<Key>, KeyError> {
    secrets
        .iter()
        .map(|secret| Key::hmac(secret, "auth.jwt_secret_file"))
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads the keys of a secret file: one per line, the first signs; blank
/// lines and trailing whitespace (the newline `echo` and kubectl add) are not
/// part of any key.
pub fn read_secret_file(path: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
    let contents = std::fs::read(path).map_err(|e| KeyError::Unreadable {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
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
