//! The epoll fallback: forced by config, chosen by `auto` when io_uring is unavailable,
//! and — for real — when a seccomp filter denies `io_uring_setup`, as container runtimes'
//! default profiles do. The seccomp case runs in a child process (this test binary,
//! re-executed for one ignored test), because a filter cannot be removed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "net/common.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use rtpm_net::{BackendChoice, BackendKind, Error, Sap};

const CHILD_ENV: &str = "RTPM_NET_SECCOMP_CHILD";

#[test]
fn forcing_epoll_runs_epoll_and_says_so() {
    let sap = Sap::builder(udp("forced", BackendChoice::Epoll))
        .inline(|m, out| out.reply(&m.source, m.bytes).unwrap())
        .bind()
        .unwrap();
    assert_eq!(sap.backend(), BackendKind::Epoll);
    assert!(
        sap.backend_reason().contains("forced"),
        "{}",
        sap.backend_reason()
    );
    let c = client();
    c.send_to(b"hi", addr(&sap)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(c.recv(&mut buf).unwrap(), 2);
}

#[test]
fn auto_follows_the_probe() {
    let sap = Sap::bind(udp("auto", BackendChoice::Auto)).unwrap();
    match rtpm_net::probe_io_uring() {
        Ok(()) => assert_eq!(
            sap.backend(),
            BackendKind::IoUring,
            "{}",
            sap.backend_reason()
        ),
        Err(why) => {
            assert_eq!(sap.backend(), BackendKind::Epoll);
            assert!(
                sap.backend_reason().contains(&why),
                "{}",
                sap.backend_reason()
            );
        }
    }
}

/// The child: deny io_uring_setup, then check the probe, `auto` and a forced io_uring.
#[test]
#[ignore = "run by seccomp_denying_io_uring_setup_falls_back_to_epoll in a child process"]
fn seccomp_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        panic!("run only as the child of seccomp_denying_io_uring_setup_falls_back_to_epoll");
    }
    rtpm_net::fault::deny_io_uring_setup().unwrap();
    let why = rtpm_net::probe_io_uring().expect_err("the filter denies io_uring_setup");
    assert!(why.contains("EPERM") && why.contains("seccomp"), "{why}");
    let sap = Sap::builder(udp("seccomp-auto", BackendChoice::Auto))
        .inline(|m, out| out.reply(&m.source, m.bytes).unwrap())
        .bind()
        .unwrap();
    assert_eq!(
        sap.backend(),
        BackendKind::Epoll,
        "{}",
        sap.backend_reason()
    );
    assert!(
        sap.backend_reason().contains("EPERM"),
        "{}",
        sap.backend_reason()
    );
    let c = client();
    c.send_to(b"still works", addr(&sap)).unwrap();
    let mut buf = [0u8; 32];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still works");
    match Sap::bind(udp("seccomp-forced", BackendChoice::IoUring)) {
        Err(Error::UringUnavailable(why)) => assert!(why.contains("EPERM"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("io_uring was forced under a filter that denies it"),
    }
    println!("SECCOMP-CHILD-OK");
}

#[test]
fn seccomp_denying_io_uring_setup_falls_back_to_epoll() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "seccomp_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("SECCOMP-CHILD-OK"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The filter stayed in the child: io_uring still works here when the kernel has it.
    let _ = Duration::ZERO;
}
