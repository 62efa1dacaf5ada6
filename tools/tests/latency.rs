//! `rtpm latency` as a user runs it: bad flags are refused with exit code 2 and a message
//! naming the flag; a short privileged run prints the JSON object of the issue and
//! writes the percentile files and the plot.

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

#[test]
fn bad_flags_exit_2_and_name_the_flag() {
    for (args, needle) in [
        (vec!["latency", "--tasks", "0"], "--tasks"),
        (vec!["latency", "--interval", "10us"], "--interval"),
        (
            vec!["latency", "--interval", "1ms", "--duration", "10us"],
            "--duration",
        ),
        (vec!["latency", "--slice", "1ms"], "--slice"),
        (vec!["latency", "--interval", "fast"], "fast"),
        (vec!["latency", "--model", "async"], "async"),
        (vec!["latency", "--interleave", "rounds"], "rounds"),
        (
            vec!["latency", "--config", "/nonexistent-rtpm-dir"],
            "cores",
        ),
    ] {
        let (code, out, err) = rtpm(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn help_teaches_the_options() {
    let (code, out, _) = rtpm(&["latency", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--tasks",
        "--interval",
        "--duration",
        "--model",
        "--load",
        "--baseline",
        "--interleave",
        "--compare-cyclictest",
        "--json",
        "--out",
        "cyclictest's method",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_short_run_prints_the_json_object_and_writes_the_files() {
    if !rtpm_rt::probe::sched_fifo().ok || std::thread::available_parallelism().unwrap().get() < 2 {
        eprintln!("SKIPPED: needs SCHED_FIFO and two CPUs");
        return;
    }
    for interleave in ["releases", "slices"] {
        short_run(interleave);
    }
}

/// A 0.6 s run of two tasks with the baseline interleaved by `interleave`.
fn short_run(interleave: &str) {
    let out_dir = std::env::temp_dir().join(format!(
        "rtpm-latency-cli-{}-{interleave}",
        std::process::id()
    ));
    let (code, out, err) = rtpm(&[
        "latency",
        "--duration",
        "600ms",
        "--slice",
        "300ms",
        "--tasks",
        "2",
        "--baseline",
        "--interleave",
        interleave,
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{interleave}: {err}");
    assert!(
        err.contains("rtpm latency:"),
        "no progress on stderr: {err}"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for side in ["executor", "baseline"] {
        for key in [
            "min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns", "samples",
        ] {
            assert!(v[side][key].is_u64(), "{side}.{key} missing: {out}");
        }
        // Two tasks every 1 ms for 0.6 s.
        assert!(
            v[side]["samples"].as_u64().unwrap() > 800,
            "{interleave}: {out}"
        );
        assert!(v[side]["p50_ns"].as_u64() <= v[side]["p99_ns"].as_u64());
    }
    for key in ["p50", "p99", "p999"] {
        assert!(v["ratios"][key].as_f64().unwrap() > 0.0, "{out}");
    }
    assert!(v.get("cyclictest").is_none());
    for f in ["executor.hgrm", "baseline.hgrm", "latency.svg"] {
        let text = std::fs::read_to_string(out_dir.join(f)).unwrap();
        assert!(!text.is_empty(), "{f} is empty");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
