//! `rtpm demo` as a user runs it: bad flags exit 2 naming the flag; a 10 s run on
//! loopback ends with the report (positions per vehicle, RPC round trips, the repair
//! time), sane numbers in report.json (positions delivered, RPCs answered, a repair
//! time), and the two SVG figures, well-formed. The run needs SCHED_FIFO and two CPUs
//! (it skips with the reason otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use exec_common::{fifo_allowed, two_cpus};
use rtpm_tests::nodes::TempDir;
use rtpm_tests::{bin, skip_unless};
use serde_json::Value;

/// The runs share the RT core: one at a time.
static ONE_RUN: Mutex<()> = Mutex::new(());

/// A running `rtpm demo`, SIGKILLed if the test fails first (its peers notice their
/// parent is gone and stop).
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let rtpm = bin::rtpm().unwrap();
    for (flags, named) in [
        (&["--duration", "1s"][..], "--duration"),
        (&["--duration", "soon"][..], "--duration"),
        (&["--peers", "3"][..], "--peers"),
    ] {
        let out = Command::new(&rtpm)
            .arg("demo")
            .args(flags)
            .args(["--out", "/nonexistent-rtpm-demo-never-created"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(named), "{flags:?}: {err}");
    }
    assert!(!std::path::Path::new("/nonexistent-rtpm-demo-never-created").exists());
    let help = Command::new(&rtpm)
        .args(["demo", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for word in [
        "--duration",
        "--out",
        "SIGKILL",
        "repair",
        "timeline.svg",
        "Example:",
    ] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
}

/// Whether `text` is one well-formed `<svg>` element: every tag closed, in order.
fn well_formed_svg(text: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text.trim();
    if !rest.starts_with("<svg") {
        return Err("does not start with <svg".into());
    }
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').ok_or("a tag is not closed")? + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            stack.push(name);
        }
        if stack.is_empty() && !rest.trim().is_empty() {
            return Err("text after </svg>".into());
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed: {stack:?}"))
    }
}

#[test]
fn a_ten_second_run_reports_latency_rpcs_and_the_repair_and_writes_its_figures() {
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let _one = ONE_RUN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rtpm = bin::rtpm().unwrap();
    let tmp = TempDir::new("demo-cli");
    let out_dir = tmp.0.join("out");
    let mut demo = Demo(
        Command::new(&rtpm)
            .args(["demo", "--duration", "10s", "--out"])
            .arg(&out_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // the output is small (a line a second and the report): it fits the pipes
    let started = Instant::now();
    let status = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "rtpm demo --duration 10s still runs after 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    demo.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    demo.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("{stdout}");
    assert!(
        status.success(),
        "rtpm demo: {status}\n{stderr}\npeers' logs in {}",
        out_dir.join("peers").display()
    );
    // live progress, the choice of victim, then each part of the report
    for part in [
        "overlay formed",
        "killing p",
        "[  1.",
        "Positions, 100 Hz per vehicle",
        "vehicle 1",
        "Speed-limit RPC",
        "round trip (µs): p50",
        "Failure and repair:",
        "repair time:",
    ] {
        assert!(stdout.contains(part), "the output lacks `{part}`");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["peers"], 7);
    assert!(report["cells"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["samples"].as_u64().unwrap() > 0,
        "no samples: {report}"
    );
    let streams = report["streams"].as_array().unwrap();
    assert!(
        streams.len() >= 5,
        "positions from {} vehicles",
        streams.len()
    );
    for s in streams {
        let l = &s["latency_us"];
        let (p50, p99, max) = (
            l["p50"].as_f64().unwrap(),
            l["p99"].as_f64().unwrap(),
            l["max"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{s}");
    }
    let rpc = &report["rpc"];
    assert!(
        rpc["answered"].as_u64().unwrap() > 0,
        "no RPC answered: {rpc}"
    );
    assert!(rpc["round_trip_us"]["p50"].as_f64().unwrap() > 0.0, "{rpc}");
    let repair = &report["repair"];
    let repaired = repair["repaired_ms"].as_f64().expect("a repair time");
    let rebound = repair["rebound_ms"].as_f64().expect("a rebind time");
    assert!(rebound > 0.0 && rebound <= repaired, "{repair}");
    assert!(repaired < 6000.0, "repair after the run's end? {repair}");
    for name in ["latency.svg", "timeline.svg"] {
        let text = std::fs::read_to_string(out_dir.join(name)).unwrap();
        well_formed_svg(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains("<polyline"), "{name} draws nothing");
    }
    assert!(out_dir.join("report.txt").is_file());
    // every peer process is gone
    assert_eq!(peers_running(&out_dir), 0, "peer processes left running");
}

/// Processes whose command line names a folder under `out` (the demo's peers).
fn peers_running(out: &std::path::Path) -> usize {
    let needle = out.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&needle))
        .count()
}

#[test]
fn ctrl_c_stops_every_peer() {
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let _one = ONE_RUN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rtpm = bin::rtpm().unwrap();
    let tmp = TempDir::new("demo-cli-int");
    let out_dir = tmp.0.join("out");
    let mut demo = Demo(
        Command::new(&rtpm)
            .args(["demo", "--duration", "60s", "--out"])
            .arg(&out_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut demo.0;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // wait until the peers run and the measured run began
    let until = Instant::now() + Duration::from_secs(40);
    loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("the demo did not start its run within 40 s");
        if line.starts_with("rtpm demo: running") {
            break;
        }
    }
    assert!(peers_running(&out_dir) >= 7);
    // what a terminal's Ctrl-C sends
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the demo did not stop within 15 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    assert_eq!(peers_running(&out_dir), 0, "peer processes left running");
}
