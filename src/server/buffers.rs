//! Giving back the memory of the driver's per-connection read buffer.
//!
//! The `mysql` crate (v28, `mysql_common` 0.37) gives every connection an
//! input and an output buffer of `DEFAULT_MAX_ALLOWED_PACKET` = 4 MiB
//! (`BytesMut::with_capacity`). The input buffer is consumed from the front
//! and only moved back to its start when its end is reached, so every byte a
//! connection ever reads lands on a new page until 4 MiB of pages are
//! resident: RSS grows with uptime (bytes read), not with work — 100
//! instances reading 60 rows a pass grew past 100 MB in two minutes.
//!
//! Between two commands a connection in step with its server has read every
//! byte of the last reply, so both buffers hold no data (length 0): their
//! pages can be handed back to the kernel (`madvise(MADV_DONTNEED)`; the
//! next write into a page gets a fresh zero page, and `BytesMut` never reads
//! bytes it has not written). The allocator below only learns where these two
//! buffers are: allocations of exactly 4 MiB made while a session is being
//! opened on this thread ([`capture`]) are recorded, and forgotten the moment
//! they are freed or reallocated, so a recorded address always belongs to
//! that live buffer. [`trim`] is called by the session's own thread while the
//! session is idle and in step, never while the driver could be reading.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The size of each of the driver's per-connection buffers.
pub const DRIVER_BUF: usize = 4 * 1024 * 1024;

/// Recorded buffers (addresses; 0 = free). Two per held session.
const SLOTS: usize = 1 << 17;
static BUFFERS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

thread_local! {
    /// While set, 4 MiB allocations of this thread are recorded here.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static CAPTURED: Cell<[usize; 4]> = const { Cell::new([usize::MAX; 4]) };
}

/// The system allocator, noting where the driver's buffers are.
pub struct Tracking;

fn record(ptr: usize) {
    if !CAPTURING.with(Cell::get) {
        return;
    }
    for (i, slot) in BUFFERS.iter().enumerate() {
        if slot
            .compare_exchange(0, ptr, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            CAPTURED.with(|c| {
                let mut v = c.get();
                if let Some(free) = v.iter_mut().find(|x| **x == usize::MAX) {
                    *free = i;
                } else {
                    // More than expected: not ours to trim.
                    slot.store(0, Ordering::Release);
                }
                c.set(v);
            });
            return;
        }
    }
}

fn forget(ptr: usize) {
    for slot in BUFFERS.iter() {
        if slot.load(Ordering::Acquire) == ptr {
            slot.store(0, Ordering::Release);
        }
    }
}

// SAFETY: every call is passed to `System` unchanged; the bookkeeping only
// reads and writes atomics and thread-locals with const initialisers (no
// allocation, no lock).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if layout.size() == DRIVER_BUF && !p.is_null() {
            record(p as usize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == DRIVER_BUF {
            forget(ptr as usize);
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() == DRIVER_BUF {
            forget(ptr as usize);
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// The driver buffers of one connection: slot indexes and their addresses.
#[derive(Debug, Default, Clone)]
pub struct Owned(Vec<(usize, usize)>);

/// Run `open` (which creates one connection) and return what it allocated
/// as driver buffers. Without [`Tracking`] as the global allocator (unit and
/// integration test binaries) nothing is recorded and trimming does nothing.
pub fn capture<T>(open: impl FnOnce() -> T) -> (T, Owned) {
    CAPTURED.with(|c| c.set([usize::MAX; 4]));
    CAPTURING.with(|c| c.set(true));
    let out = open();
    CAPTURING.with(|c| c.set(false));
    let idx = CAPTURED.with(Cell::get);
    let owned = idx
        .iter()
        .filter(|i| **i != usize::MAX)
        .map(|&i| (i, BUFFERS[i].load(Ordering::Acquire)))
        .filter(|(_, p)| *p != 0)
        .collect();
    (out, Owned(owned))
}

/// Hand the pages of `owned`'s buffers back to the kernel.
///
/// # Safety
/// The connection that owns them must hold no unread data in them: call it
/// only between two commands on a connection in step with its server, from
/// the thread that uses the connection.
pub unsafe fn trim(owned: &Owned) {
    let page = page_size();
    for &(i, ptr) in &owned.0 {
        if BUFFERS[i].load(Ordering::Acquire) != ptr {
            continue; // freed or moved since: no longer that buffer
        }
        let start = ptr.next_multiple_of(page);
        let end = (ptr + DRIVER_BUF) / page * page;
        if end > start {
            // SAFETY: [start, end) lies inside a live allocation of this
            // connection holding no data (the caller's promise).
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}
