//! The kernel's hot paths allocate nothing: a counting global allocator counts every
//! allocation, reallocation and free made, while armed, by the calling thread or on the
//! RT CPU, across thousands of local two-way RPC calls on both paths (on the caller, and
//! as jobs of the server's task on the RT core) and of event publishes and takes. Warm-up
//! calls come first (a thread's first lock-free table read may set up its own state).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use exec_common::{current_cpu, rt_cpu};
use kernel_common::*;
use rtpm::ServiceId;
use rtpm::event::{PublisherQos, TopicQos};
use rtpm::rpc::{CallOptions, LocalCalls, OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::time::Nanos;
use rtpm_tests::alloc::Counting;
use rtpm_tests::skip_unless;

static ARMED: AtomicBool = AtomicBool::new(false);
static RT: AtomicUsize = AtomicUsize::new(usize::MAX);
static COUNTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static HERE: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if ARMED.load(Ordering::Relaxed)
        && (HERE.with(Cell::get) || current_cpu() == RT.load(Ordering::Relaxed))
    {
        COUNTED.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting::new(count);

struct Echo(&'static str);

impl RpcServer for Echo {
    fn name(&self) -> &str {
        self.0
    }
    fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        let v: (u64, f64) = req.decode()?;
        reply.encode(&v)
    }
}

/// Runs `f` with counting armed for this thread and the RT CPU; the count.
fn counted(f: impl FnOnce()) -> u64 {
    COUNTED.store(0, Ordering::SeqCst);
    HERE.with(|h| h.set(true));
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    HERE.with(|h| h.set(false));
    COUNTED.load(Ordering::SeqCst)
}

#[test]
fn rpc_and_event_hot_paths_allocate_nothing() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    RT.store(rt_cpu(), Ordering::Relaxed);
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let rpc = rt.rpc(&admin).unwrap();
    rpc.register_server(
        &admin,
        Echo("alloc.caller"),
        ServerSpec::new(Nanos::ms(1), Nanos::us(20)).local_calls(LocalCalls::OnCaller),
    )
    .unwrap();
    rpc.register_server(
        &admin,
        Echo("alloc.jobs"),
        ServerSpec::new(Nanos::us(100), Nanos::us(20)),
    )
    .unwrap();
    let opts = CallOptions::within(Nanos::ms(200));
    for (name, calls) in [("alloc.caller", 20_000u64), ("alloc.jobs", 2_000)] {
        let mut c = rpc.client(&admin, ServiceId::from_name(name)).unwrap();
        for i in 0..100u64 {
            let _: (u64, f64) = c.two_way(1, &(i, 0.5), opts).unwrap();
            c.one_way(1, &(i, 0.5), opts).unwrap();
        }
        let n = counted(|| {
            for i in 0..calls {
                let r: (u64, f64) = c.two_way(1, &(i, 0.5), opts).unwrap();
                assert_eq!(r.0, i);
            }
        });
        assert_eq!(n, 0, "{name}: {n} allocations in {calls} two-way calls");
    }

    let events = rt.events(&admin).unwrap();
    let qos = TopicQos::default();
    let mut sub = events
        .subscriber::<(u32, f64, f64)>(&admin, "alloc", qos)
        .unwrap();
    let mut publisher = events
        .publisher::<(u32, f64, f64)>(
            &admin,
            "alloc",
            qos,
            PublisherQos {
                deadline: Some(Nanos::ms(100)),
                lease: Some(Nanos::ms(500)),
            },
        )
        .unwrap();
    for i in 0..100u32 {
        publisher.publish(&(i, 1.0, 2.0)).unwrap();
        sub.try_take().unwrap().unwrap();
    }
    let n = counted(|| {
        for i in 0..20_000u32 {
            assert_eq!(publisher.publish(&(i, 1.0, 2.0)).unwrap(), 1);
            let r = sub.try_take().unwrap().unwrap();
            assert_eq!(r.value.0, i);
        }
    });
    assert_eq!(n, 0, "{n} allocations in 20000 publishes and takes");
}
