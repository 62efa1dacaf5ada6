//! `rtpm topology` and `rtpm shield` as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Command;

fn rtpm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtpm"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example_config() -> String {
    format!("{}/../config/example", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn json_shows_every_allowed_core_and_the_probes() {
    let (code, out, err) = rtpm(&["topology", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = std::thread::available_parallelism().unwrap().get();
    assert_eq!(v["topology"]["cores"].as_array().unwrap().len(), n);
    assert_eq!(v["partition"]["cores"].as_array().unwrap().len(), n);
    let roles: Vec<&str> = v["partition"]["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    if n >= 2 {
        // The embedded default: the last core rt, the rest general.
        assert_eq!(roles.last(), Some(&"rt"));
        assert!(roles[..n - 1].iter().all(|r| *r == "general"));
    }
    let permits = &v["permits"];
    for probe in ["sched_fifo", "sched_deadline", "io_uring"] {
        assert!(permits[probe]["ok"].is_boolean(), "{probe} missing");
        assert!(!permits[probe]["detail"].as_str().unwrap().is_empty());
    }
    // The probes are real: they agree with a probe run in this process.
    assert_eq!(
        permits["sched_fifo"]["ok"].as_bool(),
        Some(rtpm_rt::probe::sched_fifo().ok)
    );
    assert_eq!(
        permits["io_uring"]["ok"].as_bool(),
        Some(rtpm_rt::probe::io_uring().ok)
    );
    let bw = permits["dl_bandwidth"].as_f64().unwrap();
    assert!((bw - rtpm_rt::probe::dl_bandwidth()).abs() < 1e-9);
    assert!(v["shield"]["active"].is_boolean());
}

#[test]
fn human_output_names_roles_and_permits() {
    let (code, out, err) = rtpm(&["topology", "--config", &example_config()]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "role",
        "SCHED_FIFO",
        "SCHED_DEADLINE",
        "io_uring",
        "memlock limit",
        "deadline bandwidth cap",
        "shield",
    ] {
        assert!(out.contains(needle), "missing {needle}:\n{out}");
    }
    assert!(out.contains("config/example"), "{out}");
}

#[test]
fn bad_config_is_exit_2_naming_file_and_key() {
    let dir = std::env::temp_dir().join(format!("rtpm-topo-bad-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("cores")).unwrap();
    std::fs::write(
        dir.join("cores/cpu0.toml"),
        "role = \"rt\"\nutilization_cap = 3\n",
    )
    .unwrap();
    let (code, out, err) = rtpm(&["topology", "--config", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2);
    assert!(out.is_empty(), "no tables for a bad config: {out}");
    assert!(
        err.contains("cpu0.toml") && err.contains("utilization_cap") && err.contains("(0, 1]"),
        "{err}"
    );
}

#[test]
fn shield_status_runs_and_undo_without_a_shield_says_so() {
    let (code, out, err) = rtpm(&["shield", "--status"]);
    assert!(code == 0 || code == 1, "{err}");
    if code == 0 {
        assert!(out.contains("shield:"), "{out}");
    }
    if !out.contains("active (") {
        let (code, _, err) = rtpm(&["shield", "--undo"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("no shield is active")
                || err.contains("needs root")
                || err.contains("no cpuset"),
            "{err}"
        );
    }
}

#[test]
fn shield_refuses_a_non_root_user() {
    let euid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().nth(1).unwrap().to_string())
        })
        .unwrap();
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if euid != "0" {
        let (code, _, err) = rtpm(&["shield"]);
        assert_eq!(code, 1);
        assert!(err.contains("needs root"), "{err}");
    } else if setpriv.exists() {
        let out = Command::new(setpriv)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_rtpm"),
                "shield",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("needs root"), "{err}");
    } else {
        eprintln!("SKIPPED: running as root and no setpriv to drop privileges");
    }
}
