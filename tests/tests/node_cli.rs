//! `rtpm node` and `rtpm status` as a user runs them, on loopback: a bad folder (unknown
//! key, bad address, missing key file, inadmissible task set) exits 2 naming the file and
//! the key and binds nothing; `--check` validates only; two nodes
//! join, `rtpm status` shows role, cell, SAPs, tasks and counters (text and JSON); SIGTERM
//! makes each leave, announced, and exit 0. The node needs SCHED_FIFO and two CPUs (the
//! running part skips with the reason otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use exec_common::{fifo_allowed, two_cpus};
use rtpm_tests::nodes::{NodeSpec, TempDir, network, sigterm, wait_exit, wait_for};
use rtpm_tests::{bin, skip_unless};

const KEY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if p < 65000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn group() -> SocketAddrV4 {
    let pid = std::process::id();
    SocketAddrV4::new(
        Ipv4Addr::new(239, 200, (pid % 250) as u8, 9),
        40000 + (pid % 20000) as u16,
    )
}

#[test]
fn a_bad_folder_exits_2_naming_file_and_key_and_check_binds_nothing() {
    let rtpm = bin::rtpm().unwrap();
    let tmp = TempDir::new("node-cli-bad");
    let port = free_port();
    let mut spec = NodeSpec::new("bad", Ipv4Addr::LOCALHOST, group(), KEY);
    spec.port = port;
    let dir = spec.write(&tmp.0);
    let file = dir.join("node.toml");
    let good = std::fs::read_to_string(&file).unwrap();

    // --check: valid, nothing starts
    let out = Command::new(&rtpm)
        .args(["node", "--check", "--config"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));

    for (what, text, key) in [
        (
            "unknown key",
            good.replace("cell_size = 3", "cell_size = 3\ncolour = 1"),
            "overlay.colour",
        ),
        (
            "bad address",
            good.replace(&format!("127.0.0.1:{}", port + 1), "127.0.0.1:9"),
            "overlay[0].sap[1].address",
        ),
        (
            "missing key file",
            good.replace("key = \"overlay.key\"", "key = \"nope.key\""),
            "overlay[0].key",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(&rtpm)
            .args(["node", "--config"])
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(&format!("{}: key `{key}`", file.display())),
            "{what}: {err}"
        );
        UdpSocket::bind(("127.0.0.1", port)).expect("nothing stays bound");
        UdpSocket::bind(("127.0.0.1", port + 1)).expect("nothing stays bound");
    }
    let out = Command::new(&rtpm)
        .args(["node", "--log", "loud"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The fourth kind of bad folder: a task set admission refuses. Only the running node can
/// tell (admission needs the executor), so this is `rtpm node` proper, not `--check`.
#[test]
fn an_inadmissible_task_set_exits_2_naming_the_task_and_binds_nothing() {
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rtpm = bin::rtpm().unwrap();
    let tmp = TempDir::new("node-cli-admission");
    let port = free_port();
    let mut spec = NodeSpec::new("inadmissible", Ipv4Addr::LOCALHOST, group(), KEY);
    spec.port = port;
    let dir = spec.write(&tmp.0);
    let file = dir.join("node.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    // class 1's receive task: 190 datagrams of 5 µs each every 1 ms, beside the protocol's
    let at = good.rfind("min_interarrival = \"500us\"").unwrap();
    let bad = format!(
        "{}batch = 190\nmin_interarrival = \"1ms\"{}",
        &good[..at],
        &good[at + "min_interarrival = \"500us\"".len()..]
    );
    std::fs::write(&file, bad).unwrap();
    let out = Command::new(&rtpm)
        .args(["node", "--config"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}: key `overlay[0]`", file.display())),
        "names the file and the overlay: {err}"
    );
    assert!(err.contains("task `"), "names the task: {err}");
    assert!(err.contains("was not admitted"), "{err}");
    assert!(err.contains("> D="), "gives admission's reason: {err}");
    assert!(
        !dir.join("ctl.sock").exists(),
        "no control socket was left behind"
    );
    UdpSocket::bind(("127.0.0.1", port)).expect("nothing stays bound");
    UdpSocket::bind(("127.0.0.1", port + 1)).expect("nothing stays bound");
}

#[test]
fn two_nodes_run_answer_status_and_leave_on_sigterm() {
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rtpm = bin::rtpm().unwrap();
    let tmp = TempDir::new("node-cli");
    let g = group();
    let mut children = Vec::new();
    let mut socks = Vec::new();
    for name in ["cli-a", "cli-b"] {
        let mut spec = NodeSpec::new(name, Ipv4Addr::LOCALHOST, g, KEY);
        spec.port = free_port();
        let dir = spec.write(&tmp.0);
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(&rtpm)
            .args(["node", "--log-format", "json", "--config"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let sock = dir.join("ctl.sock");
        wait_for(Duration::from_secs(10), || network(&sock).is_some())
            .unwrap_or_else(|| panic!("{name} did not start; see {}", dir.display()));
        children.push((child, dir));
        socks.push(sock);
    }
    wait_for(Duration::from_secs(10), || {
        socks.iter().all(|s| {
            network(s).is_some_and(|n| matches!(n["role"].as_str(), Some("peer" | "super-peer")))
        })
    })
    .expect("both join");

    let out = Command::new(&rtpm)
        .args(["status", "--socket"])
        .arg(&socks[1])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "node cli-b",
        "network test:",
        "super-peers:",
        "parent cell:",
        "c0     class 0",
        "c1     class 1",
        "group",
        "bad-mac 0",
        "replayed 0",
        "rx-queue-full",
        "test/heartbeat",
        "test/control-message",
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    let out = Command::new(&rtpm)
        .args(["status", "--json", "--socket"])
        .arg(&socks[0])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node"]["name"], "cli-a");
    assert!(v["tasks"].as_array().unwrap().iter().any(|t| {
        t["name"] == "test/heartbeat" && t["response_ns"]["p50_ns"].as_u64() > Some(0)
    }));
    let out = Command::new(&rtpm)
        .args(["status", "--socket", "/nonexistent/rtpm.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    for (c, _) in &children {
        sigterm(c.id());
    }
    for (c, dir) in &mut children {
        let st = wait_exit(c, Duration::from_secs(10)).expect("exits after SIGTERM");
        assert!(st.success(), "{st}");
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        // JSON log lines, one per event
        assert!(
            log.lines()
                .any(|l| l.starts_with('{') && l.contains("left the overlay")),
            "{log}"
        );
        assert!(!dir.join("ctl.sock").exists());
    }
}
