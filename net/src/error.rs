//! The crate's one error type.

use std::io;

/// Everything that can go wrong in the network layer. Each message says what failed, on
/// what, and what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A SAP config value is invalid. Nothing was bound.
    #[error("SAP `{sap}`: `{field}` {reason}")]
    Config {
        /// The SAP's name.
        sap: String,
        /// The offending key, as spelled in the config (e.g. `qos.threads`).
        field: &'static str,
        /// What is wrong and what would be valid.
        reason: String,
    },
    /// A system call failed.
    #[error("{call} failed on {what}: {source}; {hint}")]
    Os {
        /// The call, e.g. `bind`.
        call: &'static str,
        /// What it was applied to.
        what: String,
        /// The OS error.
        source: io::Error,
        /// What the operator can do about it.
        hint: &'static str,
    },
    /// The io_uring backend was forced by config but cannot run here.
    #[error(
        "io_uring was forced (backend = \"io-uring\") but is unavailable: {0}; set backend = \"auto\" or \"epoll\""
    )]
    UringUnavailable(String),
    /// The send path has no free slot (every slot is queued or in flight).
    #[error(
        "SAP `{sap}`: all {slots} send slots are queued or in flight; retry after completions, or raise `send_slots`"
    )]
    SendQueueFull {
        /// The SAP's name (shared: making this error allocates nothing).
        sap: std::sync::Arc<str>,
        /// Configured slots.
        slots: u32,
    },
    /// A message does not fit one buffer.
    #[error(
        "message of {len} bytes exceeds this SAP's maximum of {max} bytes; raise `buffer_size`"
    )]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The connection is gone (closed by the peer, or after an error).
    #[error("connection {0} is closed")]
    Closed(crate::handoff::ConnId),
    /// The operation does not apply to this SAP's transport.
    #[error("SAP `{sap}`: {what} needs a {needs} transport")]
    Transport {
        /// The SAP's name.
        sap: String,
        /// What was attempted.
        what: &'static str,
        /// The transport it needs.
        needs: &'static str,
    },
    /// A destination id that the SAP does not have, or whose consumer was taken.
    #[error("SAP `{sap}`: destination {dest} {reason}")]
    Destination {
        /// The SAP's name.
        sap: String,
        /// The destination id.
        dest: u16,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// A pool thread could not be started with its policy or placement.
    #[error("SAP `{sap}`: starting pool thread {thread}: {reason}")]
    Thread {
        /// The SAP's name.
        sap: String,
        /// The thread's name.
        thread: String,
        /// What failed and what to change.
        reason: String,
    },
    /// A handle from another SAP (or another destination's region) was given back.
    #[error("the handle belongs to another SAP's buffers")]
    ForeignHandle,
    /// A broken internal invariant; a bug in this crate.
    #[error("internal error in rtpm-net (please report): {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Os`] from the calling thread's `errno`.
    pub(crate) fn os(call: &'static str, what: &str, hint: &'static str) -> Error {
        Error::Os {
            call,
            what: what.to_string(),
            source: io::Error::last_os_error(),
            hint,
        }
    }

    /// An [`Error::Os`] from a given error.
    pub(crate) fn os_from(
        call: &'static str,
        what: &str,
        source: io::Error,
        hint: &'static str,
    ) -> Error {
        Error::Os {
            call,
            what: what.to_string(),
            source,
            hint,
        }
    }
}
