//! A bad `[[overlay]]` in node.toml fails at start with a message naming the file and the
//! key, and binds nothing: an unknown key, a bad address (foreign, taken, off the
//! class-port rule), a missing key file, and an inadmissible task set (which needs the
//! executor: skipped without SCHED_FIFO or a second CPU).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::net::UdpSocket;
use std::path::PathBuf;

use exec_common::{exclusive, fifo_allowed, two_cpus};
use rtpm::Runtime;
use rtpm::config::NodeConfig;
use rtpm_rt::cpu::CpuSet;
use rtpm_tests::skip_unless;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config folder: node.toml with `overlay` as its overlay section, a key file, and the
/// cores (last allowed CPU rt).
fn folder(tag: &str, overlay: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("rtpm-node-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cores")).unwrap();
    let allowed = CpuSet::allowed().unwrap();
    for c in allowed.iter() {
        let role = if Some(c) == allowed.last() && allowed.len() > 1 {
            "rt"
        } else {
            "general"
        };
        std::fs::write(
            dir.join("cores").join(format!("cpu{c}.toml")),
            format!("role = \"{role}\"\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("good.key"), "ab".repeat(32)).unwrap();
    std::fs::write(
        dir.join("node.toml"),
        format!("[node]\nname = \"cfg-{tag}\"\n\n[[overlay]]\n{overlay}"),
    )
    .unwrap();
    Dir(dir)
}

fn free_port() -> u16 {
    // a free even port whose successor is free too
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if p < 65000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn overlay(port: u16, key: &str, extra: &str, sap1: &str) -> String {
    format!(
        r#"name = "cfg"
multicast = "239.255.91.1:{g}"
key = "{key}"
{extra}
[[overlay.sap]]
address = "127.0.0.1:{port}"
class = 0
[[overlay.sap]]
{sap1}
class = 1
"#,
        g = port.wrapping_add(7),
        sap1 = if sap1.is_empty() {
            format!("address = \"127.0.0.1:{}\"", port + 1)
        } else {
            sap1.to_string()
        }
    )
}

fn refused(dir: &Dir) -> String {
    let e = Runtime::from_dir(&dir.0).unwrap_err().to_string();
    let file = dir.0.join("node.toml");
    assert!(
        e.starts_with(&format!("{}: key `overlay", file.display())),
        "the error names the file and an overlay key: {e}"
    );
    e
}

fn nothing_bound(port: u16) {
    UdpSocket::bind(("127.0.0.1", port)).expect("the control address stayed bound");
    UdpSocket::bind(("127.0.0.1", port + 1)).expect("the class-1 address stayed bound");
}

#[test]
fn bad_overlay_sections_name_the_file_and_key_and_bind_nothing() {
    let _g = exclusive();
    let port = free_port();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown",
            overlay(port, "good.key", "colour = \"blue\"", ""),
            "key `overlay.colour`",
        ),
        (
            "foreign",
            overlay(port, "good.key", "", "address = \"10.255.255.1:9\""),
            "key `overlay[0].sap[1].address`",
        ),
        (
            "rule",
            overlay(
                port,
                "good.key",
                "",
                &format!("address = \"127.0.0.1:{}\"", port + 5),
            ),
            "key `overlay[0].sap[1].address`",
        ),
        (
            "nokey",
            overlay(port, "missing.key", "", ""),
            "key `overlay[0].key`",
        ),
        (
            "badkey",
            overlay(port, "node.toml", "", ""),
            "key `overlay[0].key`",
        ),
        (
            "group",
            overlay(port, "good.key", "", "").replace("239.255.91.1", "10.1.1.1"),
            "key `overlay[0].multicast`",
        ),
    ];
    for (tag, text, key) in cases {
        let dir = folder(tag, &text);
        let e = refused(&dir);
        assert!(e.contains(key), "{tag}: {e}");
        let e2 = NodeConfig::load(&dir.0)
            .and_then(|c| c.probe_addresses(&dir.0.join("node.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(e, e2, "{tag}: validation alone finds it");
        nothing_bound(port);
    }
    // a taken address: named, with what to do
    let taken = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let dir = folder("taken", &overlay(port, "good.key", "", ""));
    let e = refused(&dir);
    assert!(
        e.contains("key `overlay[0].sap[0].address`") && e.contains("another process"),
        "{e}"
    );
    drop(taken);
    nothing_bound(port);
}

#[test]
fn an_inadmissible_task_set_fails_at_start_naming_the_task_and_binds_nothing() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let port = free_port();
    // class 1: 190 datagrams of 5 us every 1 ms, on top of the protocol's tasks
    let text = overlay(
        port,
        "good.key",
        "",
        &format!(
            "address = \"127.0.0.1:{}\"\nbatch = 190\nmin_interarrival = \"1ms\"",
            port + 1
        ),
    );
    let dir = folder("admission", &text);
    let e = Runtime::builder()
        .config_dir(&dir.0)
        .lock_memory(false)
        .build()
        .unwrap_err()
        .to_string();
    let file = dir.0.join("node.toml");
    assert!(
        e.starts_with(&format!("{}: key `overlay[0]`", file.display())),
        "{e}"
    );
    assert!(e.contains("task `cfg/"), "names the task: {e}");
    assert!(e.contains("was not admitted"), "{e}");
    assert!(e.contains("> D="), "gives admission's reason: {e}");
    nothing_bound(port);
}
