//! Dependencies point down only: rt <- net <- overlay <- rtpm (kernel) <- tools, bench,
//! tests. This test reads `cargo metadata` and fails if any crate of ours depends (in any
//! dependency kind) on a crate of ours that is not below it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let below = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
    let all = below(&["rtpm-rt", "rtpm-net", "rtpm-overlay", "rtpm"]);
    BTreeMap::from([
        ("rtpm-rt", below(&[])),
        ("rtpm-net", below(&["rtpm-rt"])),
        ("rtpm-overlay", below(&["rtpm-rt", "rtpm-net"])),
        ("rtpm", below(&["rtpm-rt", "rtpm-net", "rtpm-overlay"])),
        ("rtpm-tools", all.clone()),
        ("rtpm-bench", all.clone()),
        ("rtpm-tests", all),
    ])
}

#[test]
fn dependencies_point_down_only() {
    let root = rtpm_tests::workspace_root();
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let allowed = allowed();
    let packages = meta["packages"].as_array().expect("packages array");
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        ours,
        allowed
            .keys()
            .map(|k| k.to_string())
            .collect::<BTreeSet<_>>(),
        "the workspace's crates are not the seven the layout fixes"
    );
    let mut violations = Vec::new();
    for p in packages {
        let name = p["name"].as_str().expect("name");
        let ok = &allowed[name];
        for d in p["dependencies"].as_array().expect("dependencies") {
            let dep = d["name"].as_str().expect("dependency name");
            if ours.contains(dep) && !ok.contains(dep) {
                let kind = d["kind"].as_str().unwrap_or("normal");
                violations.push(format!("{name} -> {dep} ({kind})"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies that point up or sideways: {violations:?}"
    );
}

#[test]
fn top_level_is_the_fixed_layout() {
    let root = rtpm_tests::workspace_root();
    for dir in ["rt", "net", "kernel", "overlay", "bench", "tests", "tools"] {
        assert!(
            root.join(dir).join("Cargo.toml").is_file(),
            "{dir}/Cargo.toml is missing"
        );
    }
}
