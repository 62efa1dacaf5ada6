//! The executor on the RT core, in both models: a mixed periodic and sporadic set at
//! about 60 % utilisation runs for a few seconds with no deadline miss and every job
//! accounted for; early sporadic arrivals are deferred, not run early; an overrunning
//! task is demoted under `demote` and skipped under `skip`; an admission refusal leaves
//! the executor unchanged; and no thread but admitted RT work may run on the RT core.
//!
//! Every test needs SCHED_FIFO and two CPUs, and skips with the reason otherwise. They
//! take turns on the RT core (a static mutex).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exec_common::*;
use rtpm_rt::exec::{ExecEvent, Executor, Job, OverrunPolicy, TaskOptions, TaskReport, TaskSpec};
use rtpm_rt::time::{Instant, Nanos};
use rtpm_tests::skip_unless;

/// Three periodic tasks and one sporadic task, about 60 % of the core with admission's
/// per-job overhead; each body spins for half its wcet.
fn mixed_set(exec: &mut Executor) -> (Vec<rtpm_rt::exec::TaskId>, rtpm_rt::exec::Activator<u64>) {
    let mut ids = Vec::new();
    for (name, period, wcet) in [
        ("p20", Nanos::ms(20), Nanos::ms(4)),
        ("p50", Nanos::ms(50), Nanos::ms(10)),
        ("p100", Nanos::ms(100), Nanos::ms(10)),
    ] {
        let half = Nanos(wcet.get() / 2);
        ids.push(
            exec.spawn_periodic(
                TaskSpec::periodic(name, period, wcet),
                TaskOptions::default(),
                move |_: &Job| spin(half),
            )
            .unwrap(),
        );
    }
    let (id, act) = exec
        .spawn_sporadic(
            TaskSpec::sporadic("s25", Nanos::ms(25), Nanos::ms(2)),
            TaskOptions::default(),
            |_: &Job, _p: u64| spin(Nanos::ms(1)),
        )
        .unwrap();
    ids.push(id);
    (ids, act)
}

fn check_accounted(r: &TaskReport, expect_jobs: u64) {
    // A job is released, runs and completes: nothing is left in flight after stop.
    assert_eq!(r.released, r.completed, "{}: {r:?}", r.name);
    // Overruns are not asserted here: in the cooperative model a job's execution is its
    // wall time, which time stolen by the hypervisor lengthens; overrun accounting is
    // tested where overruns are caused on purpose (the demote and skip tests).
    assert_eq!(r.release_latency_ns.samples, r.completed, "{}", r.name);
    assert_eq!(r.response_ns.samples, r.completed, "{}", r.name);
    // Every activation ends as exactly one of: released, dropped, skipped, cancelled.
    if r.activations > 0 {
        assert_eq!(
            r.activations,
            r.released + r.dropped + r.skipped + r.cancelled,
            "{}: activations unaccounted for: {r:?}",
            r.name
        );
    }
    // Periodic releases follow the clock: within two jobs of what the run's length
    // allows (the first release comes a few ms after spawn; the last may be in flight
    // when stop is asked).
    if expect_jobs > 0 {
        assert!(
            r.released + 2 >= expect_jobs && r.released <= expect_jobs + 2,
            "{}: {} jobs, expected about {expect_jobs}",
            r.name,
            r.released
        );
    }
}

/// One few-second run of [`mixed_set`] in a model: every job accounted for, and the
/// deadline misses it saw, with the time the hypervisor stole from the RT core meanwhile
/// and whether any job overran (ran longer than its wcet, which the bodies, spinning
/// for half of it, only do when time is taken from the core).
fn run_mixed_once(tag: &str, keys: &str) -> (u64, Duration, bool) {
    let (_dir, cfg) = config(tag, keys);
    let steal = rtpm_tests::steal::Steal::start(rt_cpu());
    let mut exec = Executor::start(cfg).unwrap();
    let spawned = std::time::Instant::now();
    let (ids, act) = mixed_set(&mut exec);
    // The sporadic producer, on a general core: one activation every 30 ms.
    let run = Duration::from_millis(3000);
    let t0 = std::time::Instant::now();
    let mut pushed = 0u64;
    while t0.elapsed() < run {
        act.activate(pushed).unwrap();
        pushed += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    let started = exec.stats(ids[0]).unwrap();
    let elapsed = spawned.elapsed().as_nanos() as u64;
    let report = exec.stop().unwrap();
    let stolen = steal.map_or(Duration::ZERO, |s| s.stolen());
    assert!(report.events.is_empty(), "{tag}: {:?}", report.events);
    for r in &report.tasks {
        let expect = match r.name.as_str() {
            "p20" => elapsed / 20_000_000,
            "p50" => elapsed / 50_000_000,
            "p100" => elapsed / 100_000_000,
            _ => 0,
        };
        check_accounted(r, expect);
        if r.name == "s25" {
            assert_eq!(r.activations, pushed, "{tag}");
            assert!(r.released + 2 >= pushed, "{tag}: {r:?}");
        }
    }
    assert!(started.released > 0, "{tag}: no job had run");
    let misses: u64 = report.tasks.iter().map(|t| t.deadline_misses).sum();
    let overran = report.tasks.iter().any(|t| t.overruns > 0);
    eprintln!(
        "{tag}: {} jobs, release latency p99 {} ns, {misses} deadline misses, \
         {} ms stolen from the RT core, overrun: {overran}",
        report.tasks.iter().map(|t| t.completed).sum::<u64>(),
        report.tasks[0].release_latency_ns.p99_ns,
        stolen.as_millis()
    );
    if misses > 0 {
        for t in report.tasks.iter().filter(|t| t.deadline_misses > 0) {
            eprintln!("{tag}: {t:?}");
        }
    }
    (misses, stolen, overran)
}

/// The admitted set meets every deadline: asserted on a run in which the core got the
/// time admission counted on. A run with misses in which the hypervisor stole time
/// from the RT core, or a job overran its wcet (only stolen time makes these bodies do
/// so), is the machine's doing and runs again, up to three times; a miss in a run the
/// machine left alone fails at once.
#[test]
fn mixed_set_meets_every_deadline_in_both_models() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let mut excused = Vec::new();
        for _attempt in 0..3 {
            let (misses, stolen, overran) = run_mixed_once(tag, keys);
            if misses == 0 {
                excused.clear();
                break;
            }
            assert!(
                stolen > Duration::ZERO || overran,
                "{tag}: {misses} deadline misses in a run with no stolen time and no overrun"
            );
            excused.push(format!("{misses} misses, {} ms stolen", stolen.as_millis()));
        }
        if !excused.is_empty() {
            eprintln!(
                "NOT ASSERTED {tag}: zero misses: every run lost time to the hypervisor: {excused:?}"
            );
        }
    }
}

/// Runs `spec` (a sporadic task that records its jobs) in a model, activates it `n` times
/// at once, waits `settle`, and returns its jobs in order and its statistics.
fn sporadic_at_once(
    tag: &str,
    keys: &str,
    spec: TaskSpec,
    n: u32,
    settle: Duration,
) -> (Vec<Job>, TaskReport) {
    let (_dir, cfg) = config(tag, keys);
    let mut exec = Executor::start(cfg).unwrap();
    let jobs: Arc<Mutex<Vec<Job>>> = Arc::new(Mutex::new(Vec::with_capacity(16)));
    let seen = Arc::clone(&jobs);
    let (id, act) = exec
        .spawn_sporadic(spec, TaskOptions::default(), move |j: &Job, _: u32| {
            seen.lock().unwrap().push(*j)
        })
        .unwrap();
    for i in 0..n {
        act.activate(i).unwrap();
    }
    std::thread::sleep(settle);
    let r = exec.stats(id).unwrap();
    exec.stop().unwrap();
    let jobs = jobs.lock().unwrap().clone();
    (jobs, r)
}

#[test]
fn early_sporadic_arrivals_are_deferred_not_run_early() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let t = Nanos::ms(20);
        // Four activations at once: the last three arrive early.
        let (jobs, r) = sporadic_at_once(
            &format!("defer-{tag}"),
            keys,
            TaskSpec::sporadic("burst", t, Nanos::ms(1)),
            4,
            Duration::from_millis(150),
        );
        assert_eq!(jobs.len(), 4, "{tag}: {jobs:?}");
        assert_eq!(r.deferred, 3, "{tag}: {r:?}");
        for w in jobs.windows(2) {
            // Released exactly one minimum inter-arrival time after the previous release,
            // and started no earlier than that.
            assert_eq!(w[1].release, w[0].release.add(t), "{tag}");
            assert!(w[1].start >= w[1].release, "{tag}: ran early");
            assert!(w[1].arrival < w[1].release, "{tag}: not deferred");
        }
    }
}

#[test]
fn a_sporadic_burst_runs_at_once_and_the_next_waits_for_its_window() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let t = Nanos::ms(20);
        // Seven activations at once: three fit the burst; the others wait, each one
        // period after the release three jobs before it.
        let (jobs, r) = sporadic_at_once(
            &format!("burst-{tag}"),
            keys,
            TaskSpec::sporadic("burst3", t, Nanos::ms(1)).with_burst(3),
            7,
            Duration::from_millis(120),
        );
        assert_eq!(jobs.len(), 7, "{tag}: {jobs:?}");
        assert_eq!(r.deferred, 4, "{tag}: {r:?}");
        for j in &jobs[..3] {
            assert_eq!(
                j.release, j.arrival,
                "{tag}: a job of the burst waited: {j:?}"
            );
        }
        for k in 3..7 {
            assert_eq!(
                jobs[k].release,
                jobs[k - 3].release.add(t),
                "{tag}: job {k}"
            );
            assert!(
                jobs[k].arrival < jobs[k].release,
                "{tag}: job {k} not deferred"
            );
            assert!(jobs[k].start >= jobs[k].release, "{tag}: job {k} ran early");
        }
    }
}

/// A periodic task that overruns its 1 ms budget (runs 4 ms) on job `bad`.
fn overrunner(
    exec: &mut Executor,
    policy: OverrunPolicy,
    bad: u64,
    cpus: Arc<Mutex<Vec<(u64, usize, Instant)>>>,
) -> rtpm_rt::exec::TaskId {
    exec.spawn_periodic(
        TaskSpec::periodic("over", Nanos::ms(10), Nanos::ms(1)),
        TaskOptions::default().overrun(policy),
        move |j: &Job| {
            cpus.lock().unwrap().push((j.seq, current_cpu(), j.release));
            if j.seq == bad {
                spin(Nanos::ms(4));
            }
        },
    )
    .unwrap()
}

#[test]
fn overrun_under_demote_moves_the_task_and_frees_its_capacity() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = rt_cpu();
    for (tag, keys) in MODELS {
        let (_dir, cfg) = config(&format!("demote-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let log = Arc::new(Mutex::new(Vec::with_capacity(64)));
        let id = overrunner(&mut exec, OverrunPolicy::Demote, 3, Arc::clone(&log));
        // A heavy task that fits beside `over` (10 % + overhead) only if `over` leaves:
        // 0.85 of the 0.9 cap.
        let heavy = TaskSpec::periodic("heavy", Nanos::ms(100), Nanos::ms(85));
        assert!(
            matches!(
                exec.spawn_periodic(heavy.clone(), TaskOptions::default(), |_: &Job| ()),
                Err(rtpm_rt::Error::Refused(_))
            ),
            "{tag}: heavy fitted beside over"
        );
        std::thread::sleep(Duration::from_millis(150));
        let r = exec.stats(id).unwrap();
        assert!(r.demoted, "{tag}: {r:?}");
        assert!(r.overruns >= 1, "{tag}: {r:?}");
        let events = exec.events();
        assert!(
            events.iter().any(|e| matches!(e, ExecEvent::Demoted { task, from_cpu, .. } if task == "over" && *from_cpu == rt)),
            "{tag}: {events:?}"
        );
        // Its capacity is back: the heavy task is admitted now.
        let h = exec.spawn_periodic(heavy, TaskOptions::default(), |_: &Job| ());
        assert!(h.is_ok(), "{tag}: {h:?}");
        let report = exec.stop().unwrap();
        let log = log.lock().unwrap();
        // Jobs up to the overrun ran on the RT core, the ones after on a general core.
        for (seq, cpu, _) in log.iter() {
            if *seq <= 3 {
                assert_eq!(*cpu, rt, "{tag}: job {seq} ran on CPU {cpu}");
            } else {
                assert_ne!(*cpu, rt, "{tag}: demoted job {seq} still on the RT core");
            }
        }
        assert!(
            log.iter().any(|(s, _, _)| *s > 5),
            "{tag}: the demoted task stopped running"
        );
        let over = report.tasks.iter().find(|t| t.name == "over").unwrap();
        assert_eq!(over.released, over.completed, "{tag}");
    }
}

/// In the threads model a job's execution time leaves out the time a higher-priority
/// task preempted it: a low-priority job that needs 3 ms of CPU, preempted about three
/// times by a task that takes 0.35 ms every 1 ms, holds the core for about 4 ms of wall
/// time but stays inside its 3.5 ms budget.
#[test]
fn a_preempted_jobs_execution_leaves_out_the_preemption() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let (_dir, cfg) = config("preempted", MODELS[0].1);
    let mut exec = Executor::start(cfg).unwrap();
    exec.spawn_periodic(
        TaskSpec::periodic("high", Nanos::ms(1), Nanos::us(500)),
        TaskOptions::default(),
        |_: &Job| spin_cpu(Nanos::us(350)),
    )
    .unwrap();
    let low = exec
        .spawn_periodic(
            TaskSpec::periodic("low", Nanos::ms(10), Nanos::us(3500)),
            TaskOptions::default(),
            |_: &Job| spin_cpu(Nanos::ms(3)),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let r = exec.stats(low).unwrap();
    exec.stop().unwrap();
    assert!(r.completed >= 50, "{r:?}");
    // It was preempted: it took longer than its budget from release to end...
    assert!(
        r.response_ns.p50_ns > Nanos::us(3600).get(),
        "low was not preempted: {r:?}"
    );
    // ...yet its execution is its own CPU time: the 3 ms its body used (less the
    // histogram's 0.1 % rounding), and under its 3.5 ms budget.
    assert!(r.execution_ns.min_ns >= Nanos::us(2990).get(), "{r:?}");
    assert!(r.execution_ns.max_ns < Nanos::us(3500).get(), "{r:?}");
    assert_eq!(r.overruns, 0, "{r:?}");
}

#[test]
fn overrun_under_skip_drops_the_next_release() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let (_dir, cfg) = config(&format!("skip-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let log = Arc::new(Mutex::new(Vec::with_capacity(64)));
        let id = overrunner(&mut exec, OverrunPolicy::Skip, 2, Arc::clone(&log));
        std::thread::sleep(Duration::from_millis(120));
        let r = exec.stats(id).unwrap();
        exec.stop().unwrap();
        assert_eq!(r.skipped, 1, "{tag}: {r:?}");
        assert_eq!(r.overruns, 1, "{tag}: {r:?}");
        assert!(!r.demoted, "{tag}");
        let log = log.lock().unwrap();
        let release = |s: u64| log.iter().find(|(q, _, _)| *q == s).unwrap().2;
        // Job 2 overran: the release after it (job 2 + 10 ms) is skipped, so job 3 comes
        // two periods after job 2; the others keep one period.
        assert_eq!(release(1), release(0).add(Nanos::ms(10)), "{tag}");
        assert_eq!(release(2), release(1).add(Nanos::ms(10)), "{tag}");
        assert_eq!(release(3), release(2).add(Nanos::ms(20)), "{tag}");
        assert_eq!(release(4), release(3).add(Nanos::ms(10)), "{tag}");
    }
}

#[test]
fn an_admission_refusal_leaves_the_executor_unchanged() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    for (tag, keys) in MODELS {
        let (_dir, cfg) = config(&format!("refuse-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let mut ids = Vec::new();
        // 20 %, 20 % and 10 %: with the non-preemptive blocking of the cooperative model
        // every deadline still holds.
        for (i, (d, c)) in [(10u64, 2u64), (20, 4), (40, 4)].iter().enumerate() {
            let ran = Arc::clone(&ran);
            ids.push(
                exec.spawn_periodic(
                    TaskSpec::periodic(format!("t{i}"), Nanos::ms(*d), Nanos::ms(*c)),
                    TaskOptions::default(),
                    move |_: &Job| {
                        ran.fetch_add(1, Ordering::Relaxed);
                    },
                )
                .unwrap(),
            );
        }
        let before_ids = exec.task_ids();
        let before_prio: Vec<_> = ids.iter().map(|i| exec.fifo_priority(*i)).collect();
        let before_tids = exec.rt_tids();
        // 50 % + overheads are taken; 40 % more does not fit under the 0.9 cap.
        let err = exec
            .spawn_periodic(
                TaskSpec::periodic("big", Nanos::ms(5), Nanos::ms(2)),
                TaskOptions::default(),
                |_: &Job| (),
            )
            .unwrap_err();
        assert!(matches!(err, rtpm_rt::Error::Refused(_)), "{tag}: {err}");
        assert!(err.to_string().contains("big"), "{tag}: {err}");
        assert_eq!(exec.task_ids(), before_ids, "{tag}");
        assert_eq!(exec.rt_tids(), before_tids, "{tag}");
        let after_prio: Vec<_> = ids.iter().map(|i| exec.fifo_priority(*i)).collect();
        assert_eq!(after_prio, before_prio, "{tag}");
        // The admitted tasks go on running, and a task that fits is still admitted.
        let n = ran.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(60));
        assert!(ran.load(Ordering::Relaxed) > n, "{tag}: tasks stopped");
        exec.spawn_periodic(
            TaskSpec::periodic("small", Nanos::ms(100), Nanos::ms(5)),
            TaskOptions::default(),
            |_: &Job| (),
        )
        .unwrap();
        let report = exec.stop().unwrap();
        assert_eq!(report.tasks.len(), 4, "{tag}");
    }
}

#[test]
fn no_thread_but_admitted_rt_work_may_run_on_the_rt_core() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = rt_cpu();
    for (tag, keys) in MODELS {
        // Threads that exist before start (this one, the test harness's) must leave.
        let early = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(5)));
        let (_dir, cfg) = config(&format!("affinity-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let _ = mixed_set(&mut exec);
        // Threads spawned after start, by anyone but the executor, stay off it too.
        let late = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(50));
        let rt_work = exec.rt_tids();
        assert!(!rt_work.is_empty());
        let threads = rtpm_rt::exec::process_threads().unwrap();
        let mut on_rt = 0;
        for t in &threads {
            if rt_work.contains(&t.tid) {
                assert!(
                    t.affinity.contains(rt),
                    "{tag}: RT thread {t:?} is off the RT core"
                );
                on_rt += 1;
                continue;
            }
            assert!(
                !t.affinity.contains(rt),
                "{tag}: non-RT thread {t:?} has the RT core {rt} in its affinity"
            );
        }
        assert_eq!(on_rt, rt_work.len(), "{tag}");
        assert!(
            threads.len() > rt_work.len() + 2,
            "{tag}: too few threads seen"
        );
        exec.stop().unwrap();
        early.thread().unpark();
        late.thread().unpark();
        early.join().unwrap();
        late.join().unwrap();
    }
}

#[test]
fn a_second_executor_leaves_the_first_ones_rt_threads_on_their_core() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = rt_cpu();
    // two runtimes in one process (a benchmark, a test of two nodes): the one that starts
    // second confines the process's threads, and must leave the first's RT work alone
    let (_da, ca) = config("two-a", "dispatch = \"threads\"");
    let (_db, cb) = config("two-b", "dispatch = \"cooperative\"");
    let mut a = Executor::start(ca).unwrap();
    let _ = mixed_set(&mut a);
    let mut b = Executor::start(cb).unwrap();
    let _ = mixed_set(&mut b);
    std::thread::sleep(Duration::from_millis(50));
    let rt_work: Vec<i32> = a.rt_tids().into_iter().chain(b.rt_tids()).collect();
    assert!(a.rt_tids().len() >= 4 && !b.rt_tids().is_empty());
    let threads = rtpm_rt::exec::process_threads().unwrap();
    for tid in &rt_work {
        let t = threads
            .iter()
            .find(|t| t.tid == *tid)
            .expect("RT thread alive");
        assert_eq!(
            t.affinity,
            rtpm_rt::cpu::CpuSet::single(rt),
            "RT thread {t:?} was moved off its core"
        );
    }
    for t in threads.iter().filter(|t| !rt_work.contains(&t.tid)) {
        assert!(
            !t.affinity.contains(rt),
            "non-RT thread {t:?} on the RT core"
        );
    }
    b.stop().unwrap();
    a.stop().unwrap();
}

#[test]
fn share_idle_lets_a_sched_idle_worker_use_the_rt_core() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = rt_cpu();
    let (_dir, cfg) = config("share-idle", "share_idle = true");
    let exec = Executor::start(cfg).unwrap();
    let pool = exec.pool().unwrap();
    assert_eq!(pool.idle_tids().len(), 1);
    let idle = pool.idle_tids()[0];
    let attr = rtpm_rt::thread::attr_of(idle).unwrap();
    assert_eq!(attr.policy, Some(rtpm_rt::thread::Policy::Idle));
    assert_eq!(attr.affinity, rtpm_rt::cpu::CpuSet::single(rt));
    // Work submitted to the pool runs, some of it on the shared RT core.
    let on_rt = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let (on_rt, done) = (Arc::clone(&on_rt), Arc::clone(&done));
        pool.submit(move || {
            spin(Nanos::ms(20));
            if current_cpu() == rt {
                on_rt.fetch_add(1, Ordering::Relaxed);
            }
            done.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    let t0 = std::time::Instant::now();
    while done.load(Ordering::Relaxed) < 8 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    exec.stop().unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 8);
    assert!(
        on_rt.load(Ordering::Relaxed) > 0,
        "the idle worker never ran on the RT core"
    );
}

#[test]
fn edf_threads_without_the_shield_is_refused_or_falls_back() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    if rtpm_rt::shield::status().map(|s| s.active).unwrap_or(false) {
        eprintln!("SKIPPED: a shield is active on this machine");
        return;
    }
    let (_dir, cfg) = config(
        "edf-noshield",
        "scheduler = \"edf\"\ndispatch = \"threads\"",
    );
    let err = Executor::start(cfg).unwrap_err().to_string();
    assert!(
        err.contains("SCHED_DEADLINE")
            && err.contains("root domain")
            && err.contains("fallback = \"fifo\""),
        "{err}"
    );
    let (_dir, cfg) = config(
        "edf-fallback",
        "scheduler = \"edf\"\ndispatch = \"threads\"\nfallback = \"fifo\"",
    );
    let mut exec = Executor::start(cfg).unwrap();
    assert!(
        matches!(exec.events().first(), Some(ExecEvent::Warning { message }) if message.contains("fallback"))
    );
    let a = exec
        .spawn_periodic(
            TaskSpec::periodic("long", Nanos::ms(50), Nanos::ms(1)),
            TaskOptions::default(),
            |_: &Job| (),
        )
        .unwrap();
    let b = exec
        .spawn_periodic(
            TaskSpec::periodic("short", Nanos::ms(10), Nanos::ms(1)),
            TaskOptions::default(),
            |_: &Job| (),
        )
        .unwrap();
    // Deadline-monotonic: the shorter deadline gets the higher SCHED_FIFO priority.
    assert!(
        exec.fifo_priority(b) > exec.fifo_priority(a),
        "{:?} {:?}",
        exec.fifo_priority(a),
        exec.fifo_priority(b)
    );
    std::thread::sleep(Duration::from_millis(60));
    let report = exec.stop().unwrap();
    assert!(report.tasks.iter().all(|t| t.completed > 0));
}

/// The kernel's aggregated PM QoS wake-up latency target, in µs.
fn idle_latency_target() -> i32 {
    let mut b = [0u8; 4];
    let mut f = std::fs::File::open("/dev/cpu_dma_latency").unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    i32::from_ne_bytes(b)
}

#[test]
fn a_running_executor_keeps_idle_cpus_polling_and_lets_go_at_stop() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    skip_unless!(rtpm_tests::probe::root());
    let before = idle_latency_target();
    let (_dir, cfg) = config("idle-latency", "");
    assert_eq!(
        cfg.idle_latency,
        Some(Nanos(0)),
        "the default asks for polling"
    );
    let exec = Executor::start(cfg).unwrap();
    assert_eq!(idle_latency_target(), 0, "no 0 µs request while running");
    exec.stop().unwrap();
    assert_eq!(
        idle_latency_target(),
        before,
        "the request outlived the executor"
    );

    let (_dir, mut cfg) = config("idle-latency-off", "");
    cfg.idle_latency = None;
    let exec = Executor::start(cfg).unwrap();
    assert_eq!(idle_latency_target(), before, "asked although told not to");
    exec.stop().unwrap();
}
