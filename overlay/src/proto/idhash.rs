//! The hasher of the protocol's maps: fast, fixed and deterministic.
//!
//! Every map of the protocol is keyed by identifiers (peer ids, cell ids, SAP keys,
//! request nonces) that are already uniformly spread 64- or 128-bit numbers: a keyed
//! SipHash per lookup buys nothing there and was a tenth of the simulator's time. This
//! hasher folds the key's words with a multiply-rotate step and finishes with a
//! 64×64→128-bit multiply whose halves are xored, so the low bits (the bucket index)
//! and the high bits (the control byte) both depend on every input bit. It has no
//! per-process seed: iteration order depends only on the keys, so runs are reproducible
//! bit for bit. Keys come only from authenticated datagrams of the overlay's members,
//! so flooding a table with colliding ids takes the overlay key.

use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A hasher for identifier keys (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher {
    h: u64,
}

impl IdHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.h = (self.h.rotate_left(26) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let p = (self.h as u128).wrapping_mul(K as u128 | 1 << 64);
        (p as u64) ^ ((p >> 64) as u64)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ (rest.len() as u64) << 56);
        }
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(v as u64);
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.mix(v as u64);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.mix(v as u64);
        self.mix((v >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    #[inline]
    fn write_isize(&mut self, v: isize) {
        self.mix(v as u64);
    }
}

/// Builds [`IdHasher`]s.
pub type BuildIdHasher = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash>(t: &T) -> u64 {
        BuildIdHasher::default().hash_one(t)
    }

    #[test]
    fn hashes_are_fixed_and_spread_over_low_and_high_bits() {
        // fixed: no per-process seed
        assert_eq!(hash(&7u128), hash(&7u128));
        // sequential keys must not crowd buckets or control bytes
        let mut low = std::collections::BTreeSet::new();
        let mut high = std::collections::BTreeSet::new();
        for i in 0..4096u64 {
            let h = hash(&i);
            low.insert(h & 0xfff);
            high.insert(h >> 57);
        }
        assert!(
            low.len() > 2400,
            "low 12 bits: {} distinct of 4096",
            low.len()
        );
        assert_eq!(high.len(), 128, "the 7 top bits take every value");
        // a u128 depends on both halves
        assert_ne!(hash(&(1u128 << 64)), hash(&(2u128 << 64)));
        assert_ne!(hash(&1u128), hash(&2u128));
    }
}
