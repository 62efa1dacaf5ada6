//! The crate's one error type.
//!
//! The RPC errors of the seed paper (`NOT_ALLOWED`, `SERVICE_NOT_FOUND`, …) are variants
//! here, beside login, admission, configuration and lower-layer errors. Every message
//! says what failed, on what, and what the user can change. Unless a variant says
//! otherwise, an error leaves the runtime as it was.

use std::path::PathBuf;

use rtpm_rt::time::Nanos;

use crate::id::ServiceId;
use crate::security::Permission;

/// Everything that can go wrong in `rtpm`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user name or the passphrase is wrong. Deliberately does not say which.
    #[error("login refused for user `{user}`: unknown user or wrong passphrase")]
    LoginFailed {
        /// The user name given.
        user: String,
    },

    /// Too many failed logins for this user: no attempt is checked before `retry_after`
    /// has passed (exponential back-off, reset by a successful login).
    #[error(
        "login for user `{user}` is throttled after {failures} failed attempts: retry in {retry_after}"
    )]
    Throttled {
        /// The user name given.
        user: String,
        /// Failed attempts so far.
        failures: u32,
        /// How long to wait before the next attempt is checked.
        retry_after: Nanos,
    },

    /// The session was logged out, or belongs to another runtime.
    #[error(
        "session of user `{user}` is not active in this runtime (logged out, or from another runtime): log in again"
    )]
    SessionClosed {
        /// The session's user.
        user: String,
    },

    /// The user lacks a permission on a service (or topic).
    #[error(
        "user `{user}` is not allowed to {permission} on `{target}`: grant it `{permission}` in the users file or with KernelSecurity::grant"
    )]
    NotAllowed {
        /// Who asked.
        user: String,
        /// What was missing.
        permission: Permission,
        /// The service or topic, by name when known, else by id.
        target: String,
    },

    /// No service with this id is in the runtime, nor found on any network.
    #[error("service {id} not found in this runtime or on any network")]
    ServiceNotFound {
        /// The id asked for.
        id: ServiceId,
    },

    /// The service exists but cannot take the request now (removed meanwhile, its
    /// request queue is full, or the network failed).
    #[error("service `{service}` is not available: {reason}")]
    ServiceNotAvailable {
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },

    /// A two-way request got no reply before its deadline (or its deadline had passed
    /// when the server took it; the operation then did not run).
    #[error(
        "request {operation} to `{service}` missed its deadline ({deadline} after it was issued)"
    )]
    DeadlineExceeded {
        /// The service.
        service: String,
        /// The operation.
        operation: u32,
        /// The relative deadline the request carried.
        deadline: Nanos,
    },

    /// The server does not implement the operation.
    #[error("service `{service}` does not implement operation {operation}")]
    OperationNotImplemented {
        /// The service.
        service: String,
        /// The operation asked for.
        operation: u32,
    },

    /// The server ran the operation and it failed.
    #[error("service `{service}`, operation {operation} failed: {message}")]
    OperationFailed {
        /// The service.
        service: String,
        /// The operation.
        operation: u32,
        /// What the server said.
        message: String,
    },

    /// A payload could not be encoded or decoded.
    #[error("payload of `{service}` could not be {action}: {message}")]
    Encoding {
        /// The service or topic.
        service: String,
        /// "encoded" or "decoded".
        action: &'static str,
        /// What the codec said.
        message: String,
    },

    /// Admission control refused a task of a service: inserting it would endanger an
    /// admitted deadline, or it does not fit. Nothing of the service was kept.
    #[error("service `{service}` refused: admission refused its task: {rejection}")]
    Refused {
        /// The service.
        service: String,
        /// Admission's reason (which task would miss, by how much, under which test).
        rejection: Box<rtpm_rt::exec::Rejection>,
    },

    /// A service, topic or network of that id is already in the runtime.
    #[error("{what} `{name}` ({id}) is already in this runtime: remove it first")]
    AlreadyPresent {
        /// "service", "topic", "network".
        what: &'static str,
        /// Its name.
        name: String,
        /// Its id.
        id: uuid::Uuid,
    },

    /// A service is present but of another type than asked for.
    #[error("service `{name}` is not a {expected}")]
    WrongType {
        /// The service.
        name: String,
        /// The type asked for.
        expected: &'static str,
    },

    /// No network of that id or name is in the runtime.
    #[error("no network `{0}` in this runtime")]
    NetworkNotFound(String),

    /// A configuration or users file is invalid. Nothing was applied.
    #[error("{}: {}{message}", file.display(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Config {
        /// The file at fault.
        file: PathBuf,
        /// The key at fault, when there is one.
        key: Option<String>,
        /// What is wrong and what would be valid.
        message: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// A request that cannot be met as asked, with the reason and what would be valid.
    #[error("{0}")]
    Invalid(String),

    /// The real-time layer failed (partition, executor, threads).
    #[error(transparent)]
    Rt(#[from] rtpm_rt::Error),

    /// A network (overlay) failed.
    #[error("network `{network}`: {message}")]
    Network {
        /// The network.
        network: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// The error for a bad key in `file`.
    pub(crate) fn config(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::Config {
            file: file.into(),
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
