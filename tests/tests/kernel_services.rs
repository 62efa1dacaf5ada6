//! Services at run time: a user service's periodic task is admitted and runs, and stops
//! with the service; a service whose tasks do not fit is refused with admission's reason
//! and leaves nothing behind (not even its first, admitted task), and none of its bodies
//! ran; inserting needs `admin`; a user service may not pin a task or pick its priority,
//! a kernel service may, and gets the privileged handle; `get_*` by type, duplicates,
//! and removal by the wrong kind are refused.
//!
//! Every test starts a runtime (its executor needs SCHED_FIFO and two CPUs) and skips
//! with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kernel_common::*;
use rtpm::rt::exec::{Job, TaskOptions, TaskSpec};
use rtpm::rt::time::Nanos;
use rtpm::{
    Error, KernelContext, KernelHandle, KernelService, Permission, Service, ServiceId, ServiceKind,
    UserContext, UserService,
};
use rtpm_tests::skip_unless;

/// A user service with periodic tasks of the given (period, wcet).
#[derive(Debug)]
struct Ticker {
    name: &'static str,
    tasks: Vec<(Nanos, Nanos)>,
    jobs: Arc<AtomicU64>,
    pin: bool,
}

impl Service for Ticker {
    fn name(&self) -> &str {
        self.name
    }
}

impl UserService for Ticker {
    fn start(&mut self, ctx: &mut UserContext<'_>) -> rtpm::Result<()> {
        for (i, (period, wcet)) in self.tasks.iter().enumerate() {
            let jobs = Arc::clone(&self.jobs);
            let mut spec = TaskSpec::periodic(format!("t{i}"), *period, *wcet);
            if self.pin {
                spec = spec.pinned(0);
            }
            ctx.periodic(spec, TaskOptions::default(), move |_: &Job| {
                jobs.fetch_add(1, Ordering::SeqCst);
            })?;
        }
        Ok(())
    }
}

fn ticker(name: &'static str, tasks: Vec<(Nanos, Nanos)>) -> (Ticker, Arc<AtomicU64>) {
    let jobs = Arc::new(AtomicU64::new(0));
    (
        Ticker {
            name,
            tasks,
            jobs: Arc::clone(&jobs),
            pin: false,
        },
        jobs,
    )
}

#[test]
fn a_user_service_runs_its_tasks_until_removed() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let alice = rt.login("alice", "alice passphrase").unwrap();
    let (t, jobs) = ticker("example.ticker", vec![(Nanos::ms(2), Nanos::us(100))]);
    assert!(matches!(
        rt.insert_user_service(&alice, t),
        Err(Error::NotAllowed {
            permission: Permission::Admin,
            ..
        })
    ));
    let (t, jobs2) = ticker("example.ticker", vec![(Nanos::ms(2), Nanos::us(100))]);
    let _ = jobs;
    let svc = rt.insert_user_service(&admin, t).unwrap();
    let id = ServiceId::from_name("example.ticker");
    assert_eq!(svc.id(), id);
    std::thread::sleep(Duration::from_millis(30));
    assert!(jobs2.load(Ordering::SeqCst) > 3);
    let info = rt.services(&admin).unwrap();
    let me = info.iter().find(|i| i.id == id).unwrap();
    assert_eq!((me.kind, me.tasks.len()), (ServiceKind::User, 1));
    assert!(
        rt.task_reports(&admin)
            .unwrap()
            .iter()
            .any(|t| t.name == "example.ticker/t0")
    );
    // get by type; the wrong type or kind is refused.
    let again: Arc<Ticker> = rt.get_user_service(&alice, id).unwrap();
    assert!(Arc::ptr_eq(&again, &svc));
    assert!(matches!(
        rt.get_user_service::<rtpm::event::EventService>(&alice, id),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        rt.remove_kernel_service(&admin, id),
        Err(Error::WrongType { .. })
    ));
    let (dup, _) = ticker("example.ticker", vec![]);
    assert!(matches!(
        rt.insert_user_service(&admin, dup),
        Err(Error::AlreadyPresent { .. })
    ));
    assert!(matches!(
        rt.remove_user_service(&alice, id),
        Err(Error::NotAllowed { .. })
    ));
    rt.remove_user_service(&admin, id).unwrap();
    let after = jobs2.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        jobs2.load(Ordering::SeqCst),
        after,
        "a task ran after removal"
    );
    assert!(
        !rt.task_reports(&admin)
            .unwrap()
            .iter()
            .any(|t| t.name.starts_with("example.ticker/"))
    );
    assert!(matches!(
        rt.get_user_service::<Ticker>(&alice, id),
        Err(Error::ServiceNotFound { .. })
    ));
}

#[test]
fn a_service_that_does_not_fit_is_refused_and_leaves_nothing() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let before = rt.task_reports(&admin).unwrap().len();
    // The first task fits (40 %), the second (60 %) does not beside it under the 0.9 cap.
    let (t, jobs) = ticker(
        "example.greedy",
        vec![(Nanos::ms(10), Nanos::ms(4)), (Nanos::ms(10), Nanos::ms(6))],
    );
    let e = rt.insert_user_service(&admin, t).unwrap_err();
    match &e {
        Error::Refused { service, rejection } => {
            assert_eq!(service, "example.greedy");
            assert_eq!(rejection.task, "example.greedy/t1");
            assert!(e.to_string().contains(&rejection.reason_text()), "{e}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        jobs.load(Ordering::SeqCst),
        0,
        "a body ran before the service was admitted"
    );
    assert_eq!(
        rt.task_reports(&admin).unwrap().len(),
        before,
        "its first task stayed"
    );
    assert!(
        !rt.services(&admin)
            .unwrap()
            .iter()
            .any(|i| i.name == "example.greedy")
    );
    // The capacity is really free: a 40 % + 40 % service fits now.
    let (t, _) = ticker(
        "example.fits",
        vec![(Nanos::ms(10), Nanos::ms(4)), (Nanos::ms(10), Nanos::ms(4))],
    );
    rt.insert_user_service(&admin, t).unwrap();
}

/// A kernel service that pins its task and keeps the privileged handle.
#[derive(Debug, Default)]
struct Watchdog {
    kernel: Option<KernelHandle>,
}

impl Service for Watchdog {
    fn name(&self) -> &str {
        "example.watchdog"
    }
}

impl KernelService for Watchdog {
    fn start(&mut self, ctx: &mut KernelContext<'_>) -> rtpm::Result<()> {
        ctx.periodic(
            TaskSpec::periodic("scan", Nanos::ms(5), Nanos::us(50))
                .pinned(0)
                .with_priority(1),
            TaskOptions::default(),
            |_: &Job| {},
        )?;
        self.kernel = Some(ctx.kernel());
        Ok(())
    }
}

#[test]
fn only_kernel_services_are_privileged() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let alice = rt.login("alice", "alice passphrase").unwrap();
    // A user service may not pin.
    let (mut t, _) = ticker("example.pinned", vec![(Nanos::ms(5), Nanos::us(50))]);
    t.pin = true;
    let e = rt.insert_user_service(&admin, t).unwrap_err();
    assert!(e.to_string().contains("cannot pin a task"), "{e}");
    // A kernel service may, and needs admin on the kernel to be inserted.
    assert!(matches!(
        rt.insert_kernel_service(&alice, Watchdog::default()),
        Err(Error::NotAllowed { .. })
    ));
    let w = rt
        .insert_kernel_service(&admin, Watchdog::default())
        .unwrap();
    let handle = w.kernel.as_ref().unwrap();
    let reports = handle.task_reports().unwrap();
    assert!(reports.iter().any(|t| t.name == "example.watchdog/scan"));
    assert!(
        handle
            .with_network_mgr(|m| m.networks().is_empty())
            .unwrap()
    );
    let got: Arc<Watchdog> = rt
        .get_kernel_service(&alice, ServiceId::from_name("example.watchdog"))
        .unwrap();
    assert!(Arc::ptr_eq(&got, &w));
    rt.remove_kernel_service(&admin, ServiceId::from_name("example.watchdog"))
        .unwrap();
    drop(rt);
    assert!(
        handle.task_reports().is_err(),
        "the handle does not keep the runtime alive"
    );
}
