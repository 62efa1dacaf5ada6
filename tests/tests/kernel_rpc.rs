//! The RPC kernel service in one runtime: one-way and two-way calls on both local paths
//! (as jobs of the server's request task, and on the caller's thread), every request
//! carrying the caller, its deadline and its class; `NotAllowed` before anything else;
//! `ServiceNotFound`, `OperationNotImplemented`, `OperationFailed`; a two-way call that
//! returns `DeadlineExceeded` at its deadline while the server is busy, and a request
//! whose deadline passed before the server took it not run; a server refused by
//! admission with its reason; and unregistering, which frees the task's capacity.
//!
//! Every test starts a runtime (its executor needs SCHED_FIFO and two CPUs) and skips
//! with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel_common::*;
use rtpm::rpc::{
    CallOptions, LocalCalls, OpError, ReplyBuf, Request, RpcRequest, RpcServer, ServerSpec,
};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{Error, Permission, QosClass, ServiceId};
use rtpm_tests::skip_unless;

const PING: u32 = 1;
const ADD: u32 = 2;
const SLOW: u32 = 3;
const FAIL: u32 = 4;

/// What a request looked like to the server.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    user: String,
    qos: QosClass,
    budget_left: bool,
    thread: String,
}

/// Listing 8's server, with a few more operations.
struct Example {
    pings: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RpcServer for Example {
    fn name(&self) -> &str {
        "example.ping"
    }

    fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        self.seen.lock().unwrap().push(Seen {
            user: req.caller().user.to_string(),
            qos: req.qos(),
            budget_left: req.deadline() > MonotonicClock.now(),
            thread: std::thread::current().name().unwrap_or("").to_string(),
        });
        match req.operation() {
            PING => {
                self.pings.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            ADD => {
                let (a, b): (u32, u32) = req.decode()?;
                reply.encode(&(a + b))
            }
            SLOW => {
                let ms: u64 = req.decode()?;
                let end = MonotonicClock.now().add(Nanos::ms(ms));
                while MonotonicClock.now() < end {
                    std::hint::spin_loop();
                }
                reply.encode(&ms)
            }
            FAIL => Err(OpError::Failed("segment closed".into())),
            _ => Err(OpError::NotImplemented),
        }
    }
}

fn example() -> (Example, Arc<AtomicU64>, Arc<Mutex<Vec<Seen>>>) {
    let pings = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    (
        Example {
            pings: Arc::clone(&pings),
            seen: Arc::clone(&seen),
        },
        pings,
        seen,
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn local_one_way_and_two_way_on_both_paths() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let bob = rt.login("bob", "bob passphrase").unwrap();
    let rpc = rt.rpc(&admin).unwrap();
    let id = ServiceId::from_name("example.ping");
    for local in [LocalCalls::AsJobs, LocalCalls::OnCaller] {
        let (server, pings, seen) = example();
        let reg = rpc
            .register_server(
                &admin,
                server,
                ServerSpec::new(Nanos::us(200), Nanos::us(100)).local_calls(local),
            )
            .unwrap();
        let mut client = rpc.client(&bob, id).unwrap();
        assert_eq!(client.local_calls(), local);
        let opts = CallOptions::within(Nanos::ms(50)).qos(QosClass::BEST_EFFORT);
        // One-way (listing 9's ping).
        for _ in 0..5 {
            client.one_way(PING, &(), opts).unwrap();
        }
        wait_for("the pings", || pings.load(Ordering::SeqCst) == 5);
        // Two-way.
        for i in 0..20u32 {
            let sum: u32 = client.two_way(ADD, &(i, 1000u32), opts).unwrap();
            assert_eq!(sum, i + 1000);
        }
        // The seed's untyped style.
        rpc.one_way_invocation(&bob, &RpcRequest::new(id, PING))
            .unwrap();
        let mut r = RpcRequest::new(id, ADD);
        r.payload = rtpm_tests_encode(&(2u32, 3u32));
        let reply = rpc.two_way_invocation(&bob, &r).unwrap();
        assert_eq!(reply, rtpm_tests_encode(&5u32));
        wait_for("the last ping", || pings.load(Ordering::SeqCst) == 6);
        // Every request carried the caller, its class and a deadline still ahead.
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 27, "{local:?}");
        assert!(
            seen.iter().all(|s| s.user == "bob" && s.budget_left),
            "{seen:?}"
        );
        assert_eq!(seen[0].qos, QosClass::BEST_EFFORT);
        assert_eq!(seen[26].qos, QosClass::RELIABLE, "the default class");
        let here = std::thread::current().name().unwrap_or("").to_string();
        match local {
            // Jobs run on the request task's thread, named after the service.
            LocalCalls::AsJobs => assert!(
                seen.iter().all(|s| s.thread == "rt-example.ping/requests"),
                "{seen:?}"
            ),
            LocalCalls::OnCaller => assert!(seen.iter().all(|s| s.thread == here)),
        }
        let stats = reg.stats();
        assert_eq!(stats.served, 27, "{stats:?}");
        if local == LocalCalls::AsJobs {
            // The executor measured every request as a job of the request task.
            let reports = rt.task_reports(&admin).unwrap();
            let task = reports
                .iter()
                .find(|t| t.name == "example.ping/requests")
                .unwrap();
            assert_eq!(task.completed, 27, "{task:?}");
            assert_eq!(task.activations, 27);
        }
        let p = client.round_trips().unwrap();
        assert_eq!(p.samples, 20);
        rpc.unregister_server(&admin, id).unwrap();
        assert!(matches!(
            client.two_way::<_, u32>(ADD, &(1u32, 1u32), opts),
            Err(Error::ServiceNotFound { .. })
        ));
    }
}

/// postcard, as the default codec writes it.
fn rtpm_tests_encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    <rtpm::rpc::Postcard as rtpm::rpc::Codec>::encode(v, &mut out).unwrap();
    out
}

#[test]
fn errors_not_allowed_not_found_not_implemented_failed() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let eve = rt.login("eve", "eve passphrase").unwrap();
    let alice = rt.login("alice", "alice passphrase").unwrap();
    let rpc = rt.rpc(&admin).unwrap();
    let id = ServiceId::from_name("example.ping");
    // Registering needs admin on the server.
    let (server, _, _) = example();
    assert!(matches!(
        rpc.register_server(
            &alice,
            server,
            ServerSpec::new(Nanos::ms(1), Nanos::us(100))
        ),
        Err(Error::NotAllowed {
            permission: Permission::Admin,
            ..
        })
    ));
    let (server, pings, _) = example();
    rpc.register_server(
        &admin,
        server,
        ServerSpec::new(Nanos::ms(1), Nanos::us(100)),
    )
    .unwrap();
    // Eve may not execute: refused before anything else, and nothing ran.
    let e = rpc.client(&eve, id).unwrap_err();
    assert!(
        matches!(&e, Error::NotAllowed { user, permission: Permission::Execute, target } if user == "eve" && target == "example.ping"),
        "{e}"
    );
    assert!(matches!(
        rpc.one_way_invocation(&eve, &RpcRequest::new(id, PING)),
        Err(Error::NotAllowed { .. })
    ));
    // Not allowed comes before not found.
    assert!(matches!(
        rpc.client(&eve, ServiceId::from_name("nowhere")),
        Err(Error::NotAllowed { .. })
    ));
    assert!(matches!(
        rpc.client(&alice, ServiceId::from_name("nowhere")),
        Err(Error::ServiceNotFound { .. })
    ));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(pings.load(Ordering::SeqCst), 0);
    let mut c = rpc.client(&alice, id).unwrap();
    let opts = CallOptions::within(Nanos::ms(50));
    assert!(matches!(
        c.two_way::<_, ()>(99, &(), opts),
        Err(Error::OperationNotImplemented { operation: 99, .. })
    ));
    match c.two_way::<_, ()>(FAIL, &(), opts) {
        Err(Error::OperationFailed { message, .. }) => assert_eq!(message, "segment closed"),
        other => panic!("{other:?}"),
    }
    // A grant revoked while a client exists takes effect on its next call.
    let admin_grants = rt.security();
    admin_grants
        .grant(
            &admin,
            "eve",
            "example.ping",
            rtpm::Permissions::only(Permission::Execute),
        )
        .unwrap();
    let mut ce = rpc.client(&eve, id).unwrap();
    ce.one_way(PING, &(), opts).unwrap();
    admin_grants
        .revoke(
            &admin,
            "eve",
            "example.ping",
            rtpm::Permissions::only(Permission::Execute),
        )
        .unwrap();
    assert!(matches!(
        ce.one_way(PING, &(), opts),
        Err(Error::NotAllowed { .. })
    ));
    rt.logout(&alice).unwrap();
    assert!(matches!(
        c.one_way(PING, &(), opts),
        Err(Error::SessionClosed { .. })
    ));
}

#[test]
fn a_two_way_call_times_out_at_its_deadline() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let rpc = rt.rpc(&admin).unwrap();
    let id = ServiceId::from_name("example.ping");
    let (server, _, seen) = example();
    let reg = rpc
        .register_server(
            &admin,
            server,
            ServerSpec::new(Nanos::ms(1), Nanos::us(500)),
        )
        .unwrap();
    let mut busy = rpc.client(&admin, id).unwrap();
    let mut late = rpc.client(&admin, id).unwrap();
    // The server spends 150 ms on the first request; its caller gave it 20 ms.
    let t0 = std::time::Instant::now();
    let e = busy
        .two_way::<_, u64>(SLOW, &150u64, CallOptions::within(Nanos::ms(20)))
        .unwrap_err();
    let waited = t0.elapsed();
    assert!(
        matches!(e, Error::DeadlineExceeded { operation: SLOW, deadline, .. } if deadline == Nanos::ms(20)),
        "{e}"
    );
    assert!(
        waited >= Duration::from_millis(20),
        "returned before the deadline: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(140),
        "did not return at the deadline: {waited:?}"
    );
    // A second request queued behind it misses its deadline before the server takes it:
    // the caller is told at its deadline, and the server does not run it.
    let e = late
        .two_way::<_, u32>(ADD, &(1u32, 2u32), CallOptions::within(Nanos::ms(10)))
        .unwrap_err();
    assert!(
        matches!(e, Error::DeadlineExceeded { operation: ADD, .. }),
        "{e}"
    );
    wait_for("the server to take the late request", || {
        reg.stats().expired == 1
    });
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|s| s.budget_left || s.user.is_empty()),
        "an operation ran past its deadline"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "only the slow request ran");
    // The cells are reused: a later call gets its own reply, not a stale one.
    let sum: u32 = late
        .two_way(ADD, &(40u32, 2u32), CallOptions::within(Nanos::ms(200)))
        .unwrap();
    assert_eq!(sum, 42);
    // The slow job overran its 500 µs budget, and the executor saw it.
    let reports = rt.task_reports(&admin).unwrap();
    let task = reports
        .iter()
        .find(|t| t.name == "example.ping/requests")
        .unwrap();
    assert!(task.overruns >= 1, "{task:?}");
}

#[test]
fn a_server_that_does_not_fit_is_refused_with_the_reason_and_removal_frees_capacity() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let rpc = rt.rpc(&admin).unwrap();
    let id = ServiceId::from_name("example.ping");
    // 60 % of the RT core.
    let (server, _, _) = example();
    rpc.register_server(&admin, server, ServerSpec::new(Nanos::ms(10), Nanos::ms(6)))
        .unwrap();
    struct Other;
    impl RpcServer for Other {
        fn name(&self) -> &str {
            "example.other"
        }
        fn invoke(&self, _: &Request<'_>, _: &mut ReplyBuf<'_>) -> Result<(), OpError> {
            Ok(())
        }
    }
    let before = rt.services(&admin).unwrap().len();
    let e = rpc
        .register_server(&admin, Other, ServerSpec::new(Nanos::ms(10), Nanos::ms(6)))
        .unwrap_err();
    let text = e.to_string();
    match &e {
        Error::Refused { service, rejection } => {
            assert_eq!(service, "example.other");
            assert_eq!(rejection.task, "example.other/requests");
            assert!(text.contains(&rejection.reason_text()), "{text}");
        }
        other => panic!("expected an admission refusal, got {other}"),
    }
    assert!(
        text.starts_with("service `example.other` refused: admission refused its task"),
        "{text}"
    );
    assert_eq!(
        rt.services(&admin).unwrap().len(),
        before,
        "nothing of it stayed"
    );
    assert!(matches!(
        rpc.client(&admin, ServiceId::from_name("example.other")),
        Err(Error::ServiceNotFound { .. })
    ));
    // Removing the first server frees its capacity: the second now fits.
    rpc.unregister_server(&admin, id).unwrap();
    assert!(
        !rt.task_reports(&admin)
            .unwrap()
            .iter()
            .any(|t| t.name == "example.ping/requests"),
        "its task is gone"
    );
    rpc.register_server(&admin, Other, ServerSpec::new(Nanos::ms(10), Nanos::ms(6)))
        .unwrap();
    let mut c = rpc
        .client(&admin, ServiceId::from_name("example.other"))
        .unwrap();
    c.two_way::<_, ()>(1, &(), CallOptions::within(Nanos::ms(100)))
        .unwrap();
}
