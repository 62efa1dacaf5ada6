//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in the overlay, from a malformed datagram to a bad command.
///
/// Decoding and security errors never change protocol state: the datagram is dropped and
/// counted (see [`crate::proto::security::DropCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Error {
    /// Fewer bytes than the fixed header, or fewer than the header's payload length says.
    #[error(
        "datagram truncated: {got} bytes where {need} were declared; the sender or the network cut it"
    )]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes the header (or a field) needs.
        need: usize,
    },
    /// The magic or version does not match this implementation.
    #[error(
        "not an rtpm overlay datagram (magic {magic:#06x}, version {version}); only version 1 is spoken"
    )]
    BadMagic {
        /// Magic found.
        magic: u16,
        /// Version found.
        version: u8,
    },
    /// The header names another overlay.
    #[error("datagram for overlay {got:#010x}, this endpoint serves {want:#010x}")]
    WrongOverlay {
        /// Overlay id in the header.
        got: u32,
        /// Overlay id configured here.
        want: u32,
    },
    /// The declared payload length exceeds the bound.
    #[error("payload length {len} exceeds the limit {max}; lower the message size or fragment it")]
    Oversize {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The authentication tag does not verify under the overlay key.
    #[error("authentication failed: forged datagram or wrong overlay key")]
    Forged,
    /// The sequence number was already seen or is older than the replay window.
    #[error("replayed datagram: sequence {seq} already seen or older than the replay window")]
    Replayed {
        /// The rejected sequence number.
        seq: u64,
    },
    /// A frame body that does not parse (unknown type, bad field, trailing bytes).
    #[error("malformed {what}: the frame body does not parse")]
    Malformed {
        /// Which field or frame.
        what: &'static str,
    },
    /// A command that cannot be carried out in the current state; state is unchanged.
    #[error("{what}: {why}")]
    Command {
        /// The command.
        what: &'static str,
        /// Why it was refused and what to do instead.
        why: &'static str,
    },
    /// A bounded queue is full; state is unchanged, retry after polling transmits/timeouts.
    #[error("{what} is full ({cap} entries); drain it (poll_transmit/handle_timeout) and retry")]
    Full {
        /// Which queue.
        what: &'static str,
        /// Its capacity.
        cap: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid overlay config: `{field}` {why}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is valid.
        why: &'static str,
    },
}
