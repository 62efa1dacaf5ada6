//! Payload encodings. A [`Codec`] turns a serde value into bytes and back; client and
//! server pick the same one. The default, [`Postcard`], is compact (varints, no field
//! names), stable, and writes into a reused buffer without allocating once the buffer
//! has room.

use serde::{Deserialize, Serialize};

/// A payload encoding.
pub trait Codec: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes a `T` from `bytes`.
    fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String>;
}

/// postcard: the default encoding.
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl Codec for Postcard {
    #[inline]
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        let buf = std::mem::take(out);
        match postcard::to_extend(value, buf) {
            Ok(buf) => {
                *out = buf;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    #[inline]
    fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Limit {
        segment: u32,
        kmh: f32,
        name: String,
    }

    #[test]
    fn postcard_round_trips_into_a_reused_buffer() {
        let mut buf = Vec::with_capacity(64);
        let v = Limit {
            segment: 7,
            kmh: 42.5,
            name: "A1".into(),
        };
        Postcard::encode(&v, &mut buf).unwrap();
        let cap = buf.capacity();
        assert!(buf.len() < 16, "postcard is compact: {} bytes", buf.len());
        assert_eq!(Postcard::decode::<Limit>(&buf).unwrap(), v);
        buf.clear();
        Postcard::encode(&v, &mut buf).unwrap();
        assert_eq!(buf.capacity(), cap, "the buffer is reused");
        assert!(Postcard::decode::<Limit>(&buf[..2]).is_err());
    }
}
