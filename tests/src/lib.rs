//! # rtpm-tests: integration and fault tests
//!
//! The tests live in `tests/`. This library holds what they share: probes for the
//! privileges and kernel features a test needs, so that a test without them skips with
//! a printed reason instead of failing or passing silently.

use std::path::PathBuf;

pub mod alloc;
pub mod netns;
pub mod nodes;
pub mod shield;
pub mod steal;

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

/// The `rtpm` binary, for tests that run nodes as real processes.
///
/// `env!("CARGO_BIN_EXE_rtpm")` exists only for the tests of the crate that builds the
/// binary (rtpm-tools), so tests here find it next to themselves: a test runs as
/// `target/PROFILE/deps/NAME-HASH`, and cargo puts the workspace's binaries in
/// `target/PROFILE/`. To be sure it is the binary of the current sources, it is (re)built
/// once per test process with `cargo build -p rtpm-tools --bin rtpm` in the same profile
/// (a no-op when it is up to date; `cargo test --workspace` has built it already). The
/// build output goes to the test's stderr.
pub mod bin {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::OnceLock;

    static RTPM: OnceLock<Result<PathBuf, String>> = OnceLock::new();

    /// The path of an up-to-date `rtpm`, or why there is none.
    pub fn rtpm() -> Result<PathBuf, String> {
        RTPM.get_or_init(build).clone()
    }

    fn build() -> Result<PathBuf, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/PROFILE/deps/test-HASH → target/PROFILE
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .ok_or("the test binary is not under target/PROFILE/deps")?
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "rtpm-tools", "--bin", "rtpm"]);
        if release {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target);
        }
        let status = cmd
            .current_dir(super::workspace_root())
            .status()
            .map_err(|e| format!("cannot run cargo to build rtpm: {e}"))?;
        if !status.success() {
            return Err(format!("building rtpm failed ({status})"));
        }
        let path = profile_dir.join("rtpm");
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} is missing after the build", path.display()))
        }
    }
}
