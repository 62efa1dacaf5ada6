//! Buffer memory and who owns each buffer.
//!
//! A [`Buffers`] region is `count` buffers of `size` bytes in one page-aligned mapping.
//! Every buffer is always in exactly one of these hands:
//!
//! - **the kernel**: published in a provided-buffer ring, or named by an operation in
//!   flight. User space must not touch it until a completion names it again — also after
//!   a cancel, which only asks the kernel to finish early.
//! - **user space, exclusively**: an [`Owned`] proof. Only one exists per buffer; it
//!   allows writing (epoll receives, TCP reassembly, send payloads).
//! - **user space, shared read-only**: one or more [`Lease`]s, each over a byte range,
//!   counted in `refs`. Releasing the last lease turns the buffer back into an `Owned`,
//!   which goes to the return queue; only the reactor recycles it to the kernel.
//!
//! The proofs are move-only, so a double release does not compile. The only way to make
//! an `Owned` out of nothing is the `unsafe` [`Buffers::assume_owned`], used by the
//! backends when the kernel reports it is done with a buffer.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::error::Error;

static NEXT_POOL_ID: AtomicU32 = AtomicU32::new(1);

/// `count` buffers of `size` bytes, page-aligned, with a lease count per buffer.
pub(crate) struct Buffers {
    base: NonNull<u8>,
    map_len: usize,
    size: u32,
    count: u32,
    id: u32,
    /// Leases alive per buffer. Non-zero only while the buffer is shared read-only.
    refs: Box<[AtomicU16]>,
}

// The mapping is plain memory owned by this value until drop. Concurrent access to a
// buffer is governed by the ownership protocol above: writes need an `Owned` (unique per
// buffer), reads need an `Owned` or a `Lease`, and leases exist only when no `Owned` does.
// SAFETY: so moving it to another thread is sound; hand-overs between threads go through
// atomics (queues, lease counts), which order the accesses.
unsafe impl Send for Buffers {}
// SAFETY: see `Send`; `&Buffers` gives no access to bytes without a proof.
unsafe impl Sync for Buffers {}

/// Exclusive ownership of one buffer by user space.
#[derive(Debug)]
pub(crate) struct Owned {
    bid: u16,
    pool: u32,
}

impl Owned {
    /// The buffer id.
    pub(crate) fn bid(&self) -> u16 {
        self.bid
    }
}

/// Shared, counted, read-only access to `len` bytes at `off` of one buffer.
///
/// Move-only: releasing it consumes it.
#[derive(Debug)]
pub struct Lease {
    bid: u16,
    pool: u32,
    off: u32,
    len: u32,
}

impl Lease {
    /// The buffer id.
    pub fn buffer(&self) -> u16 {
        self.bid
    }
    /// The length of the leased bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether the lease covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Offset of the leased bytes inside the buffer.
    pub fn offset(&self) -> usize {
        self.off as usize
    }
}

impl Buffers {
    /// Maps `count` buffers of `size` bytes (pre-faulted, so the hot path takes no page
    /// faults).
    pub(crate) fn new(count: u32, size: u32, what: &str) -> Result<Buffers, Error> {
        let page = 4096usize;
        let bytes = (count as usize).saturating_mul(size as usize);
        let map_len = bytes.div_ceil(page).max(1) * page;
        // SAFETY: an anonymous private mapping with no address hint and no file; the
        // result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os(
                "mmap",
                &format!("{what} ({count} x {size} B)"),
                "lower `buffers` or `buffer_size` in the SAP config, or raise the memory limit",
            ));
        }
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| Error::Internal(format!("mmap returned a null mapping for {what}")))?;
        Ok(Buffers {
            base,
            map_len,
            size,
            count,
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            refs: (0..count).map(|_| AtomicU16::new(0)).collect(),
        })
    }

    /// Bytes per buffer.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }
    /// Number of buffers.
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Address of buffer `bid`, for handing it to the kernel.
    pub(crate) fn addr(&self, bid: u16) -> *mut u8 {
        let off = (bid as usize % self.count.max(1) as usize) * self.size as usize;
        // SAFETY: `off` is below count * size <= map_len, so the result stays inside the
        // mapping.
        unsafe { self.base.as_ptr().add(off) }
    }

    /// Declares that user space now owns buffer `bid` exclusively.
    ///
    /// # Safety
    ///
    /// The kernel must be done with `bid` (its completion was seen, or it was never given
    /// to the kernel), and no other `Owned` or `Lease` for `bid` may exist.
    pub(crate) unsafe fn assume_owned(&self, bid: u16) -> Owned {
        Owned { bid, pool: self.id }
    }

    /// Gives up the proof because the buffer goes to the kernel (a ring, or an operation).
    pub(crate) fn to_kernel(&self, o: Owned) -> u16 {
        o.bid
    }

    /// The whole buffer, writable.
    pub(crate) fn write<'a>(&'a self, o: &'a mut Owned) -> &'a mut [u8] {
        // SAFETY: `o` proves exclusive ownership of buffer `o.bid` (unique per buffer), and
        // the returned borrow is tied to `&mut o`, so no other access can overlap it.
        unsafe { std::slice::from_raw_parts_mut(self.addr(o.bid), self.size as usize) }
    }

    /// The whole buffer, read-only.
    pub(crate) fn read<'a>(&'a self, o: &'a Owned) -> &'a [u8] {
        // SAFETY: `o` proves that user space owns the buffer; nobody writes it while `o`
        // is borrowed.
        unsafe { std::slice::from_raw_parts(self.addr(o.bid), self.size as usize) }
    }

    /// Turns exclusive ownership into the first read-only lease, over `len` bytes at
    /// `off` (clamped to the buffer).
    pub(crate) fn freeze(&self, o: Owned, off: usize, len: usize) -> Lease {
        let (off, len) = self.clamp(off, len);
        self.refs[o.bid as usize % self.refs.len()].store(1, Ordering::Release);
        Lease {
            bid: o.bid,
            pool: o.pool,
            off,
            len,
        }
    }

    /// Another lease on the buffer of `l`, over `len` bytes at `off` of that buffer.
    pub(crate) fn share(&self, l: &Lease, off: usize, len: usize) -> Lease {
        let (off, len) = self.clamp(off, len);
        self.refs[l.bid as usize % self.refs.len()].fetch_add(1, Ordering::Relaxed);
        Lease {
            bid: l.bid,
            pool: l.pool,
            off,
            len,
        }
    }

    /// The leased bytes, or `None` if the lease belongs to another region.
    pub fn bytes<'a>(&'a self, l: &'a Lease) -> Option<&'a [u8]> {
        if l.pool != self.id {
            return None;
        }
        // `off + len` was clamped to the buffer when the lease was made.
        // SAFETY: a lease of this region exists, so the buffer is shared read-only: no
        // `Owned` exists for it and the kernel does not hold it.
        Some(unsafe {
            std::slice::from_raw_parts(self.addr(l.bid).add(l.off as usize), l.len as usize)
        })
    }

    /// Ends a lease. Returns the buffer, exclusively owned again, when it was the last,
    /// or `Err(lease)` when the lease belongs to another region.
    pub(crate) fn release(&self, l: Lease) -> Result<Option<Owned>, Lease> {
        if l.pool != self.id {
            return Err(l);
        }
        let prev = self.refs[l.bid as usize % self.refs.len()].fetch_sub(1, Ordering::AcqRel);
        Ok((prev == 1).then_some(Owned {
            bid: l.bid,
            pool: l.pool,
        }))
    }

    fn clamp(&self, off: usize, len: usize) -> (u32, u32) {
        let size = self.size as usize;
        let off = off.min(size);
        let len = len.min(size - off);
        (off as u32, len as u32)
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // Buffers are dropped only after every backend using them unregistered them and
        // saw their last completion (see the backends' shutdown), and leases borrow the
        // region through an `Arc`, so no access outlives it.
        // SAFETY: the mapping was created in `new` with this length and is unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}

/// A bounded queue of exclusively owned buffers (a free list or a return queue).
pub(crate) struct OwnedQueue {
    q: ArrayQueue<u16>,
    pool: u32,
}

impl OwnedQueue {
    /// A queue able to hold every buffer of `buffers`, so `push` never fails.
    pub(crate) fn for_region(buffers: &Buffers) -> OwnedQueue {
        OwnedQueue {
            q: ArrayQueue::new(buffers.count.max(1) as usize),
            pool: buffers.id,
        }
    }

    /// Adds a buffer. Cannot fail: the capacity is the region's buffer count and each
    /// buffer has at most one `Owned`.
    pub(crate) fn push(&self, o: Owned) {
        debug_assert_eq!(o.pool, self.pool);
        let _ = self.q.push(o.bid);
    }

    /// Takes a buffer.
    pub(crate) fn pop(&self) -> Option<Owned> {
        self.q.pop().map(|bid| Owned {
            bid,
            pool: self.pool,
        })
    }

    /// Buffers queued now.
    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether no buffer is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lease_gives_the_buffer_back() {
        let b = Buffers::new(4, 64, "test").unwrap();
        // SAFETY: a fresh region; buffer 2 was never given to anyone.
        let mut o = unsafe { b.assume_owned(2) };
        b.write(&mut o)[..5].copy_from_slice(b"hello");
        let whole = b.freeze(o, 0, 64);
        let a = b.share(&whole, 1, 3);
        assert_eq!(b.bytes(&a), Some(&b"ell"[..]));
        assert!(b.release(whole).unwrap().is_none());
        let back = b
            .release(a)
            .unwrap()
            .expect("last lease returns the buffer");
        assert_eq!(back.bid(), 2);
    }

    #[test]
    fn a_split_buffer_comes_back_once_after_its_last_lease() {
        // A GRO burst: a carrier lease, 64 segment leases, released in a scrambled order.
        let b = Buffers::new(2, 65536, "t").unwrap();
        // SAFETY: a fresh region; buffer 1 was never given to anyone.
        let carrier = b.freeze(unsafe { b.assume_owned(1) }, 44, 64 * 100);
        let segs: Vec<Lease> = (0..64)
            .map(|i| b.share(&carrier, 44 + i * 100, 100))
            .collect();
        assert!(
            b.release(carrier).unwrap().is_none(),
            "segments still hold it"
        );
        let mut segs: Vec<Option<Lease>> = segs.into_iter().map(Some).collect();
        let mut back = 0;
        for k in 0..64 {
            let l = segs[(k * 37 + 5) % 64].take().expect("each released once");
            assert_eq!(l.len(), 100);
            if let Some(o) = b.release(l).unwrap() {
                assert_eq!((o.bid(), k), (1, 63), "only the last release returns it");
                back += 1;
            }
        }
        assert_eq!(back, 1);
    }

    #[test]
    fn a_lease_of_another_region_is_refused() {
        let a = Buffers::new(2, 64, "a").unwrap();
        let b = Buffers::new(2, 64, "b").unwrap();
        // SAFETY: fresh region, buffer 0 unused.
        let l = a.freeze(unsafe { a.assume_owned(0) }, 0, 8);
        assert!(b.bytes(&l).is_none());
        assert!(b.release(l).is_err());
    }

    #[test]
    fn leases_are_clamped_to_the_buffer() {
        let b = Buffers::new(1, 32, "t").unwrap();
        // SAFETY: fresh region.
        let l = b.freeze(unsafe { b.assume_owned(0) }, 30, 100);
        assert_eq!(l.len(), 2);
    }
}
