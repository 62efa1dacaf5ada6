//! Nothing on the RT core allocates after start: a counting global allocator counts
//! every allocation, reallocation and free made on the RT CPU while armed, across more
//! than 10,000 jobs of periodic and sporadic tasks, in both models. Only admitted RT work
//! runs on that CPU (the executor moves every other thread off it), so what it counts is
//! the executor's RT path and the task bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use exec_common::*;
use rtpm_rt::exec::{Executor, Job, TaskOptions, TaskSpec};
use rtpm_rt::time::Nanos;
use rtpm_tests::alloc::Counting;
use rtpm_tests::skip_unless;

static ARMED: AtomicBool = AtomicBool::new(false);
static RT: AtomicUsize = AtomicUsize::new(usize::MAX);
static ON_RT: AtomicU64 = AtomicU64::new(0);
static ANYWHERE: AtomicU64 = AtomicU64::new(0);

fn count() {
    if ARMED.load(Ordering::Relaxed) {
        ANYWHERE.fetch_add(1, Ordering::Relaxed);
        if current_cpu() == RT.load(Ordering::Relaxed) {
            ON_RT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting::new(count);

const JOBS: u64 = 10_000;

#[test]
fn the_rt_core_allocates_nothing_after_start() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    RT.store(rt_cpu(), Ordering::Relaxed);
    for (tag, keys) in [
        ("threads-fp", "scheduler = \"fp\"\ndispatch = \"threads\""),
        (
            "coop-edf",
            "scheduler = \"edf\"\ndispatch = \"cooperative\"",
        ),
        ("coop-fp", "scheduler = \"fp\"\ndispatch = \"cooperative\""),
    ] {
        let (_dir, cfg) = config(&format!("alloc-{tag}"), keys);
        let mut exec = Executor::start(cfg).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                exec.spawn_periodic(
                    TaskSpec::periodic(format!("p{i}"), Nanos::us(500), Nanos::us(40)),
                    TaskOptions::default(),
                    move |j: &Job| {
                        std::hint::black_box(j.seq.wrapping_mul(31));
                    },
                )
                .unwrap(),
            );
        }
        let (sid, act) = exec
            .spawn_sporadic(
                TaskSpec::sporadic("s", Nanos::us(500), Nanos::us(40)),
                TaskOptions::default(),
                |_: &Job, p: u64| {
                    std::hint::black_box(p);
                },
            )
            .unwrap();
        ids.push(sid);
        let completed = |exec: &Executor| -> u64 {
            ids.iter().map(|i| exec.stats(*i).unwrap().completed).sum()
        };
        // Warm up: every task has run a job (first-touch of its stack and state).
        let mut n = 0u64;
        while ids.iter().any(|i| exec.stats(*i).unwrap().completed == 0) {
            act.activate(n).ok();
            n += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        ON_RT.store(0, Ordering::Relaxed);
        ANYWHERE.store(0, Ordering::Relaxed);
        let before = completed(&exec);
        ARMED.store(true, Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        // The producer on a general core: an activation about every 0.7 ms.
        while completed(&exec) < before + JOBS && t0.elapsed() < Duration::from_secs(30) {
            act.activate(n).ok();
            n += 1;
            std::thread::sleep(Duration::from_micros(700));
        }
        ARMED.store(false, Ordering::SeqCst);
        let jobs = completed(&exec) - before;
        let report = exec.stop().unwrap();
        let on_rt = ON_RT.load(Ordering::Relaxed);
        eprintln!(
            "{tag}: {jobs} jobs while armed; {on_rt} allocations on the RT core, {} anywhere (general-core snapshots)",
            ANYWHERE.load(Ordering::Relaxed)
        );
        assert!(jobs >= JOBS, "{tag}: only {jobs} jobs ran");
        assert!(
            report
                .tasks
                .iter()
                .find(|t| t.name == "s")
                .unwrap()
                .completed
                > 100
        );
        // The counter works: the general core allocated (the snapshots above).
        assert!(
            ANYWHERE.load(Ordering::Relaxed) > 0,
            "{tag}: the allocator counted nothing at all"
        );
        assert_eq!(
            on_rt, 0,
            "{tag}: the RT core allocated {on_rt} times across {jobs} jobs"
        );
    }
}
