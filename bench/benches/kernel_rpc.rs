//! Local two-way RPC round trip, on both local paths, each against its raw baseline
//! measured in the same run:
//!
//! - **on the caller** (`LocalCalls::OnCaller`, the collocated fast path): permission and
//!   session checks, header, postcard encode, the server's `invoke` through the endpoint,
//!   reply decode — against the same work done by hand (encode, a call through
//!   `&dyn Fn`, decode). Target: p50 ≤ 2 µs.
//! - **as jobs** (`LocalCalls::AsJobs`, the default): the request crosses to the RT core
//!   as a sporadic job of the server's task and the reply comes back — against a raw
//!   sporadic task of the same runtime's executor on the same core that answers through
//!   an atomic and a futex word, with the same spin-then-sleep wait. This path pays two
//!   cross-core wake-ups, which cost tens of µs on this VM (see RESULTS.md, issue 4).
//!
//! The pairs are measured alternately, in blocks, into HDR histograms, and their
//! percentiles printed; then criterion measures the mean of each. Needs SCHED_FIFO and two
//! CPUs. The machine is a shared 2-core VM: read the figures as same-run ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benches: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use rtpm::rpc::{
    CallOptions, Codec, LocalCalls, OpError, Postcard, ReplyBuf, Request, RpcClient, RpcServer,
    ServerSpec,
};
use rtpm::rt::exec::{Activator, Job, TaskOptions, TaskSpec, WakeWord};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{KernelContext, KernelService, Permissions, Runtime, Service, ServiceId};

const ECHO: u32 = 1;

/// The job path's servers take a request at most this often; calls are paced to it, so
/// no request is deferred by the minimum inter-arrival time and the figure is the hop.
const MIN_INTERARRIVAL: Nanos = Nanos::us(100);

/// Waits until 110 µs after `t` (more than [`MIN_INTERARRIVAL`]).
fn pace_from(t: rtpm::rt::time::Instant) {
    let until = t.add(Nanos::us(110));
    while MonotonicClock.now() < until {
        std::hint::spin_loop();
    }
}

struct Echo(&'static str);

impl RpcServer for Echo {
    fn name(&self) -> &str {
        self.0
    }
    fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        match req.operation() {
            ECHO => {
                let v: u64 = req.decode()?;
                reply.encode(&v)
            }
            _ => Err(OpError::NotImplemented),
        }
    }
}

/// The raw baseline of the job path: a sporadic task of the runtime's own executor that
/// writes the value back and wakes the caller.
struct RawEcho {
    reply: Arc<(AtomicU64, WakeWord)>,
    act: Option<Activator<u64>>,
}

impl Service for RawEcho {
    fn name(&self) -> &str {
        "bench.raw"
    }
}

impl KernelService for RawEcho {
    fn start(&mut self, ctx: &mut KernelContext<'_>) -> rtpm::Result<()> {
        let reply = Arc::clone(&self.reply);
        let (_, act) = ctx.sporadic(
            TaskSpec::sporadic("echo", MIN_INTERARRIVAL, Nanos::us(5)),
            TaskOptions::default().queue_capacity(64),
            move |_: &Job, v: u64| {
                reply.0.store(v, Ordering::Release);
                reply.1.wake();
            },
        )?;
        self.act = Some(act);
        Ok(())
    }
}

/// One raw round trip: activate, spin up to 20 µs, then sleep on the word.
fn raw_round_trip(act: &Activator<u64>, reply: &(AtomicU64, WakeWord), v: u64) {
    let clock = MonotonicClock;
    let t0 = clock.now();
    let spin_until = t0.add(Nanos::us(20));
    act.activate(v).unwrap();
    loop {
        let seen = reply.1.seq();
        if reply.0.load(Ordering::Acquire) == v {
            return;
        }
        if clock.now() < spin_until {
            std::hint::spin_loop();
            continue;
        }
        reply.1.wait(seen, Some(t0.add(Nanos::ms(100))));
    }
}

/// The raw baseline of the caller path: the same work without the kernel.
fn direct_round_trip(
    f: &dyn Fn(&[u8], &mut Vec<u8>),
    args: &mut Vec<u8>,
    out: &mut Vec<u8>,
    v: u64,
) -> u64 {
    args.clear();
    Postcard::encode(&v, args).unwrap();
    f(args, out);
    Postcard::decode::<u64>(out).unwrap()
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 36, 2).unwrap()
}

fn print(name: &str, h: &Histogram<u64>) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    println!(
        "  {name:<28} p50 {:>8.2} µs  p99 {:>8.2} µs  p99.9 {:>8.2} µs  max {:>9.2} µs  n {}",
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1e3,
        h.len()
    );
}

struct Setup {
    _runtime: Runtime,
    caller: RpcClient,
    jobs: RpcClient,
    raw: Arc<RawEcho>,
}

fn setup() -> Option<Setup> {
    let runtime = match Runtime::builder()
        .services(&[rtpm::config::ServiceKindName::Rpc])
        .user("bench", "bench", &[("*", Permissions::ALL)])
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("SKIPPED kernel_rpc: the runtime cannot start here: {e}");
            return None;
        }
    };
    let s = runtime.login("bench", "bench").ok()?;
    let rpc = runtime.rpc(&s).ok()?;
    rpc.register_server(
        &s,
        Echo("bench.echo.caller"),
        ServerSpec::new(Nanos::ms(1), Nanos::us(5)).local_calls(LocalCalls::OnCaller),
    )
    .unwrap();
    rpc.register_server(
        &s,
        Echo("bench.echo.jobs"),
        ServerSpec::new(MIN_INTERARRIVAL, Nanos::us(5)),
    )
    .unwrap();
    let raw = runtime
        .insert_kernel_service(
            &s,
            RawEcho {
                reply: Arc::new((AtomicU64::new(u64::MAX), WakeWord::new())),
                act: None,
            },
        )
        .unwrap();
    let caller = rpc
        .client(&s, ServiceId::from_name("bench.echo.caller"))
        .unwrap();
    let jobs = rpc
        .client(&s, ServiceId::from_name("bench.echo.jobs"))
        .unwrap();
    Some(Setup {
        _runtime: runtime,
        caller,
        jobs,
        raw,
    })
}

fn percentiles(st: &mut Setup) {
    let opts = CallOptions::within(Nanos::ms(100));
    let echo = |args: &[u8], out: &mut Vec<u8>| {
        let v: u64 = Postcard::decode(args).unwrap();
        out.clear();
        Postcard::encode(&v, out).unwrap();
    };
    let (mut args, mut out) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let clock = MonotonicClock;
    let (mut h_caller, mut h_direct, mut h_jobs, mut h_raw) = (hist(), hist(), hist(), hist());
    let act = st.raw.act.as_ref().unwrap();
    let reply = Arc::clone(&st.raw.reply);
    let mut v = 0u64;
    for _block in 0..10 {
        for _ in 0..20_000 {
            v += 1;
            let t = clock.now();
            let back: u64 = st.caller.two_way(ECHO, &v, opts).unwrap();
            h_caller.record(clock.now().since(t).get().max(1)).unwrap();
            assert_eq!(back, v);
            let t = clock.now();
            let back = direct_round_trip(&echo, &mut args, &mut out, v);
            h_direct.record(clock.now().since(t).get().max(1)).unwrap();
            assert_eq!(back, v);
        }
        for _ in 0..1_000 {
            v += 1;
            let t = clock.now();
            let back: u64 = st.jobs.two_way(ECHO, &v, opts).unwrap();
            h_jobs.record(clock.now().since(t).get().max(1)).unwrap();
            assert_eq!(back, v);
            pace_from(t);
            let t = clock.now();
            raw_round_trip(act, &reply, v);
            h_raw.record(clock.now().since(t).get().max(1)).unwrap();
            pace_from(t);
        }
    }
    println!("kernel_rpc: local two-way round trip (same run, alternating blocks)");
    print("rpc, on the caller", &h_caller);
    print("direct baseline", &h_direct);
    print("rpc, as jobs", &h_jobs);
    print("raw sporadic job baseline", &h_raw);
    let r = |a: &Histogram<u64>, b: &Histogram<u64>, q: f64| {
        a.value_at_quantile(q) as f64 / b.value_at_quantile(q).max(1) as f64
    };
    println!(
        "  ratios: on caller / direct p50 {:.2}, p99 {:.2}; as jobs / raw job p50 {:.2}, p99 {:.2}",
        r(&h_caller, &h_direct, 0.5),
        r(&h_caller, &h_direct, 0.99),
        r(&h_jobs, &h_raw, 0.5),
        r(&h_jobs, &h_raw, 0.99)
    );
    println!(
        "  target: rpc on the caller p50 ≤ 2 µs: {:.2} µs {}",
        h_caller.value_at_quantile(0.5) as f64 / 1e3,
        if h_caller.value_at_quantile(0.5) <= 2_000 {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn benches(c: &mut Criterion) {
    let Some(mut st) = setup() else { return };
    percentiles(&mut st);
    let opts = CallOptions::within(Nanos::ms(100));
    let mut g = c.benchmark_group("kernel_rpc");
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));
    let mut v = 1u64 << 40;
    g.bench_function("local_two_way_on_caller", |b| {
        b.iter(|| {
            v += 1;
            let r: u64 = st.caller.two_way(ECHO, &v, opts).unwrap();
            r
        })
    });
    let echo = |args: &[u8], out: &mut Vec<u8>| {
        let v: u64 = Postcard::decode(args).unwrap();
        out.clear();
        Postcard::encode(&v, out).unwrap();
    };
    let (mut args, mut out) = (Vec::with_capacity(64), Vec::with_capacity(64));
    g.bench_function("direct_baseline", |b| {
        b.iter(|| {
            v += 1;
            direct_round_trip(&echo, &mut args, &mut out, v)
        })
    });
    g.bench_function("local_two_way_as_jobs", |b| {
        b.iter_custom(|n| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..n {
                v += 1;
                let t = MonotonicClock.now();
                let r: u64 = st.jobs.two_way(ECHO, &v, opts).unwrap();
                total += MonotonicClock.now().since(t).to_duration();
                assert_eq!(r, v);
                pace_from(t);
            }
            total
        })
    });
    let act = st.raw.act.clone().unwrap();
    let reply = Arc::clone(&st.raw.reply);
    g.bench_function("raw_sporadic_job_baseline", |b| {
        b.iter_custom(|n| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..n {
                v += 1;
                let t = MonotonicClock.now();
                raw_round_trip(&act, &reply, v);
                total += MonotonicClock.now().since(t).to_duration();
                pace_from(t);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
