//! `Executor::remove`, which the kernel uses to take a service's tasks out at run time: in
//! both models a removed task runs no job after `remove` returns, the others run on, its
//! queued activations are cancelled, its capacity goes back to admission only once it has
//! let go (so a task refused before is admitted after), its name can be reused, and a
//! demoted task's best-effort thread is stopped too.
//!
//! Every test needs SCHED_FIFO and two CPUs, and skips with the reason otherwise. They
//! take turns on the RT core (a static mutex).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exec_common::*;
use rtpm_rt::exec::{Executor, Job, OverrunPolicy, TaskOptions, TaskSpec};
use rtpm_rt::time::Nanos;
use rtpm_tests::skip_unless;

fn counter(
    exec: &mut Executor,
    name: &str,
    period: Nanos,
    wcet: Nanos,
) -> (rtpm_rt::exec::TaskId, Arc<AtomicU64>) {
    let jobs = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&jobs);
    let id = exec
        .spawn_periodic(
            TaskSpec::periodic(name, period, wcet),
            TaskOptions::default(),
            move |_: &Job| {
                seen.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
    (id, jobs)
}

#[test]
fn a_removed_task_stops_and_the_others_run_on() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let (_dir, cfg) = config(&format!("remove-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let (a, a_jobs) = counter(&mut exec, "a", Nanos::ms(5), Nanos::us(500));
        let (b, b_jobs) = counter(&mut exec, "b", Nanos::ms(7), Nanos::us(500));
        let s_jobs = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&s_jobs);
        let (s, act) = exec
            .spawn_sporadic(
                TaskSpec::sporadic("s", Nanos::ms(50), Nanos::us(500)),
                TaskOptions::default(),
                move |_: &Job, _: u32| {
                    seen.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let report = exec.remove(a).unwrap();
        let after = a_jobs.load(Ordering::SeqCst);
        assert!(after > 0, "{tag}: `a` never ran");
        assert_eq!(report.name, "a");
        assert_eq!(report.completed, after, "{tag}: final report {report:?}");
        assert_eq!(exec.task_ids(), vec![b, s], "{tag}");
        assert!(
            exec.stats(a).is_err(),
            "{tag}: a removed task still has stats"
        );
        let b_before = b_jobs.load(Ordering::SeqCst);
        act.activate(1).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            a_jobs.load(Ordering::SeqCst),
            after,
            "{tag}: `a` ran after removal"
        );
        assert!(
            b_jobs.load(Ordering::SeqCst) > b_before,
            "{tag}: `b` stopped"
        );
        assert_eq!(s_jobs.load(Ordering::SeqCst), 1, "{tag}: `s` did not run");

        // Queued activations of a removed sporadic task are cancelled, and counted.
        for i in 0..5 {
            act.activate(i).unwrap();
        }
        let r = exec.remove(s).unwrap();
        assert_eq!(
            r.activations,
            r.released + r.dropped + r.skipped + r.cancelled,
            "{tag}: activations unaccounted for: {r:?}"
        );
        assert!(r.cancelled >= 3, "{tag}: {r:?}");
        let done = s_jobs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            s_jobs.load(Ordering::SeqCst),
            done,
            "{tag}: `s` ran after removal"
        );

        // The name is free again.
        let (_a2, a2_jobs) = counter(&mut exec, "a", Nanos::ms(5), Nanos::us(500));
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            a2_jobs.load(Ordering::SeqCst) > 0,
            "{tag}: the new `a` never ran"
        );
        assert!(exec.remove(a).is_err(), "{tag}: removed twice");
        let stopped = exec.stop().unwrap();
        assert_eq!(stopped.tasks.len(), 2, "{tag}: {:?}", stopped.tasks);
    }
}

#[test]
fn capacity_returns_only_through_removal() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let (_dir, cfg) = config(&format!("capacity-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        // 60 % of the core: a second one cannot fit beside it.
        let (big, _) = counter(&mut exec, "big", Nanos::ms(10), Nanos::ms(6));
        let refused = exec.spawn_periodic(
            TaskSpec::periodic("other", Nanos::ms(10), Nanos::ms(6)),
            TaskOptions::default(),
            |_: &Job| {},
        );
        assert!(
            matches!(refused, Err(rtpm_rt::Error::Refused(_))),
            "{tag}: {refused:?}"
        );
        exec.remove(big).unwrap();
        let (_, jobs) = counter(&mut exec, "other", Nanos::ms(10), Nanos::ms(6));
        std::thread::sleep(Duration::from_millis(40));
        assert!(jobs.load(Ordering::SeqCst) > 0, "{tag}");
        exec.stop().unwrap();
    }
}

#[test]
fn removing_a_demoted_task_stops_its_best_effort_thread() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let (_dir, cfg) = config(&format!("remove-demoted-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let jobs = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&jobs);
        let id = exec
            .spawn_periodic(
                TaskSpec::periodic("over", Nanos::ms(10), Nanos::ms(1)),
                TaskOptions::default().overrun(OverrunPolicy::Demote),
                move |j: &Job| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if j.seq == 1 {
                        spin(Nanos::ms(4));
                    }
                },
            )
            .unwrap();
        // Wait for the demotion, then for a few jobs on the general cores.
        let t0 = std::time::Instant::now();
        while !exec.stats(id).unwrap().demoted {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "{tag}: never demoted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(40));
        let r = exec.remove(id).unwrap();
        assert!(r.demoted, "{tag}: {r:?}");
        let done = jobs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            jobs.load(Ordering::SeqCst),
            done,
            "{tag}: ran after removal"
        );
        assert!(exec.task_ids().is_empty(), "{tag}");
        exec.stop().unwrap();
    }
}
