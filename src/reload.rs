//! One notion of reloading for everything that reads files at start-up
//! and must follow them afterwards (the listener certificate, the JWT key
//! sources): on `SIGHUP`, and when a file changes (checked every few
//! seconds, for mounted Secrets that Kubernetes updates in place).

use std::sync::Arc;
use std::time::Duration;

/// How often files are checked for changes.
const POLL: Duration = Duration::from_secs(5);

/// What caused a reload, for the log line and for whether unchanged files
/// are read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The operator's `SIGHUP`: read everything again.
    Signal,
    /// The periodic check: read only what changed.
    Poll,
}

impl Trigger {
    pub fn is_forced(self) -> bool {
        self == Trigger::Signal
    }

    /// The cause as log lines name it.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Poll => "file change",
        }
    }
}

/// A file's modification time, what the poll compares to see a change;
/// `None` when the file cannot be read (a reload then reports the error).
pub fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Something that follows its files; a failed reload keeps what is in use.
pub trait Reload: Send + Sync {
    fn reload(&self, trigger: Trigger);
}

/// Reloads `targets` on every `SIGHUP` and every poll, for as long as the
/// server runs.
pub async fn run(mut hangup: actix_web::rt::signal::unix::Signal, targets: Vec<Arc<dyn Reload>>) {
    let mut poll = actix_web::rt::time::interval(POLL);
    loop {
        use futures_util::future::{select, Either};
        let trigger = match select(std::pin::pin!(hangup.recv()), std::pin::pin!(poll.tick())).await
        {
            Either::Left(_) => Trigger::Signal,
            Either::Right(_) => Trigger::Poll,
        };
        for target in &targets {
            target.reload(trigger);
        }
    }
}
