//! The crate's one error type.
//!
//! Every variant says what failed, on what, and what the user can change. Errors from a
//! system call carry the call's name and the errno's explanation.

use std::path::PathBuf;

use crate::config::ConfigError;

/// Everything that can go wrong in `rtpm-rt`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file (or several) is invalid. Nothing was applied.
    #[error("{0}")]
    Config(#[from] ConfigError),

    /// A system call failed; `hint` says what to change.
    #[error("{call} failed on {target}: {source}{}", hint_suffix(.hint))]
    Sys {
        /// The call, e.g. `sched_setattr(SCHED_DEADLINE)`.
        call: &'static str,
        /// What it was applied to, e.g. `thread "rt-0" (tid 4242)`.
        target: String,
        /// The OS error.
        source: std::io::Error,
        /// What the user can do about it (may be empty).
        hint: String,
    },

    /// A file the crate needs could not be read or written.
    #[error("{path}: {source}{}", hint_suffix(.hint))]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
        /// What the user can do about it (may be empty).
        hint: String,
    },

    /// A request that cannot be met as asked, with the reason and what would be valid.
    #[error("{0}")]
    Invalid(String),

    /// The shield cannot be set up, undone or read.
    #[error("shield: {0}")]
    Shield(String),

    /// Admission control refused a task (it would endanger an admitted deadline, or it
    /// does not fit); the executor is unchanged.
    #[error("{0}")]
    Refused(Box<crate::exec::Rejection>),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

impl Error {
    /// A failed system call, with errno taken from `source`.
    pub(crate) fn sys(
        call: &'static str,
        target: impl Into<String>,
        source: std::io::Error,
        hint: impl Into<String>,
    ) -> Error {
        Error::Sys {
            call,
            target: target.into(),
            source,
            hint: hint.into(),
        }
    }

    /// A file error without a hint.
    pub(crate) fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::File {
            path: path.into(),
            source,
            hint: String::new(),
        }
    }

    /// The errno of a system-call error, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } | Error::File { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
