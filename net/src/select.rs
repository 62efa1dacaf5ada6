//! Choosing a reactor backend: io_uring when the probe passes, epoll otherwise — or as
//! forced by config. The choice and its reason are logged and kept on the SAP.

use crate::config::BackendChoice;
use crate::error::Error;
use crate::reactor::BackendKind;
use crate::sys::probe;

/// The backend a SAP runs, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The backend.
    pub kind: BackendKind,
    /// Why it was chosen (for epoll under `auto`: why io_uring was not).
    pub reason: String,
}

/// Whether io_uring can serve a reactor on this machine; `Err` says why not (disabled by
/// sysctl, blocked by seccomp or an LSM, kernel too old, memlock too low).
pub fn probe_io_uring() -> Result<(), String> {
    probe::probe_uring().map(drop)
}

/// Applies `choice` to what the machine permits.
pub fn select(choice: BackendChoice) -> Result<Selection, Error> {
    match choice {
        BackendChoice::Epoll => Ok(Selection {
            kind: BackendKind::Epoll,
            reason: "forced by config (backend = \"epoll\")".into(),
        }),
        BackendChoice::IoUring => match probe::probe_uring() {
            Ok(s) => Ok(Selection {
                kind: BackendKind::IoUring,
                reason: format!(
                    "forced by config; probe passed on Linux {}.{}",
                    s.kernel.0, s.kernel.1
                ),
            }),
            Err(why) => Err(Error::UringUnavailable(why)),
        },
        BackendChoice::Auto => Ok(match probe::probe_uring() {
            Ok(s) => Selection {
                kind: BackendKind::IoUring,
                reason: format!("probe passed on Linux {}.{}", s.kernel.0, s.kernel.1),
            },
            Err(why) => Selection {
                kind: BackendKind::Epoll,
                reason: format!("io_uring unavailable: {why}"),
            },
        }),
    }
}
