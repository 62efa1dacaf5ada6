//! Real-time threads on this machine: SCHED_FIFO and SCHED_DEADLINE threads are spawned
//! and their policy and affinity read back from the kernel (`sched_getattr` and
//! `/proc/self/task/TID/sched`); a deadline request beyond the kernel's bandwidth gets the
//! explained EBUSY error. Each test probes first and skips with a reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Mutex;

use rtpm_rt::cpu::CpuSet;
use rtpm_rt::thread::{DeadlineFlags, Policy, ThreadBuilder, attr_of};
use rtpm_rt::time::Nanos;
use rtpm_tests::{probe, skip_unless};

/// Deadline tests share the kernel's bandwidth: run them one at a time.
static DEADLINE: Mutex<()> = Mutex::new(());

/// The `policy` line of `/proc/self/task/TID/sched` (1 = FIFO, 6 = DEADLINE).
fn proc_policy(tid: i32) -> u32 {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).unwrap();
    text.lines()
        .find(|l| l.trim_start().starts_with("policy"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .expect("a policy line")
}

/// `Cpus_allowed_list` of `/proc/self/task/TID/status`.
fn proc_affinity(tid: i32) -> CpuSet {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .parse()
        .unwrap()
}

fn fifo_allowed() -> Result<(), String> {
    let p = rtpm_rt::probe::sched_fifo();
    if p.ok {
        Ok(())
    } else {
        Err(format!("SCHED_FIFO unavailable: {}", p.detail))
    }
}

fn deadline_allowed() -> Result<(), String> {
    let p = rtpm_rt::probe::sched_deadline();
    if p.ok {
        Ok(())
    } else {
        Err(format!("SCHED_DEADLINE unavailable: {}", p.detail))
    }
}

#[test]
fn fifo_thread_policy_and_affinity_read_back() {
    skip_unless!(fifo_allowed());
    let cpu = CpuSet::allowed().unwrap().last().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = ThreadBuilder::new("fifo-test")
        .policy(Policy::Fifo { priority: 42 })
        .affinity(CpuSet::single(cpu))
        .prefault_stack(256 * 1024)
        .spawn(move || rx.recv().ok())
        .unwrap();
    let tid = t.tid();
    // Read back from outside the thread, while it runs.
    let attr = attr_of(tid).unwrap();
    assert_eq!(attr.policy, Some(Policy::Fifo { priority: 42 }));
    assert_eq!(attr.affinity, CpuSet::single(cpu));
    assert_eq!(
        proc_policy(tid),
        1,
        "/proc says the policy is not SCHED_FIFO"
    );
    assert_eq!(proc_affinity(tid), CpuSet::single(cpu));
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn deadline_thread_policy_and_affinity_read_back() {
    skip_unless!(deadline_allowed());
    let _serial = DEADLINE.lock().unwrap_or_else(|p| p.into_inner());
    let all = CpuSet::allowed().unwrap();
    let policy = Policy::Deadline {
        runtime: Nanos::us(500),
        deadline: Nanos::ms(5),
        period: Nanos::ms(10),
        flags: DeadlineFlags {
            reclaim: false,
            overrun_signal: true,
            reset_on_fork: true,
        },
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = ThreadBuilder::new("dl-test")
        .policy(policy)
        .affinity(all)
        .spawn(move || rx.recv().ok())
        .unwrap();
    let tid = t.tid();
    let attr = attr_of(tid).unwrap();
    assert_eq!(attr.policy, Some(policy));
    assert_eq!(attr.affinity, all);
    assert_eq!(
        proc_policy(tid),
        6,
        "/proc says the policy is not SCHED_DEADLINE"
    );
    assert_eq!(proc_affinity(tid), all);
    tx.send(()).unwrap();
    t.join().unwrap();
}

#[test]
fn deadline_beyond_the_bandwidth_gets_the_explained_ebusy() {
    skip_unless!(deadline_allowed());
    let _serial = DEADLINE.lock().unwrap_or_else(|p| p.into_inner());
    let all = CpuSet::allowed().unwrap();
    // 0.9 CPU each: the cap is sched_rt_runtime/period (0.95) per CPU of the root domain,
    // so at most one per CPU fits; keep asking until the kernel says no.
    let policy = Policy::Deadline {
        runtime: Nanos::us(9_000),
        deadline: Nanos::ms(10),
        period: Nanos::ms(10),
        flags: DeadlineFlags::default(),
    };
    let mut held = Vec::new();
    let mut refusal = None;
    for i in 0..=all.len() + 1 {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        match ThreadBuilder::new(format!("dl-hog-{i}"))
            .policy(policy)
            .affinity(all)
            .spawn(move || rx.recv().ok())
        {
            Ok(t) => held.push((tx, t)),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    for (tx, t) in held.drain(..) {
        tx.send(()).unwrap();
        t.join().unwrap();
    }
    let err = refusal.expect("the kernel admitted more than its deadline bandwidth");
    assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");
    eprintln!("explained: {err}");
    let text = err.to_string();
    assert!(text.contains("bandwidth is exhausted"), "{text}");
    assert!(text.contains("asked 0.900 CPU"), "{text}");
    assert!(text.contains("sched_rt_runtime_us"), "{text}");
}

#[test]
fn deadline_narrower_than_the_root_domain_is_explained() {
    skip_unless!(deadline_allowed());
    skip_unless!(probe::cpus(2));
    if rtpm_rt::shield::status().map(|s| s.active).unwrap_or(false) {
        eprintln!("SKIPPED: a shield is active, so one core may be a root domain of its own");
        return;
    }
    let _serial = DEADLINE.lock().unwrap_or_else(|p| p.into_inner());
    let one = CpuSet::single(CpuSet::allowed().unwrap().last().unwrap());
    let err = ThreadBuilder::new("dl-narrow")
        .policy(Policy::Deadline {
            runtime: Nanos::us(100),
            deadline: Nanos::ms(10),
            period: Nanos::ms(10),
            flags: DeadlineFlags::default(),
        })
        .affinity(one)
        .spawn(|| ())
        .expect_err("a deadline thread narrower than its root domain was admitted");
    let text = err.to_string();
    assert!(
        text.contains("root domain") && text.contains("rtpm shield"),
        "{text}"
    );
}
