//! The crate's one error type.
//!
//! The protocol's variants are small and carry static texts (decoding never allocates);
//! the driver's variants (configuration, binding, admission) name the overlay, the key or
//! the task, and say what to change.

use thiserror::Error;

/// Everything that can go wrong in the overlay, from a malformed datagram to a bad command.
///
/// Decoding and security errors never change protocol state: the datagram is dropped and
/// counted (see [`crate::proto::security::DropCounters`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
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
    /// A value of an `[[overlay]]` section is invalid (or its key file is unreadable);
    /// nothing of the overlay was started.
    #[error("overlay `{overlay}`: key `{key}`: {message}")]
    OverlayConfig {
        /// The overlay.
        overlay: String,
        /// The key at fault, relative to the section (`sap[1].address`).
        key: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// A socket, thread or multicast membership could not be set up; what the overlay had
    /// bound or admitted so far was released.
    #[error("overlay `{overlay}`: {what}: {message}")]
    Setup {
        /// The overlay.
        overlay: String,
        /// What failed (which SAP, which thread).
        what: String,
        /// The lower layer's error and what to change.
        message: String,
    },
    /// Admission control refused one of the overlay's tasks; none of its tasks stays
    /// admitted and nothing was bound.
    #[error(
        "overlay `{overlay}`: task `{task}` ({spec}) was not admitted: {reason} (the overlay's task set follows from its config: a longer heartbeat or min_interarrival, or a smaller batch, asks less of the RT cores)"
    )]
    Admission {
        /// The overlay.
        overlay: String,
        /// The task that did not fit.
        task: String,
        /// Its declaration (release, budget, deadline).
        spec: String,
        /// Admission's reason: where (which core, which test) and by how much.
        reason: String,
    },
    /// The overlay was left and its driver stopped; state is unchanged.
    #[error("overlay `{overlay}` has been left: its driver is stopped; start the overlay again")]
    Stopped {
        /// The overlay.
        overlay: String,
    },
    /// A lookup got no answer in time (nothing found, nothing definite either).
    #[error(
        "overlay `{overlay}`: lookup of key {key:032x} got no answer within {waited_ms} ms; the overlay may be repairing: retry"
    )]
    LookupTimeout {
        /// The overlay.
        overlay: String,
        /// The key.
        key: u128,
        /// How long the caller waited, in milliseconds.
        waited_ms: u64,
    },
}
