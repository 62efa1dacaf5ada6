//! # rtpm-tests: integration and fault tests
//!
//! The tests live in `tests/`. This library holds what they share: probes for the
//! privileges and kernel features a test needs, so that a test without them skips with
//! a printed reason instead of failing or passing silently.

use std::path::PathBuf;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Skips the calling test, printing why, when `$reason` is `Some`.
///
/// Use with a probe: `skip_unless!(probe::root());`. The message goes to stderr, which
/// `cargo test` and `cargo nextest` show for the test.
#[macro_export]
macro_rules! skip_unless {
    ($probe:expr) => {
        if let Err(reason) = $probe {
            eprintln!("SKIPPED {}: {}", module_path!(), reason);
            return;
        }
    };
}

/// Probes for privileges and kernel features.
pub mod probe {
    /// `Ok` when the process runs as root (effective uid 0).
    pub fn root() -> Result<(), String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .ok_or("no Uid line in /proc/self/status")?;
        if euid == "0" {
            Ok(())
        } else {
            Err(format!("needs root (effective uid is {euid})"))
        }
    }

    /// `Ok` when the process can use at least `n` CPUs.
    pub fn cpus(n: usize) -> Result<(), String> {
        let have = std::thread::available_parallelism().map_or(1, |n| n.get());
        if have >= n {
            Ok(())
        } else {
            Err(format!("needs {n} CPUs, the process may use {have}"))
        }
    }
}
