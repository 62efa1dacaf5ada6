//! The shield on the real cgroup v1 cpuset hierarchy: it sets up, makes the RT core a
//! root domain of its own (a SCHED_DEADLINE thread pinned to it is admitted), undoes, and
//! leaves the system as it found it — also when a step fails halfway, and also when this
//! test fails halfway (a guard undoes the shield while the panic unwinds).
//!
//! One test function, so nothing else in this binary runs while the system is shielded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};

use rtpm_rt::cpu::CpuSet;
use rtpm_rt::shield::{self, Cgroups};
use rtpm_rt::thread::{DeadlineFlags, Policy, ThreadBuilder, attr_of};
use rtpm_rt::time::Nanos;
use rtpm_tests::shield::{Guard, v1_unshielded as v1};
use rtpm_tests::{probe, skip_unless};

/// What the test must leave as it found it: the root cpuset's settings, every cpuset
/// folder and its CPUs, and whether a journal exists.
fn snapshot(cg: &Cgroups) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for file in [
            "cpuset.cpus",
            "cpuset.cpu_exclusive",
            "cpuset.sched_load_balance",
        ] {
            let v = fs::read_to_string(dir.join(file)).unwrap_or_default();
            out.push((
                format!("{}/{file}", dir.strip_prefix(base).unwrap().display()),
                v.trim().into(),
            ));
        }
        for d in dirs {
            walk(base, &d, out);
        }
    }
    let mut out = Vec::new();
    walk(&cg.root, &cg.root, &mut out);
    out.push(("journal".into(), cg.state_file.exists().to_string()));
    out
}

#[test]
fn shield_sets_up_and_undoes_on_cgroup_v1() {
    skip_unless!(probe::root());
    skip_unless!(probe::cpus(2));
    let cg = match v1() {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("SKIPPED shield test: {why}");
            return;
        }
    };
    let allowed = CpuSet::allowed().unwrap();
    let rt = CpuSet::single(allowed.last().unwrap());
    let general = allowed.difference(&rt);
    let before = snapshot(&cg);
    let my_affinity = attr_of(0).unwrap().affinity;

    // 1. A failure at any step rolls back completely.
    let steps = {
        let _g = Guard(&cg);
        let report = shield::setup_on(&cg, rt, general, None).unwrap();
        report.journal.changes.len()
    };
    assert_eq!(
        snapshot(&cg),
        before,
        "the guard's undo did not restore the system"
    );
    for k in 0..steps {
        let _g = Guard(&cg);
        let err = shield::setup_on(&cg, rt, general, Some(k)).unwrap_err();
        assert!(err.to_string().contains("rolled back"), "step {k}: {err}");
        assert_eq!(
            snapshot(&cg),
            before,
            "a failure after step {k} left changes behind"
        );
    }

    // 2. The real thing.
    let g = Guard(&cg);
    let report = shield::setup_on(&cg, rt, general, None).unwrap();
    assert!(report.moved > 0, "no task moved to the general cores");
    let st = shield::status_on(&cg).unwrap();
    assert!(st.active);
    assert_eq!(st.root_load_balance, Some(false));
    assert_eq!(st.rt_cpus.as_deref(), Some(rt.to_list().as_str()));
    assert_eq!(st.general_cpus.as_deref(), Some(general.to_list().as_str()));
    // This very thread was moved off the RT core.
    assert_eq!(attr_of(0).unwrap().affinity, general);
    // The RT core is now a root domain of its own: a deadline thread pinned to it alone is
    // admitted once it is inside the RT cpuset.
    let dl = ThreadBuilder::new("dl-shielded")
        .shielded(true)
        .affinity(rt)
        .policy(Policy::Deadline {
            runtime: Nanos::us(200),
            deadline: Nanos::ms(10),
            period: Nanos::ms(10),
            flags: DeadlineFlags::default(),
        })
        .spawn(|| attr_of(0).unwrap())
        .unwrap();
    let seen = dl.join().unwrap();
    assert_eq!(seen.affinity, rt);
    assert!(matches!(seen.policy, Some(Policy::Deadline { .. })));
    // A process inside the shield's general cpuset still has the RT core for its RT work:
    // it is in its allowed set (so a partition finds it), and a SCHED_FIFO thread bound to
    // it joins the RT cpuset by itself.
    assert_eq!(
        CpuSet::allowed().unwrap(),
        allowed,
        "the RT core left the allowed set"
    );
    let fifo = ThreadBuilder::new("fifo-shielded")
        .affinity(rt)
        .policy(Policy::Fifo { priority: 10 })
        .spawn(|| {
            let cpuset = fs::read_to_string("/proc/thread-self/cpuset").unwrap();
            (attr_of(0).unwrap(), cpuset)
        })
        .unwrap();
    let (seen, cpuset) = fifo.join().unwrap();
    assert_eq!(seen.affinity, rt);
    assert_eq!(cpuset.trim(), format!("/{}", shield::RT_GROUP));

    shield::undo_on(&cg).unwrap();
    drop(g);
    assert_eq!(snapshot(&cg), before, "undo did not restore the system");
    assert_eq!(attr_of(0).unwrap().affinity, my_affinity);
}
