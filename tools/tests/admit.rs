//! `rtpm admit` end to end: the built binary on the task-set files in `tests/admit/`.
//! Exit codes (0 all admitted, 1 some rejected, 2 bad input), the JSON shape, the human
//! tables, flag overrides, and every bad-input error the issue names.

// The helpers below are test code too: a panic there is the failure report.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("admit")
        .join(name)
}

fn admit(file: &PathBuf, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtpm"))
        .arg("admit")
        .arg(file)
        .args(flags)
        // The SCHED_DEADLINE bandwidth would otherwise come from this machine.
        .args(["--dl-bandwidth", "1"])
        .output()
        .expect("run rtpm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs with `--json` and checks stdout is exactly one JSON object.
fn admit_json(file: &PathBuf, flags: &[&str]) -> (i32, Value) {
    let mut all = flags.to_vec();
    all.push("--json");
    let out = admit(file, &all);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    let value: Value = serde_json::from_str(&text).expect("stdout is JSON");
    assert!(value.is_object());
    (out.status.code().expect("exit code"), value)
}

fn bad_input(file: &PathBuf, flags: &[&str]) -> String {
    let out = admit(file, flags);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "no analysis output: {}",
        stdout(&out)
    );
    stderr(&out)
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtpm-admit-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

#[test]
fn burns_wellings_json_has_the_issue_shape() {
    let (code, v) = admit_json(&fixture("burns_wellings.toml"), &[]);
    assert_eq!(code, 0);
    assert_eq!(v["schedulable"], true);
    assert_eq!(v["policy"], "fp");
    assert_eq!(v["rejected"], Value::Array(vec![]));
    let cores = v["cores"].as_array().expect("cores");
    assert_eq!(cores.len(), 1);
    assert_eq!(cores[0]["core"], 0);
    let u = cores[0]["utilization"].as_f64().expect("utilization");
    assert!((u - (3.0 / 7.0 + 0.5)).abs() < 1e-6, "{u}");
    let tasks = cores[0]["tasks"].as_array().expect("tasks");
    let rows: Vec<(String, u64, u64, u64)> = tasks
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["priority"].as_u64().expect("priority"),
                t["response_time_ns"].as_u64().expect("response time"),
                t["deadline_ns"].as_u64().expect("deadline"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("t1".into(), 1, 3_000_000, 7_000_000),
            ("t2".into(), 2, 6_000_000, 12_000_000),
            ("t3".into(), 3, 20_000_000, 20_000_000),
        ]
    );
    for t in tasks {
        let keys: Vec<&str> = t
            .as_object()
            .expect("task")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
    }
}

#[test]
fn human_output_is_a_table_per_core_then_the_verdict() {
    let out = admit(&fixture("burns_wellings.toml"), &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in [
        "fp/rm, preemptive (threads), 1 core(s)",
        "core 0  U=0.929  3 task(s)",
        "task  prio       U    deadline        wcrt  verdict",
        "t1       1   0.429         7ms         3ms  ok",
        "t3       3   0.250        20ms        20ms  ok",
        "schedulable: yes (3 of 3 tasks admitted)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn a_rejection_exits_1_with_its_reason() {
    let file = fixture("refused.toml");
    let (code, v) = admit_json(&file, &[]);
    assert_eq!(code, 1);
    assert_eq!(v["schedulable"], false);
    let rejected = v["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["name"], "brake");
    assert_eq!(
        rejected[0]["reason"],
        "fp-rta: task `brake` R=52ms > D=50ms by 2ms"
    );
    assert_eq!(rejected[0]["response_time_ns"], 52_000_000);
    let admitted: Vec<&str> = v["cores"][0]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(admitted, ["hog", "late", "small"]);

    let out = admit(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("rejected (1):\n  brake: fp-rta: task `brake` R=52ms > D=50ms by 2ms"),
        "{text}"
    );
    assert!(
        text.contains("schedulable: no (3 of 4 tasks admitted)"),
        "{text}"
    );
}

#[test]
fn every_field_of_the_format_is_used() {
    let (code, v) = admit_json(&fixture("every_field.toml"), &[]);
    assert_eq!(code, 0, "{v}");
    let cores = v["cores"].as_array().expect("cores");
    assert_eq!(cores.len(), 2, "cores = 2");
    // The pin holds brake on core 0; worst fit spreads the others to the emptier core.
    let names = |c: &Value| -> Vec<String> {
        c["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_string())
            .collect()
    };
    assert_eq!(names(&cores[0]), ["brake"]);
    assert_eq!(names(&cores[1]), ["door", "log"]);
    // Cooperative, with the 20us overhead: door waits for a whole log job (10ms + 20us)
    // and runs its own (3ms + 20us); brake sees its jitter (100us) and blocking (50us).
    assert_eq!(cores[1]["tasks"][0]["response_time_ns"], 13_040_000);
    assert_eq!(cores[0]["tasks"][0]["response_time_ns"], 2_170_000);
    assert_eq!(cores[0]["tasks"][0]["deadline_ns"], 8_000_000);
    // The 0.9 cap refuses a fourth, 80% task.
    let text = std::fs::read_to_string(fixture("every_field.toml")).expect("read");
    let more = write_temp(
        "every_field_plus.toml",
        &format!(
            "{text}\n[[task]]\nname = \"big\"\nperiod = \"10ms\"\nwcet = \"8ms\"\npriority = 4\n"
        ),
    );
    let (code, v) = admit_json(&more, &[]);
    assert_eq!(code, 1);
    let reason = v["rejected"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("utilization-cap"), "{reason}");
    assert_eq!(v["rejected"][0]["response_time_ns"], Value::Null);
}

#[test]
fn flags_override_the_file() {
    let file = fixture("burns_wellings.toml");
    // EDF: no priorities, no response times; U = 0.929 fits.
    let (code, v) = admit_json(&file, &["--policy", "edf"]);
    assert_eq!(code, 0);
    assert_eq!(v["policy"], "edf");
    assert_eq!(v["cores"][0]["tasks"][0]["priority"], Value::Null);
    assert_eq!(v["cores"][0]["tasks"][0]["response_time_ns"], Value::Null);
    // Two cores, worst fit: t1 (0.43) on core 0, then t2 and t3 (0.25 each) where the
    // most room is left, core 1.
    let (code, v) = admit_json(&file, &["--cores", "2", "--heuristic", "wfd"]);
    assert_eq!(code, 0);
    assert_eq!(v["cores"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["cores"][0]["tasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["cores"][1]["tasks"].as_array().map(Vec::len), Some(2));
    // Best fit on two cores packs the first core.
    let (code, v) = admit_json(&file, &["--cores", "2", "--heuristic", "bfd"]);
    assert_eq!(code, 0);
    assert_eq!(v["cores"][0]["tasks"].as_array().map(Vec::len), Some(3));
    // A cap of 0.5 leaves room for t1 (0.43) alone.
    let (code, v) = admit_json(&file, &["--cap", "0.5"]);
    assert_eq!(code, 1);
    assert_eq!(v["rejected"].as_array().map(Vec::len), Some(2));
    // Non-preemptive: t3's 5ms job can block t1 (3ms, due in 7ms): 5 + 3 > 7.
    let (code, v) = admit_json(&file, &["--non-preemptive"]);
    assert_eq!(code, 1);
    let reason = v["rejected"][0]["reason"].as_str().expect("reason");
    assert!(reason.starts_with("fp-np-rta: task `t1`"), "{reason}");
    // A per-job overhead of 1ms pushes t3 past its deadline.
    let (code, v) = admit_json(&file, &["--overhead", "1ms"]);
    assert_eq!(code, 1, "{v}");
    // Audsley finds an order for the textbook set too.
    let (code, _) = admit_json(&file, &["--priority", "audsley"]);
    assert_eq!(code, 0);
    // The SCHED_DEADLINE bandwidth bounds preemptive EDF cores.
    let out = Command::new(env!("CARGO_BIN_EXE_rtpm"))
        .args([
            "admit",
            "--policy",
            "edf",
            "--dl-bandwidth",
            "0.9",
            "--json",
        ])
        .arg(&file)
        .output()
        .expect("run rtpm");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("sched-deadline-bandwidth"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_file_is_bad_input() {
    let err = bad_input(&fixture("no-such-file.toml"), &[]);
    assert!(
        err.contains("cannot read") && err.contains("no-such-file.toml"),
        "{err}"
    );
}

#[test]
fn a_bad_duration_names_the_task_and_field() {
    let err = bad_input(&fixture("bad_duration.toml"), &[]);
    assert!(err.contains("bad_duration.toml"), "{err}");
    assert!(err.contains("task `brake`: field `period`"), "{err}");
    assert!(err.contains("10 mins"), "{err}");
    let err = bad_input(&fixture("burns_wellings.toml"), &["--overhead", "ten"]);
    assert!(err.contains("--overhead"), "{err}");
}

#[test]
fn wcet_over_deadline_is_bad_input() {
    let err = bad_input(&fixture("wcet_over_deadline.toml"), &[]);
    assert!(
        err.contains("task `brake`: `wcet` 6ms exceeds `deadline` 5ms"),
        "{err}"
    );
}

#[test]
fn deadline_over_period_is_bad_input() {
    let err = bad_input(&fixture("deadline_over_period.toml"), &[]);
    assert!(
        err.contains("task `brake`: `deadline` 12ms exceeds `period` 10ms"),
        "{err}"
    );
    assert!(err.contains("constrained deadlines"), "{err}");
}

#[test]
fn a_duplicate_name_is_bad_input() {
    let err = bad_input(&fixture("duplicate_name.toml"), &[]);
    assert!(err.contains("task `brake`: duplicate `name`"), "{err}");
}

#[test]
fn unknown_keys_are_bad_input() {
    let err = bad_input(&fixture("unknown_key.toml"), &[]);
    assert!(
        err.contains("task `brake`: unknown field `dedline`"),
        "{err}"
    );
    let file = write_temp(
        "unknown_analysis.toml",
        "[analysis]\ncore = 2\n[[task]]\nname = \"a\"\nperiod = \"1ms\"\nwcet = \"1us\"\n",
    );
    let err = bad_input(&file, &[]);
    assert!(err.contains("[analysis]: unknown field `core`"), "{err}");
    let file = write_temp("unknown_top.toml", "[[tasks]]\nname = \"a\"\n");
    let err = bad_input(&file, &[]);
    assert!(err.contains("unknown field `tasks`"), "{err}");
}

#[test]
fn other_bad_input_is_explained() {
    // A wrongly typed value names its field.
    let file = write_temp(
        "typed.toml",
        "[analysis]\ncores = \"two\"\n[[task]]\nname = \"a\"\nperiod = \"1ms\"\nwcet = \"1us\"\n",
    );
    let err = bad_input(&file, &[]);
    assert!(err.contains("[analysis]: field `cores`"), "{err}");
    // Missing required field.
    let file = write_temp("missing.toml", "[[task]]\nname = \"a\"\nperiod = \"1ms\"\n");
    let err = bad_input(&file, &[]);
    assert!(err.contains("task `a`: missing field `wcet`"), "{err}");
    // Explicit priorities without a priority; a priority without explicit.
    let file = fixture("burns_wellings.toml");
    let err = bad_input(&file, &["--priority", "explicit"]);
    assert!(
        err.contains("task `t1`: field `priority` is missing"),
        "{err}"
    );
    let err = bad_input(&fixture("every_field.toml"), &["--priority", "dm"]);
    assert!(
        err.contains("task `brake`: field `priority` is only used with priority = \"explicit\""),
        "{err}"
    );
    // A pin beyond the cores; a cap out of range; zero cores; no tasks; not TOML.
    let pinned = write_temp(
        "pinned.toml",
        "[analysis]\ncores = 2\n[[task]]\nname = \"a\"\nperiod = \"1ms\"\nwcet = \"1us\"\ncore = 2\n",
    );
    let err = bad_input(&pinned, &[]);
    assert!(
        err.contains("task `a`: field `core` = 2, but there are only 2 RT cores (0..=1)"),
        "{err}"
    );
    let err = bad_input(&file, &["--cap", "1.5"]);
    assert!(err.contains("--cap: 1.5 is not in (0, 1]"), "{err}");
    let err = bad_input(&file, &["--cores", "0"]);
    assert!(err.contains("--cores: 0 cores"), "{err}");
    let empty = write_temp("empty.toml", "[analysis]\ncores = 1\n");
    let err = bad_input(&empty, &[]);
    assert!(err.contains("no [[task]] tables"), "{err}");
    let junk = write_temp("junk.toml", "[[task]\nname = ");
    let err = bad_input(&junk, &[]);
    assert!(err.contains("is not valid TOML"), "{err}");
    // A bad flag value is a usage error (exit 2) from the argument parser.
    let err = bad_input(&file, &["--policy", "rr"]);
    assert!(err.contains("rr"), "{err}");
}

#[test]
fn a_sporadic_burst_is_charged_as_its_whole_window() {
    // rx: up to 3 jobs of 1ms per 10ms window; with a 0 overhead its response is 3ms and
    // the periodic task below it waits for the whole burst: 2 + 3 = 5ms.
    let file = write_temp(
        "burst.toml",
        "[analysis]\noverhead = \"0us\"\n\
         [[task]]\nname = \"rx\"\nkind = \"sporadic\"\nperiod = \"10ms\"\nwcet = \"1ms\"\nburst = 3\n\
         [[task]]\nname = \"log\"\nperiod = \"20ms\"\nwcet = \"2ms\"\n",
    );
    let (code, v) = admit_json(&file, &[]);
    assert_eq!(code, 0, "{v}");
    let tasks = v["cores"][0]["tasks"].as_array().expect("tasks");
    let r: Vec<(String, u64)> = tasks
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["response_time_ns"].as_u64().expect("response"),
            )
        })
        .collect();
    assert_eq!(r, [("rx".into(), 3_000_000), ("log".into(), 5_000_000)]);
    let u = v["cores"][0]["utilization"].as_f64().expect("utilization");
    assert!((u - 0.4).abs() < 1e-9, "{u}");

    // A burst on a periodic task, or one that cannot fit before the deadline: bad input.
    let periodic = write_temp(
        "burst_periodic.toml",
        "[[task]]\nname = \"log\"\nperiod = \"20ms\"\nwcet = \"2ms\"\nburst = 2\n",
    );
    let err = bad_input(&periodic, &[]);
    assert!(
        err.contains("task `log`: `burst` 2 is not valid for a periodic task"),
        "{err}"
    );
    let too_big = write_temp(
        "burst_too_big.toml",
        "[[task]]\nname = \"rx\"\nkind = \"sporadic\"\nperiod = \"10ms\"\nwcet = \"3ms\"\nburst = 4\n",
    );
    let err = bad_input(&too_big, &[]);
    assert!(
        err.contains("task `rx`: `burst` 4 × `wcet` 3ms exceeds `deadline` 10ms"),
        "{err}"
    );
}
