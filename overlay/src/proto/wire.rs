//! The fixed datagram header, and bounds-checked readers and writers for frame bodies.
//!
//! ```text
//!  0      2   3    4     5     6        8         12        28        44    52        68
//!  magic  ver type flags class length   overlay   sender    dest      seq   tag       payload
//!  u16    u8  u8   u8    u8    u16      u32       u128      u128      u64   [u8;16]   length bytes
//! ```
//! All integers are big-endian. The tag authenticates bytes `0..52` and the payload (see
//! [`super::security`]). A datagram is at most [`MAX_DATAGRAM`] bytes; decoding looks only
//! at the slice it is given, checks every length before it slices, and never allocates.

use super::id::PeerId;
use crate::error::Error;

/// `"RP"`: rtpm P3.
pub const MAGIC: u16 = 0x5250;
/// The only wire version spoken.
pub const VERSION: u8 = 1;
/// Fixed header length, tag included.
pub const HEADER_LEN: usize = 68;
/// Offset of the authentication tag.
pub const TAG_OFFSET: usize = 52;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Largest datagram (fits a 1500-byte Ethernet MTU under IPv6 and UDP headers).
pub const MAX_DATAGRAM: usize = 1400;
/// Largest payload.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN;

/// Header flag: the payload is encrypted (AEAD) and the tag is the AEAD tag.
pub const FLAG_ENCRYPTED: u8 = 0x01;

/// The decoded fixed header (plain values: decoding copies 52 bytes of fields, never the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Frame type (see [`super::frame::FrameType`]).
    pub msg_type: u8,
    /// Flags (`FLAG_*`).
    pub flags: u8,
    /// QoS class.
    pub class: u8,
    /// Payload length.
    pub len: u16,
    /// Overlay id.
    pub overlay: u32,
    /// Sender.
    pub sender: PeerId,
    /// Destination (`PeerId::NONE` for multicast).
    pub dest: PeerId,
    /// Per-sender datagram sequence number (replay protection): incarnation in the top 24
    /// bits, a counter below.
    pub seq: u64,
}

impl Header {
    /// Write the header (tag zeroed) into `out[..HEADER_LEN]`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        out[2] = VERSION;
        out[3] = self.msg_type;
        out[4] = self.flags;
        out[5] = self.class;
        out[6..8].copy_from_slice(&self.len.to_be_bytes());
        out[8..12].copy_from_slice(&self.overlay.to_be_bytes());
        out[12..28].copy_from_slice(&self.sender.0.to_be_bytes());
        out[28..44].copy_from_slice(&self.dest.0.to_be_bytes());
        out[44..52].copy_from_slice(&self.seq.to_be_bytes());
        out[52..68].fill(0);
    }

    /// Parse the fixed header of `bytes` and check the declared length against the slice.
    /// Returns the header and the payload slice. Checks, in order: length ≥ header, magic
    /// and version, overlay id, payload bound, payload present.
    pub fn parse(bytes: &[u8], overlay: u32) -> Result<(Header, &[u8]), Error> {
        let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated {
                got: bytes.len(),
                need: HEADER_LEN,
            });
        };
        let magic = u16::from_be_bytes([h[0], h[1]]);
        if magic != MAGIC || h[2] != VERSION {
            return Err(Error::BadMagic {
                magic,
                version: h[2],
            });
        }
        let got_overlay = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        if got_overlay != overlay {
            return Err(Error::WrongOverlay {
                got: got_overlay,
                want: overlay,
            });
        }
        let len = u16::from_be_bytes([h[6], h[7]]);
        if len as usize > MAX_PAYLOAD || bytes.len() > MAX_DATAGRAM {
            return Err(Error::Oversize {
                len: (len as usize).max(bytes.len().saturating_sub(HEADER_LEN)),
                max: MAX_PAYLOAD,
            });
        }
        let end = HEADER_LEN + len as usize;
        if bytes.len() < end {
            return Err(Error::Truncated {
                got: bytes.len(),
                need: end,
            });
        }
        if bytes.len() > end {
            return Err(Error::Malformed {
                what: "datagram (bytes after the declared payload)",
            });
        }
        let mut r = Reader::new(&h[12..52]);
        let sender = PeerId(r.u128()?);
        let dest = PeerId(r.u128()?);
        let seq = r.u64()?;
        let header = Header {
            msg_type: h[3],
            flags: h[4],
            class: h[5],
            len,
            overlay: got_overlay,
            sender,
            dest,
            seq,
        };
        Ok((header, &bytes[HEADER_LEN..end]))
    }
}

/// A bounds-checked big-endian reader over a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Read from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Take `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Truncated {
                got: self.buf.len(),
                need: n,
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let Some((head, tail)) = self.buf.split_first_chunk::<N>() else {
            return Err(Error::Truncated {
                got: self.buf.len(),
                need: N,
            });
        };
        self.buf = tail;
        Ok(*head)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A big-endian u128.
    pub fn u128(&mut self) -> Result<u128, Error> {
        Ok(u128::from_be_bytes(self.array()?))
    }
    /// Sixteen raw bytes.
    pub fn bytes16(&mut self) -> Result<[u8; 16], Error> {
        self.array()
    }
    /// Fail unless everything was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed { what })
        }
    }
}

/// A big-endian writer into a fixed buffer; writing past its end is an error, not a panic.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Write into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    /// Bytes written.
    pub fn len(&self) -> usize {
        self.pos
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
    /// Bytes still free.
    pub fn room(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Append raw bytes.
    pub fn put(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.pos + b.len();
        let Some(dst) = self.buf.get_mut(self.pos..end) else {
            return Err(Error::Oversize {
                len: end,
                max: self.buf.len(),
            });
        };
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> Result<(), Error> {
        self.put(&[v])
    }
    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }
    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }
    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }
    /// Big-endian u128.
    pub fn u128(&mut self, v: u128) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(len: u16) -> Header {
        Header {
            msg_type: 7,
            flags: 0,
            class: 2,
            len,
            overlay: 0xdead_beef,
            sender: PeerId(1 << 100 | 5),
            dest: PeerId(77),
            seq: 1 << 40 | 9,
        }
    }

    fn datagram(h: &Header, payload: &[u8]) -> Vec<u8> {
        let mut hb = [0u8; HEADER_LEN];
        h.write(&mut hb);
        let mut v = hb.to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_round_trips() {
        let h = sample(3);
        let d = datagram(&h, &[1, 2, 3]);
        let (got, p) = Header::parse(&d, 0xdead_beef).unwrap();
        assert_eq!(got, h);
        assert_eq!(p, &[1, 2, 3]);
    }

    #[test]
    fn each_check_fires() {
        let h = sample(3);
        let d = datagram(&h, &[1, 2, 3]);
        assert!(matches!(
            Header::parse(&d[..10], 0xdead_beef),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(&d[..69], 0xdead_beef),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Header::parse(&d, 1),
            Err(Error::WrongOverlay { .. })
        ));
        let mut bad = d.clone();
        bad[0] = 0;
        assert!(matches!(
            Header::parse(&bad, 0xdead_beef),
            Err(Error::BadMagic { .. })
        ));
        let big = datagram(&sample(MAX_PAYLOAD as u16 + 1), &[]);
        assert!(matches!(
            Header::parse(&big, 0xdead_beef),
            Err(Error::Oversize { .. })
        ));
        let mut long = d.clone();
        long.push(0);
        assert!(matches!(
            Header::parse(&long, 0xdead_beef),
            Err(Error::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn any_header_round_trips(t in any::<u8>(), f in any::<u8>(), c in any::<u8>(),
                                  s in any::<u128>(), d in any::<u128>(), q in any::<u64>(),
                                  payload in proptest::collection::vec(any::<u8>(), 0..MAX_PAYLOAD)) {
            let h = Header { msg_type: t, flags: f, class: c, len: payload.len() as u16,
                             overlay: 42, sender: PeerId(s), dest: PeerId(d), seq: q };
            let dg = datagram(&h, &payload);
            let (got, p) = Header::parse(&dg, 42).unwrap();
            prop_assert_eq!(got, h);
            prop_assert_eq!(p, &payload[..]);
        }

        #[test]
        fn any_bytes_parse_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = Header::parse(&bytes, 42);
        }
    }
}
