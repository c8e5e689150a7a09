//! The carried tokio patch (`patches/tokio`, `patches/README.md`): tasks and socket
//! registrations are not padded to 128 bytes. Every idle client connection holds one of each;
//! padded, glibc serves each from `memalign`, 256 bytes plus the pieces it cuts off around them.
//! This test binary has its own allocator, which counts over-aligned requests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the allocations that ask for more than the 16-byte alignment glibc's `malloc` gives.
struct CountOverAligned;

static OVER_ALIGNED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CountOverAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > 16 {
            OVER_ALIGNED.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountOverAligned = CountOverAligned;

// Other architectures keep tokio's own (smaller) padding: the patch leaves them alone.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "powerpc64"
))]
#[test]
fn connection_tasks_and_socket_registrations_are_not_over_aligned() {
    const CONNECTIONS: usize = 100;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    // actix-web's workers run their connections as local tasks on a current-thread runtime.
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let before = OVER_ALIGNED.load(Ordering::Relaxed);
        let mut connections = Vec::new();
        for _ in 0..CONNECTIONS {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            connections.push(tokio::task::spawn_local(async move {
                let _open = (client, server);
                std::future::pending::<()>().await
            }));
        }
        tokio::task::yield_now().await;
        let over_aligned = OVER_ALIGNED.load(Ordering::Relaxed) - before;
        // Unpatched: at least three per connection (two registrations and a task).
        assert!(
            over_aligned < CONNECTIONS / 10,
            "{over_aligned} over-aligned allocations for {CONNECTIONS} connections with a task each"
        );
    });
}
