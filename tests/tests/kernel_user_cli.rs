//! `rtpm user add` writes a users file the runtime logs in with: the passphrase comes
//! from standard input (not a terminal here), only its argon2id hash is stored, grants
//! are parsed, and bad input exits 2 without writing anything.
//!
//! The login half starts a runtime (SCHED_FIFO and two CPUs) and skips without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use exec_common::{exclusive, fifo_allowed, two_cpus};
use rtpm::security::UsersFile;
use rtpm::{Permission, Runtime, ServiceId};
use rtpm_tests::skip_unless;

/// `target/PROFILE/rtpm`, built if missing.
fn rtpm_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let path = profile_dir.join("rtpm");
    if !path.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "rtpm-tools", "--bin", "rtpm"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.current_dir(rtpm_tests::workspace_root())
                .status()
                .unwrap()
                .success()
        );
    }
    path
}

fn user_add(file: &PathBuf, stdin: &str, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(rtpm_bin())
        .args(["user", "add"])
        .args(args)
        .arg("--users")
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its flags exits without reading: the pipe may be closed.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn user_add_writes_a_users_file_the_runtime_logs_in_with() {
    let dir = std::env::temp_dir().join(format!("rtpm-user-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.toml");
    let (code, out) = user_add(
        &file,
        "correct horse battery\n",
        &[
            "carol",
            "--grant",
            "example.ping=execute",
            "--grant",
            "*=subscribe",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("added user `carol`"), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("correct horse"), "{text}");
    let users = UsersFile::load(&file).unwrap();
    let carol = &users.users()["carol"];
    assert!(carol.hash.starts_with("$argon2id$"));
    assert!(carol.grants["example.ping"].contains(Permission::Execute));
    // Bad input: exit 2, file unchanged.
    for (stdin, args) in [
        ("x\n", vec!["carol"]),
        ("x\n", vec!["dave", "--grant", "example.ping=run"]),
        ("x\n", vec!["dave", "--grant", "noequals"]),
        ("\n", vec!["dave"]),
        ("x\n", vec!["bad name"]),
    ] {
        let (code, out) = user_add(&file, stdin, &args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.starts_with("rtpm user: "), "{out}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = Runtime::builder().users_file(&file).build().unwrap();
    let s = rt.login("carol", "correct horse battery").unwrap();
    assert!(
        rt.security()
            .permissions(s.user(), ServiceId::from_name("example.ping"))
            .contains(Permission::Execute)
    );
    assert!(rt.login("carol", "correct horse").is_err());
    drop(rt);
    std::fs::remove_dir_all(&dir).unwrap();
}
