//! Datagram security: a keyed MAC on every datagram, a per-sender replay window, and
//! optional AEAD encryption, all checked before the payload is parsed.
//!
//! **MAC.** The tag is the BLAKE3 keyed hash (truncated to 128 bits) of header bytes
//! `0..52` followed by the payload, under the overlay key. **AEAD** (when the overlay is
//! encrypted): XChaCha20-Poly1305 under a key derived from the overlay key, nonce = sender
//! id ‖ sequence number (unique per sender because the sequence never repeats within an
//! incarnation and carries the incarnation), associated data = header bytes `0..52`; the
//! Poly1305 tag takes the tag slot. **Replay.** Each sender's sequence numbers pass a
//! sliding window of [`REPLAY_WINDOW`] bits; a restarted sender uses a higher incarnation
//! (top 24 bits of the sequence), so its numbers are fresh.
//!
//! Order of checks in [`Security::open`]: length and magic (truncated/malformed), overlay id
//! (wrong overlay), declared length (oversize/truncated), tag (forged — a wrong key looks
//! exactly like a forgery), replay window (replayed), then decryption. Every rejection is
//! counted in [`DropCounters`]; only a datagram that passes all of them updates the window.

use super::DetMap;
use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use super::id::PeerId;
use super::wire::{FLAG_ENCRYPTED, HEADER_LEN, Header, TAG_LEN, TAG_OFFSET};
use crate::error::Error;

/// Width of the per-sender replay window, in sequence numbers.
pub const REPLAY_WINDOW: u64 = 1024;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// The overlay's 256-bit key. It comes from configuration (a key file), never from code.
#[derive(Clone, PartialEq, Eq)]
pub struct OverlayKey(pub [u8; 32]);

impl fmt::Debug for OverlayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OverlayKey(<redacted>)")
    }
}

impl OverlayKey {
    /// Parse 64 hex digits (surrounding whitespace allowed), as stored in a key file.
    pub fn from_hex(s: &str) -> Result<OverlayKey, Error> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(Error::Config {
                field: "overlay key",
                why: "must be exactly 64 hex digits (32 bytes)",
            });
        }
        let mut k = [0u8; 32];
        for (i, out) in k.iter_mut().enumerate() {
            let byte = s
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            *out = byte.ok_or(Error::Config {
                field: "overlay key",
                why: "must contain only hex digits 0-9a-f",
            })?;
        }
        Ok(OverlayKey(k))
    }
}

/// Datagrams dropped by security, by reason, and those accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Tag did not verify (forgery, corruption or a wrong key).
    pub forged: u64,
    /// Shorter than the header or than its declared length.
    pub truncated: u64,
    /// Sequence number already seen or too old.
    pub replayed: u64,
    /// Header names another overlay.
    pub wrong_overlay: u64,
    /// Declared length above the bound, or a datagram longer than the maximum.
    pub oversize: u64,
    /// Bad magic/version, trailing bytes, or (after authentication) an unparsable body.
    pub malformed: u64,
    /// Datagrams that passed every check.
    pub accepted: u64,
}

impl DropCounters {
    /// Sum of all drops.
    pub fn dropped(&self) -> u64 {
        self.forged
            + self.truncated
            + self.replayed
            + self.wrong_overlay
            + self.oversize
            + self.malformed
    }
    fn count(&mut self, e: &Error) {
        match e {
            Error::Truncated { .. } => self.truncated += 1,
            Error::WrongOverlay { .. } => self.wrong_overlay += 1,
            Error::Oversize { .. } => self.oversize += 1,
            Error::Forged => self.forged += 1,
            Error::Replayed { .. } => self.replayed += 1,
            _ => self.malformed += 1,
        }
    }
}

/// One sender's sliding window.
#[derive(Clone, Debug)]
struct Window {
    top: u64,
    bits: [u64; WORDS],
    touched: u64,
}

impl Window {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % REPLAY_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }
    /// Whether `seq` would be accepted (fresh and inside the window).
    fn fresh(&self, seq: u64) -> bool {
        if seq > self.top {
            return true;
        }
        if self.top - seq >= REPLAY_WINDOW {
            return false;
        }
        let (w, m) = Window::bit(seq);
        self.bits[w] & m == 0
    }
    /// Record `seq` (must be fresh).
    fn mark(&mut self, seq: u64) {
        if seq > self.top {
            if seq - self.top >= REPLAY_WINDOW {
                self.bits = [0; WORDS];
            } else {
                // forget the numbers between the old top and the new one (a sender's
                // numbers are shared by all its destinations, so gaps of dozens are
                // normal): a masked word at each end, whole words between
                let mut s = self.top + 1;
                while s <= seq {
                    let i = s % REPLAY_WINDOW;
                    let (w, b) = ((i / 64) as usize, i % 64);
                    let n = (64 - b).min(seq - s + 1);
                    let mask = if n == 64 {
                        u64::MAX
                    } else {
                        ((1u64 << n) - 1) << b
                    };
                    self.bits[w] &= !mask;
                    s += n;
                }
            }
            self.top = seq;
        }
        let (w, m) = Window::bit(seq);
        self.bits[w] |= m;
    }
}

/// A per-overlay security context: keys, this sender's sequence, receivers' windows.
pub struct Security {
    overlay: u32,
    mac_key: [u8; 32],
    aead: Option<XChaCha20Poly1305>,
    seq: u64,
    windows: DetMap<PeerId, Window>,
    max_senders: usize,
    touch: u64,
    counters: DropCounters,
    restarted: Option<PeerId>,
    mac_buf: Vec<u8>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("overlay", &self.overlay)
            .field("encrypted", &self.aead.is_some())
            .field("senders", &self.windows.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Security {
    /// A context for `overlay` under `key`. `incarnation` (only the low 24 bits are used)
    /// must grow at every restart of this peer so its sequence numbers stay fresh.
    /// `max_senders` bounds the replay table; the least recently heard sender is evicted.
    pub fn new(
        overlay: u32,
        key: &OverlayKey,
        encrypt: bool,
        incarnation: u32,
        max_senders: usize,
    ) -> Security {
        let aead = encrypt.then(|| {
            let k = blake3::derive_key("rtpm overlay aead key v1", &key.0);
            XChaCha20Poly1305::new(&k.into())
        });
        Security {
            overlay,
            mac_key: key.0,
            aead,
            seq: ((incarnation as u64) & 0xff_ffff) << 40,
            windows: DetMap::default(),
            max_senders: max_senders.max(1),
            touch: 0,
            counters: DropCounters::default(),
            restarted: None,
            mac_buf: Vec::with_capacity(super::wire::MAX_DATAGRAM),
        }
    }

    /// The overlay id.
    pub fn overlay(&self) -> u32 {
        self.overlay
    }

    /// Whether payloads are encrypted.
    pub fn encrypted(&self) -> bool {
        self.aead.is_some()
    }

    /// The next sequence number to stamp on an outgoing datagram.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Counters so far.
    pub fn counters(&self) -> DropCounters {
        self.counters
    }

    /// Count a datagram that authenticated but whose body did not parse.
    pub fn count_malformed(&mut self) {
        self.counters.malformed += 1;
        self.counters.accepted = self.counters.accepted.saturating_sub(1);
    }

    fn mac(&mut self, dgram: &[u8]) -> [u8; TAG_LEN] {
        // one contiguous input lets BLAKE3 take its single-chunk fast path (the
        // incremental hasher's large state would cost more than this copy)
        self.mac_buf.clear();
        self.mac_buf.extend_from_slice(&dgram[..TAG_OFFSET]);
        self.mac_buf.extend_from_slice(&dgram[HEADER_LEN..]);
        let h = blake3::keyed_hash(&self.mac_key, &self.mac_buf);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&h.as_bytes()[..TAG_LEN]);
        tag
    }

    /// Authenticate (and encrypt, if configured) a datagram whose header is written with
    /// the flags already set and the tag zeroed: fills the tag slot.
    pub fn seal(&mut self, dgram: &mut [u8]) -> Result<(), Error> {
        if dgram.len() < HEADER_LEN {
            return Err(Error::Truncated {
                got: dgram.len(),
                need: HEADER_LEN,
            });
        }
        let tag: [u8; TAG_LEN] = match &self.aead {
            None => self.mac(dgram),
            Some(aead) => {
                let (head, payload) = dgram.split_at_mut(HEADER_LEN);
                let nonce = nonce(head);
                let t = aead
                    .encrypt_in_place_detached(&nonce, &head[..TAG_OFFSET], payload)
                    .map_err(|_| Error::Oversize {
                        len: payload.len(),
                        max: super::wire::MAX_PAYLOAD,
                    })?;
                t.into()
            }
        };
        dgram[TAG_OFFSET..HEADER_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// Check a received datagram. On success returns the header and the plaintext payload
    /// (borrowed from `bytes`, or from `scratch` when decrypted; `scratch` must hold
    /// `MAX_PAYLOAD` bytes). On failure the datagram is counted and nothing else changes.
    pub fn open<'a>(
        &mut self,
        bytes: &'a [u8],
        scratch: &'a mut [u8],
    ) -> Result<(Header, &'a [u8]), Error> {
        let r = self.open_inner(bytes, scratch);
        match &r {
            Ok(_) => self.counters.accepted += 1,
            Err(e) => self.counters.count(e),
        }
        r
    }

    fn open_inner<'a>(
        &mut self,
        bytes: &'a [u8],
        scratch: &'a mut [u8],
    ) -> Result<(Header, &'a [u8]), Error> {
        let (h, payload) = Header::parse(bytes, self.overlay)?;
        let encrypted = h.flags & FLAG_ENCRYPTED != 0;
        if encrypted != self.aead.is_some() {
            // An unencrypted datagram in an encrypted overlay (or the reverse) was not made
            // under this overlay's policy: treat it as a forgery.
            return Err(Error::Forged);
        }
        let tag = &bytes[TAG_OFFSET..HEADER_LEN];
        let plain: &'a [u8] = match &self.aead {
            None => {
                let want = self.mac(bytes);
                if !ct_eq(&want, tag) {
                    return Err(Error::Forged);
                }
                payload
            }
            Some(aead) => {
                let cap = scratch.len();
                let out = scratch.get_mut(..payload.len()).ok_or(Error::Oversize {
                    len: payload.len(),
                    max: cap,
                })?;
                out.copy_from_slice(payload);
                let head = &bytes[..HEADER_LEN];
                aead.decrypt_in_place_detached(
                    &nonce(head),
                    &head[..TAG_OFFSET],
                    out,
                    Tag::from_slice(tag),
                )
                .map_err(|_| Error::Forged)?;
                out
            }
        };
        self.accept_seq(h.sender, h.seq)?;
        Ok((h, plain))
    }

    fn accept_seq(&mut self, sender: PeerId, seq: u64) -> Result<(), Error> {
        self.touch += 1;
        let touch = self.touch;
        if let Some(w) = self.windows.get_mut(&sender) {
            if !w.fresh(seq) {
                return Err(Error::Replayed { seq });
            }
            if seq >> 40 > w.top >> 40 {
                self.restarted = Some(sender);
            }
            w.mark(seq);
            w.touched = touch;
            return Ok(());
        }
        if self.windows.len() >= self.max_senders
            && let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.touched)
                .map(|(k, _)| *k)
        {
            self.windows.remove(&oldest);
        }
        let mut w = Window {
            top: 0,
            bits: [0; WORDS],
            touched: touch,
        };
        w.mark(seq);
        self.windows.insert(sender, w);
        Ok(())
    }

    /// The sender of the last accepted datagram, if that datagram showed it restarted
    /// (a higher incarnation than before). Cleared by reading.
    pub fn take_restarted(&mut self) -> Option<PeerId> {
        self.restarted.take()
    }

    /// Forget a sender's window (it left or was declared dead).
    pub fn forget(&mut self, sender: PeerId) {
        self.windows.remove(&sender);
    }
}

fn nonce(head: &[u8]) -> XNonce {
    // sender id (bytes 12..28) ‖ sequence (bytes 44..52)
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(&head[12..28]);
    n[16..].copy_from_slice(&head[44..52]);
    n.into()
}

fn ct_eq(a: &[u8; TAG_LEN], b: &[u8]) -> bool {
    if b.len() != TAG_LEN {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{Header, MAX_PAYLOAD};
    use proptest::prelude::*;

    const KEY: OverlayKey = OverlayKey([7; 32]);

    fn dgram(sec: &mut Security, sender: u128, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            msg_type: 14,
            flags: if sec.encrypted() { FLAG_ENCRYPTED } else { 0 },
            class: 0,
            len: payload.len() as u16,
            overlay: sec.overlay(),
            sender: PeerId(sender),
            dest: PeerId(2),
            seq: sec.next_seq(),
        };
        let mut hb = [0u8; HEADER_LEN];
        h.write(&mut hb);
        let mut v = hb.to_vec();
        v.extend_from_slice(payload);
        sec.seal(&mut v).unwrap();
        v
    }

    fn open(rx: &mut Security, d: &[u8]) -> Result<Vec<u8>, Error> {
        let mut scratch = [0u8; MAX_PAYLOAD];
        rx.open(d, &mut scratch).map(|(_, p)| p.to_vec())
    }

    #[test]
    fn authentic_datagram_is_accepted_both_modes() {
        for enc in [false, true] {
            let mut tx = Security::new(1, &KEY, enc, 1, 16);
            let mut rx = Security::new(1, &KEY, enc, 1, 16);
            let d = dgram(&mut tx, 9, b"payload");
            if enc {
                assert!(
                    !d.windows(7).any(|w| w == b"payload"),
                    "encrypted payload leaked"
                );
            }
            assert_eq!(open(&mut rx, &d).unwrap(), b"payload");
            assert_eq!(rx.counters().accepted, 1);
        }
    }

    #[test]
    fn forged_replayed_truncated_wrong_key_wrong_overlay_oversize_are_counted() {
        for enc in [false, true] {
            let mut tx = Security::new(1, &KEY, enc, 1, 16);
            let mut rx = Security::new(1, &KEY, enc, 1, 16);
            // forged: flip a payload bit, and separately a header bit
            let d = dgram(&mut tx, 9, b"abc");
            let mut f = d.clone();
            *f.last_mut().unwrap() ^= 1;
            assert_eq!(open(&mut rx, &f), Err(Error::Forged));
            let mut f = d.clone();
            f[30] ^= 1; // destination id
            assert_eq!(open(&mut rx, &f), Err(Error::Forged));
            // the genuine one still passes (forgeries did not touch the window)
            assert!(open(&mut rx, &d).is_ok());
            // replay
            assert!(matches!(open(&mut rx, &d), Err(Error::Replayed { .. })));
            // truncation: header cut, payload cut
            let d2 = dgram(&mut tx, 9, b"abcdef");
            assert!(matches!(
                open(&mut rx, &d2[..40]),
                Err(Error::Truncated { .. })
            ));
            assert!(matches!(
                open(&mut rx, &d2[..d2.len() - 2]),
                Err(Error::Truncated { .. })
            ));
            // wrong key
            let mut other = Security::new(1, &OverlayKey([8; 32]), enc, 1, 16);
            let d3 = dgram(&mut other, 9, b"abc");
            assert_eq!(open(&mut rx, &d3), Err(Error::Forged));
            // wrong overlay
            let mut elsewhere = Security::new(2, &KEY, enc, 1, 16);
            let d4 = dgram(&mut elsewhere, 9, b"abc");
            assert!(matches!(
                open(&mut rx, &d4),
                Err(Error::WrongOverlay { .. })
            ));
            // oversize declared length
            let mut d5 = dgram(&mut tx, 9, b"abc");
            d5[6..8].copy_from_slice(&(MAX_PAYLOAD as u16 + 1).to_be_bytes());
            assert!(matches!(open(&mut rx, &d5), Err(Error::Oversize { .. })));
            let c = rx.counters();
            assert_eq!(
                (
                    c.forged,
                    c.replayed,
                    c.truncated,
                    c.wrong_overlay,
                    c.oversize,
                    c.accepted
                ),
                (3, 1, 2, 1, 1, 1),
                "encrypted={enc}"
            );
        }
    }

    #[test]
    fn plaintext_in_encrypted_overlay_is_rejected() {
        let mut tx = Security::new(1, &KEY, false, 1, 16);
        let mut rx = Security::new(1, &KEY, true, 1, 16);
        let d = dgram(&mut tx, 9, b"abc");
        assert_eq!(open(&mut rx, &d), Err(Error::Forged));
    }

    #[test]
    fn reordering_inside_the_window_passes_once() {
        let mut tx = Security::new(1, &KEY, false, 1, 16);
        let mut rx = Security::new(1, &KEY, false, 1, 16);
        let ds: Vec<_> = (0..100).map(|_| dgram(&mut tx, 9, b"x")).collect();
        for d in ds.iter().rev() {
            assert!(open(&mut rx, d).is_ok());
        }
        for d in &ds {
            assert!(open(&mut rx, d).is_err());
        }
        // far beyond the window: old ones are rejected
        let late = ds[0].clone();
        for _ in 0..REPLAY_WINDOW + 5 {
            let d = dgram(&mut tx, 9, b"y");
            assert!(open(&mut rx, &d).is_ok());
        }
        assert!(matches!(open(&mut rx, &late), Err(Error::Replayed { .. })));
    }

    proptest! {
        #[test]
        fn window_matches_a_set_of_seen_numbers(steps in proptest::collection::vec((0u64..3000, any::<bool>()), 1..200)) {
            // reference: the set of accepted numbers, and the top
            let mut w = Window { top: 0, bits: [0; WORDS], touched: 0 };
            let mut seen = std::collections::BTreeSet::new();
            let mut top = 0u64;
            let mut cur = 1u64;
            for (jump, back) in steps {
                cur = if back { cur.saturating_sub(jump % 1100).max(1) } else { cur + jump };
                let fresh = !seen.contains(&cur) && (cur > top || top - cur < REPLAY_WINDOW);
                prop_assert_eq!(w.fresh(cur), fresh, "seq {}", cur);
                if fresh {
                    w.mark(cur);
                    seen.insert(cur);
                    top = top.max(cur);
                }
            }
        }
    }

    #[test]
    fn restart_with_new_incarnation_is_fresh_and_old_one_is_stale() {
        let mut old = Security::new(1, &KEY, false, 1, 16);
        let mut rx = Security::new(1, &KEY, false, 1, 16);
        let a = dgram(&mut old, 9, b"a");
        let b = dgram(&mut old, 9, b"b");
        assert!(open(&mut rx, &b).is_ok());
        let mut new = Security::new(1, &KEY, false, 2, 16);
        assert!(open(&mut rx, &dgram(&mut new, 9, b"c")).is_ok());
        assert!(open(&mut rx, &a).is_err());
    }

    #[test]
    fn replay_table_is_bounded() {
        let mut rx = Security::new(1, &KEY, false, 1, 4);
        for s in 0..20u128 {
            let mut tx = Security::new(1, &KEY, false, 1, 4);
            assert!(open(&mut rx, &dgram(&mut tx, s + 10, b"x")).is_ok());
        }
        assert!(rx.windows.len() <= 4);
    }

    #[test]
    fn key_parses_from_hex_only() {
        let k = OverlayKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(k.0, [0xab; 32]);
        assert!(OverlayKey::from_hex("abc").is_err());
        assert!(OverlayKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{k:?}"), "OverlayKey(<redacted>)");
    }

    proptest! {
        #[test]
        fn any_bytes_open_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..1500), enc in any::<bool>()) {
            let mut rx = Security::new(1, &KEY, enc, 1, 16);
            let mut scratch = [0u8; MAX_PAYLOAD];
            prop_assert!(rx.open(&bytes, &mut scratch).is_err());
            prop_assert_eq!(rx.counters().dropped(), 1);
        }
    }
}
