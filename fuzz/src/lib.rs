//! What the fuzz targets share: a global allocator that aborts when the bytes live at once go
//! over a bound, so "no allocation over a set bound" is checked on every input, not only by
//! libFuzzer's whole-process `-rss_limit_mb`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The allocator to install with `#[global_allocator]` in every target.
pub struct CappedAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

impl CappedAlloc {
    fn grew(&self, by: usize) {
        let live = LIVE.fetch_add(by, Relaxed) + by;
        let limit = LIMIT.load(Relaxed);
        if live > limit {
            // No more checks while reporting: the report itself may allocate.
            LIMIT.store(usize::MAX, Relaxed);
            let _ = writeln!(
                std::io::stderr(),
                "fuzz: {live} bytes live, over the bound of {limit} bytes set for this input"
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            self.grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` with at most `bound` more bytes live than when it started; over that the process
/// aborts and libFuzzer keeps the input as a crash.
pub fn bounded<T>(bound: usize, f: impl FnOnce() -> T) -> T {
    LIMIT.store(LIVE.load(Relaxed).saturating_add(bound), Relaxed);
    let out = f();
    LIMIT.store(usize::MAX, Relaxed);
    out
}

/// One mebibyte.
pub const MIB: usize = 1 << 20;
