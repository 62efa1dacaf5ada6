//! Remote RPC: two runtimes of one process joined by an overlay on loopback. The client
//! runtime resolves a server registered in the other runtime through discovery and calls
//! it with the same API as a local one: one-way and two-way, each carrying the caller's
//! identity, deadline and QoS class; the server runs each request as a job of its request
//! task and checks the caller's permission on its own node (`NotAllowed`); a two-way call
//! whose reply comes too late ends with `DeadlineExceeded` at its deadline (and the late
//! reply does not confuse the next call); an unknown id is `ServiceNotFound`; a server
//! whose network has been removed is `ServiceNotAvailable`; a server registered before
//! the network was inserted is served on it too. Needs SCHED_FIFO and two CPUs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kernel_common::overlay::{join, partition, wait};
use kernel_common::{exclusive, fifo_allowed, two_cpus};
use rtpm::rpc::{CallOptions, OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::config::Partition;
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{Error, NodeId, Permission, Permissions, QosClass, Runtime, ServiceId};
use rtpm_tests::skip_unless;

const ECHO: u32 = 1;
const SLOW: u32 = 2;
const COUNT: u32 = 3;
const WHO: u32 = 4;

#[derive(Default)]
struct Echo {
    counted: AtomicU64,
    seen: Mutex<Vec<(String, NodeId, QosClass, bool)>>,
}

impl RpcServer for Echo {
    fn name(&self) -> &str {
        "test.remote.echo"
    }
    fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        match req.operation() {
            ECHO => {
                let s: String = req.decode()?;
                reply.encode(&s)
            }
            SLOW => {
                std::thread::sleep(Duration::from_millis(5));
                reply.encode(&"late")
            }
            COUNT => {
                self.counted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            WHO => {
                let c = req.caller();
                self.seen.lock().unwrap().push((
                    c.user.to_string(),
                    c.node,
                    req.qos(),
                    req.is_one_way(),
                ));
                let left = req.deadline().since(MonotonicClock.now());
                reply.encode(&left.get())
            }
            _ => Err(OpError::NotImplemented),
        }
    }
}

fn use_all() -> Permissions {
    Permissions::only(Permission::Execute)
        .with(Permission::Publish)
        .with(Permission::Subscribe)
}

/// `mallory` may execute everything on the client's node and nothing on the server's.
fn runtime(name: &str, partition: &Partition, mallory: Permissions) -> Runtime {
    Runtime::builder()
        .node_name(name)
        .partition(partition.clone())
        .lock_memory(false)
        .user("admin", "admin passphrase", &[("*", Permissions::ALL)])
        .user("alice", "alice passphrase", &[("*", use_all())])
        .user("mallory", "mallory passphrase", &[("*", mallory)])
        .build()
        .unwrap()
}

#[test]
fn remote_rpc_one_way_two_way_deadline_permission_and_not_found() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let p = partition();
    let server = runtime("remote-server", &p, Permissions::NONE);
    let client = runtime("remote-client", &p, use_all());
    let (sa, sb) = (
        server.login("admin", "admin passphrase").unwrap(),
        client.login("admin", "admin passphrase").unwrap(),
    );
    // registered before the overlay is inserted: served on it once it is
    let rpc_s = server.rpc(&sa).unwrap();
    let svc = rpc_s
        .register_server(
            &sa,
            Echo::default(),
            ServerSpec::new(Nanos::us(200), Nanos::us(50)),
        )
        .unwrap();
    let (na, nb) = join(&server, &sa, &client, &sb, 1);
    let id = ServiceId::from_name("test.remote.echo");
    let alice = client.login("alice", "alice passphrase").unwrap();
    let rpc_c = client.rpc(&alice).unwrap();
    let mut c = None;
    wait(
        "the client finds the server through discovery",
        || match rpc_c.client(&alice, id) {
            Ok(x) => {
                c = Some(x);
                true
            }
            Err(Error::ServiceNotFound { .. }) => false,
            Err(e) => panic!("{e}"),
        },
    );
    let mut c = c.unwrap();
    assert!(c.is_remote());
    assert_eq!(c.remote_node(), Some(server.node().1));
    assert_eq!(c.network(), Some("remote1"));

    // two-way, with the caller's identity, class and deadline carried across
    let within = CallOptions::within(Nanos::ms(500));
    // on a failure, what each side counted (a lost message shows here)
    let counters = || {
        format!(
            "server {:?}\nserver node {:?}\nclient node {:?}",
            svc.stats(),
            na.report().map(|r| r.counters),
            nb.report().map(|r| r.counters)
        )
    };
    let got: String = c
        .two_way(ECHO, "over the overlay", within)
        .unwrap_or_else(|e| panic!("{e}\n{}", counters()));
    assert_eq!(got, "over the overlay");
    for i in 0..200 {
        let s = format!("n{i}");
        let back: String = c
            .two_way(ECHO, &s, within)
            .unwrap_or_else(|e| panic!("call {i}: {e}\n{}", counters()));
        assert_eq!(back, s);
    }
    let left: u64 = c
        .two_way(
            WHO,
            &(),
            CallOptions::within(Nanos::ms(300)).qos(QosClass::BEST_EFFORT),
        )
        .unwrap();
    assert!(left > 0 && left <= Nanos::ms(300).get(), "{left}");
    let seen = svc.server().seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            "alice".to_string(),
            client.node().1,
            QosClass::BEST_EFFORT,
            false
        )]
    );
    assert!(matches!(
        c.two_way::<_, ()>(99, &(), within),
        Err(Error::OperationNotImplemented { operation: 99, .. })
    ));

    // one-way
    for _ in 0..10 {
        c.one_way(COUNT, &(), within).unwrap();
    }
    wait("ten one-way requests ran on the server", || {
        svc.server().counted.load(Ordering::Relaxed) == 10
    });
    let st = svc.stats();
    assert!(st.remote >= 213, "{st:?}");
    assert_eq!((st.not_allowed, st.replies_unsent), (0, 0));

    // a two-way call whose reply comes after its deadline: DeadlineExceeded at the
    // deadline; the late reply is discarded by the next call
    let t = Instant::now();
    let r = c.two_way::<_, String>(SLOW, &(), CallOptions::within(Nanos::ms(2)));
    assert!(
        matches!(
            r,
            Err(Error::DeadlineExceeded {
                operation: SLOW,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(20));
    let got: String = c.two_way(ECHO, "after", within).unwrap();
    assert_eq!(got, "after");

    // the server's node does not let mallory execute it, though the client's node does
    let mallory = client.login("mallory", "mallory passphrase").unwrap();
    let mut m = rpc_c.client(&mallory, id).unwrap();
    assert!(m.is_remote());
    match m.two_way::<_, String>(ECHO, "x", within) {
        Err(Error::NotAllowed {
            user, permission, ..
        }) => assert_eq!(
            (user.as_str(), permission),
            ("mallory", Permission::Execute)
        ),
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    assert_eq!(svc.stats().not_allowed, 1);

    // an id nobody serves
    assert!(matches!(
        rpc_c.client(&alice, ServiceId::from_name("test.remote.nobody")),
        Err(Error::ServiceNotFound { .. })
    ));

    // local calls in the server's runtime still take the fast path
    let mut local = rpc_s.client(&sa, id).unwrap();
    assert!(!local.is_remote());
    let got: String = local.two_way(ECHO, "local", within).unwrap();
    assert_eq!(got, "local");

    // the client's network goes: the resolved server is not available any more
    client.remove_network(&sb, nb.id()).unwrap();
    assert!(matches!(
        c.two_way::<_, String>(ECHO, "gone", within),
        Err(Error::ServiceNotAvailable { .. })
    ));
    assert!(matches!(
        rpc_c.client(&alice, id),
        Err(Error::ServiceNotFound { .. })
    ));
    drop(client);
    drop(server);
}
