//! The kernel's examples run to the end and say what they did: `ping` (the seed's
//! listings 6, 8 and 9), `positions` (a periodic publisher and a subscriber) and
//! `remote_rpc` (a server process and a client process joined by an overlay).
//!
//! The example binaries are the ones `cargo test` built next to this test (in
//! `target/PROFILE/examples/`); if they are missing they are built with cargo. Both need
//! SCHED_FIFO and two CPUs; the test skips with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::path::PathBuf;
use std::process::Command;

use exec_common::{exclusive, fifo_allowed, two_cpus};
use rtpm_tests::skip_unless;

/// `target/PROFILE/examples/NAME`, built if missing.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/PROFILE/deps/kernel_examples-HASH
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "rtpm", "--example", name]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(rtpm_tests::workspace_root())
            .status()
            .unwrap();
        assert!(status.success(), "building example {name} failed");
    }
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_ping_example_runs_listings_6_to_9() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let out = run("ping", &["--count", "200"]);
    assert!(out.contains("RPC service inserted"), "{out}");
    assert!(out.contains("200 one-way pings served"), "{out}");
    assert!(out.contains("200 two-way echoes"), "{out}");
    assert!(out.contains("operation 7: not implemented"), "{out}");
    assert!(
        out.contains("server: 400 served, 1 not implemented"),
        "{out}"
    );
    assert!(out.contains("unregistered"), "{out}");
}

#[test]
fn the_positions_example_publishes_and_is_told_when_the_publisher_leaves() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let out = run("positions", &["--seconds", "1"]);
    let line = out.lines().find(|l| l.starts_with("received ")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let received: u64 = words[1].parse().unwrap();
    let published: u64 = words[3].trim_end_matches(';').parse().unwrap();
    assert!(published >= 50, "{line}");
    assert_eq!(received, published, "{line}");
    assert!(
        out.contains("the subscriber was told its publisher is gone"),
        "{out}"
    );
}

#[test]
fn the_remote_rpc_example_calls_a_server_in_another_process_over_the_overlay() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let out = run("remote_rpc", &["--count", "200"]);
    assert!(out.contains("through discovery (remote: true)"), "{out}");
    assert!(out.contains("200 two-way echoes over the overlay"), "{out}");
    assert!(
        out.contains("100 one-way requests ran on the server"),
        "{out}"
    );
    assert!(out.contains("deadline exceeded"), "{out}");
    assert!(out.contains("`example.nobody`: not found"), "{out}");
    // the server process's own account: every request came from the other node
    assert!(
        out.contains("server: 303 requests from other nodes"),
        "{out}"
    );
    assert!(out.contains("both processes done"), "{out}");
}
