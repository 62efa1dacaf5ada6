//! The counting global allocator of the zero-allocation tests: it forwards every call to
//! the system allocator unchanged and calls the test's hook first, which decides what to
//! count (on which CPU, on which thread, while armed).
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting::new(count);`, where `count` must
//! not allocate (atomics, a const thread-local and `sched_getcpu` are fine).

use std::alloc::{GlobalAlloc, Layout, System};

/// See the module documentation.
pub struct Counting {
    hook: fn(),
}

impl Counting {
    /// An allocator that calls `hook` on every allocation, deallocation and reallocation.
    pub const fn new(hook: fn()) -> Counting {
        Counting { hook }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the hook is the
// test's, documented above as one that does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.hook)();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        (self.hook)();
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.hook)();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.hook)();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
