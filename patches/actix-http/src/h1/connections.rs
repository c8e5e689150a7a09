//! How many HTTP/1 connections are open, in the process and on this thread, and how many have
//! closed.
//!
//! cortex-gateway patch (`patches/README.md`): otherwise an application learns that a connection
//! ended only by putting a guard in its `on_connect` extensions, which costs every connection a
//! table and two boxes (about 250 bytes) for as long as it is open. A dispatcher counts itself
//! here instead, with no allocation.

use std::{
    cell::Cell,
    marker::PhantomData,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

static OPEN: AtomicUsize = AtomicUsize::new(0);
static CLOSED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static OPEN_ON_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// HTTP/1 connections open in this process.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// HTTP/1 connections open on the calling thread: for an actix-web worker, its own, the count
/// its `max_connections` applies to.
pub fn open_connections_on_this_thread() -> usize {
    OPEN_ON_THREAD.with(Cell::get)
}

/// HTTP/1 connections closed in this process since it started.
pub fn closed_connections() -> u64 {
    CLOSED.load(Ordering::Relaxed)
}

/// Held by each HTTP/1 dispatcher: counts its connection as open until the dispatcher is dropped,
/// or hands the connection to an upgrade handler, on the thread that serves it. Not `Send`, so
/// that the per-thread count is decremented where it was incremented. HTTP/2 connections are not
/// counted.
pub(crate) struct OpenConnection(PhantomData<*const ()>);

impl OpenConnection {
    pub(crate) fn count() -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        OPEN_ON_THREAD.with(|open| open.set(open.get() + 1));
        Self(PhantomData)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        OPEN_ON_THREAD.with(|open| open.set(open.get() - 1));
        CLOSED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_counts_while_it_is_held() {
        // Other tests open and close dispatchers on their own threads meanwhile: only this
        // thread's count and the monotonic closed count are exact here.
        let (on_thread, closed) = (open_connections_on_this_thread(), closed_connections());
        let connection = OpenConnection::count();
        assert_eq!(open_connections_on_this_thread(), on_thread + 1);
        assert!(open_connections() >= 1);
        let elsewhere = std::thread::spawn(open_connections_on_this_thread)
            .join()
            .unwrap();
        assert_eq!(elsewhere, 0, "another thread serves none of them");
        drop(connection);
        assert_eq!(open_connections_on_this_thread(), on_thread);
        assert!(closed_connections() > closed);
    }
}
