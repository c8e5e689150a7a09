//! The server's graceful-shutdown signal, watched once per service configuration.
//!
//! cortex-gateway patch (`patches/README.md`): upstream gives every HTTP/1 connection a boxed
//! signal future of its own (174 bytes with actix-web's signal) for as long as the connection is
//! open. Here one task per service configuration, that is per worker, awaits the signal and wakes
//! the connections that wait for it; a connection keeps only the index of its waker's slot.

use std::{
    cell::{Cell, RefCell},
    fmt,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use slab::Slab;
use tokio::task::{spawn_local, JoinHandle};

use crate::config::GracefulShutdownSignal;

/// Owned by the service configuration; its task stops when the configuration is dropped.
pub(crate) struct ShutdownWatch {
    shared: Rc<Shared>,
    handle: JoinHandle<()>,
}

struct Shared {
    signal: GracefulShutdownSignal,
    started: Cell<bool>,
    /// The wakers of the connections waiting for the signal; a connection keeps its key.
    waiters: RefCell<Slab<Waker>>,
}

impl Shared {
    /// Marks the shutdown as begun and wakes every connection waiting for it, once.
    fn start(&self) {
        if !self.started.replace(true) {
            // Woken outside the borrow: a waker that polled its task at once (tokio's do not)
            // could drop a listener, which borrows the slots again. Keys handed out before
            // are then unknown to the (empty) slab, and no key is handed out after.
            let waiters = self.waiters.take();
            for (_, waker) in waiters {
                waker.wake();
            }
        }
    }
}

impl ShutdownWatch {
    pub(crate) fn new(signal: GracefulShutdownSignal) -> Self {
        let shared = Rc::new(Shared {
            signal,
            started: Cell::new(false),
            waiters: RefCell::new(Slab::new()),
        });
        let watcher = Rc::clone(&shared);
        let handle = spawn_local(async move {
            watcher.signal.notified().await;
            watcher.start();
        });
        Self { shared, handle }
    }

    /// What a connection holds to learn that the server began a graceful shutdown.
    pub(crate) fn listener(&self) -> ShutdownListener {
        ShutdownListener {
            shared: Rc::clone(&self.shared),
            slot: None,
        }
    }
}

impl fmt::Debug for ShutdownWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownWatch")
            .field("started", &self.shared.started.get())
            .finish_non_exhaustive()
    }
}

impl Drop for ShutdownWatch {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// One connection's view of the shutdown signal.
pub(crate) struct ShutdownListener {
    shared: Rc<Shared>,
    slot: Option<usize>,
}

impl ShutdownListener {
    /// Ready once the server has begun a graceful shutdown; otherwise the caller's task is woken
    /// when it does.
    pub(crate) fn poll_started(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &*self.shared;
        if shared.started.get() {
            return Poll::Ready(());
        }
        match self.slot {
            Some(slot) => {
                if let Some(held) = shared.waiters.borrow_mut().get_mut(slot) {
                    if !held.will_wake(cx.waker()) {
                        held.clone_from(cx.waker());
                    }
                }
            }
            None => {
                // A connection polled first after the signal but before the watching task ran
                // must see it at once, as it did with a future of its own: ask the signal, then
                // let go. A connection already waiting learns of it when that task runs (the same
                // scheduler tick that would have woken it upstream); polled for a request in
                // between, it still starts that request and answers it with `Connection: close`
                // once the task has run.
                let mut signal = shared.signal.notified();
                let mut check = Context::from_waker(Waker::noop());
                if signal.as_mut().poll(&mut check).is_ready() {
                    shared.start();
                    return Poll::Ready(());
                }
                self.slot = Some(shared.waiters.borrow_mut().insert(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for ShutdownListener {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut waiters = self.shared.waiters.borrow_mut();
            waiters.try_remove(slot);
            if waiters.is_empty() {
                // A wave of connections must not keep its peak's worth of slots once it has gone.
                *waiters = Slab::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{future::ready, sync::Arc, task::Wake};

    use super::*;

    /// Counts its wake-ups, so a test can tell which connections were told.
    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn woken(waker: &Arc<CountingWaker>) -> usize {
        waker.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[actix_rt::test]
    async fn the_watching_task_wakes_every_waiting_connection_once() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Rc::new(RefCell::new(Some(rx)));
        let watch = ShutdownWatch::new(GracefulShutdownSignal::new(move || {
            let rx = rx.borrow_mut().take();
            async move {
                match rx {
                    Some(rx) => drop(rx.await),
                    None => std::future::pending().await,
                }
            }
        }));
        let wakers: Vec<Arc<CountingWaker>> = (0..3).map(|_| Arc::default()).collect();
        let mut listeners: Vec<ShutdownListener> = (0..3).map(|_| watch.listener()).collect();
        // Let the watching task take the one-shot receiver before the connections ask.
        tokio::task::yield_now().await;
        for (listener, waker) in listeners.iter_mut().zip(&wakers) {
            let waker = Waker::from(Arc::clone(waker));
            assert!(listener
                .poll_started(&mut Context::from_waker(&waker))
                .is_pending());
        }
        drop(listeners.pop());
        assert_eq!(watch.shared.waiters.borrow().len(), 2);

        tx.send(()).unwrap();
        tokio::task::yield_now().await;

        assert_eq!(
            wakers.iter().map(woken).collect::<Vec<_>>(),
            [1, 1, 0],
            "the two waiting connections are woken, the one that went is not"
        );
        let waker = Waker::from(Arc::clone(&wakers[0]));
        assert!(listeners[0]
            .poll_started(&mut Context::from_waker(&waker))
            .is_ready());
    }

    #[actix_rt::test]
    async fn a_connection_polled_after_the_signal_sees_it_before_the_task_runs() {
        let watch = ShutdownWatch::new(GracefulShutdownSignal::new(|| ready(())));
        let mut listener = watch.listener();
        assert!(listener
            .poll_started(&mut Context::from_waker(Waker::noop()))
            .is_ready());
        assert!(watch.shared.started.get());
    }

    #[actix_rt::test]
    async fn slots_are_reused_and_released_when_the_last_connection_goes() {
        let watch = ShutdownWatch::new(GracefulShutdownSignal::new(std::future::pending::<()>));
        let mut cx = Context::from_waker(Waker::noop());
        let mut first: Vec<ShutdownListener> = (0..100).map(|_| watch.listener()).collect();
        for listener in &mut first {
            assert!(listener.poll_started(&mut cx).is_pending());
        }
        first.truncate(10);
        let mut second: Vec<ShutdownListener> = (0..90).map(|_| watch.listener()).collect();
        for listener in &mut second {
            assert!(listener.poll_started(&mut cx).is_pending());
        }
        assert!(
            second
                .iter()
                .all(|listener| matches!(listener.slot, Some(slot) if slot < 100)),
            "freed slots are reused"
        );

        drop(first);
        drop(second);
        let waiters = watch.shared.waiters.borrow();
        assert_eq!(waiters.len(), 0);
        assert_eq!(waiters.capacity(), 0, "no slots kept once all have gone");
    }
}
