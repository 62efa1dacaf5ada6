//! `kernel_latency`: the kernel's RPC and event latencies, each beside a raw baseline
//! measured in the same run (issue 8's benchmark figures).
//!
//! - **local**: two-way RPC round trips in one runtime (collocated fast path, server run
//!   on the caller) — absolute p50, target ≤ 2 µs;
//! - **remote**: two-way RPC round trips between two runtimes of this process joined by
//!   an overlay on loopback (request and reply over the overlay, the request run as a job
//!   of the server's sporadic task), against a raw rtpm-net reactor UDP ping-pong on
//!   loopback (inline handlers) — ratio of p50s, target ≤ 1.3;
//! - **events**: publish → subscriber delivery latency of a topic across the same two
//!   runtimes (the subscriber's thread takes the sample), against a raw reactor one-way
//!   (sender thread → receiving reactor's inline handler) at the same pace — ratio of
//!   p99s, target ≤ 1.3; once from a plain thread, once from an admitted periodic task of
//!   a user service (the publish then runs inside the task's job).
//!
//! Needs SCHED_FIFO and two CPUs (the runtimes' executors). Prints a markdown table.
//!
//! Example: `cargo run --release -p rtpm-bench --bin kernel_latency -- --remote 2000`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use hdrhistogram::Histogram;
use rtpm::config::overlay_config;
use rtpm::event::{Publisher, PublisherQos, Subscriber, TopicQos};
use rtpm::network::{OverlaySpec, PeerRole};
use rtpm::rpc::{CallOptions, LocalCalls, OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::config::Partition;
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{
    Job, Permissions, QosClass, Runtime, Service, ServiceId, Session, TaskOptions, TaskSpec,
    UserContext, UserService,
};
use rtpm_net::{Sap, SapConfig, Transport};

fn now_ns() -> u64 {
    MonotonicClock.now().as_nanos()
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(10, 10_000_000_000, 3).unwrap()
}

fn row(name: &str, h: &Histogram<u64>) -> String {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    format!(
        "| {name} | {:.2} µs | {:.2} µs | {:.2} µs | {:.1} µs | {} |",
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1e3,
        h.len()
    )
}

struct Args {
    local: u64,
    remote: u64,
    events: u64,
    pace: Duration,
    burst: u32,
    /// Remote calls paced one per this (after the closed-loop run), if set.
    rpc_pace: Option<Duration>,
    /// The RT core's dispatch model.
    cooperative: bool,
}

fn args() -> Args {
    let mut a = Args {
        local: 200_000,
        remote: 2_000,
        events: 2_000,
        pace: Duration::from_millis(2),
        burst: 1,
        rpc_pace: None,
        cooperative: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut n = || -> u64 {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("kernel_latency: {x} takes a number");
                std::process::exit(2)
            })
        };
        match x.as_str() {
            "--local" => a.local = n(),
            "--remote" => a.remote = n(),
            "--events" => a.events = n(),
            "--pace-us" => a.pace = Duration::from_micros(n()),
            "--burst" => a.burst = n().clamp(1, 64) as u32,
            "--rpc-pace-us" => a.rpc_pace = Some(Duration::from_micros(n())),
            "--dispatch" => match it.next().as_deref() {
                Some("threads") => a.cooperative = false,
                Some("cooperative") => a.cooperative = true,
                other => {
                    eprintln!(
                        "kernel_latency: --dispatch takes `threads` or `cooperative`, not `{}`",
                        other.unwrap_or("")
                    );
                    std::process::exit(2)
                }
            },
            "-h" | "--help" => {
                println!(
                    "kernel_latency [--local N] [--remote N] [--events N] [--pace-us US] [--burst B]\n\
                     [--rpc-pace-us US] [--dispatch threads|cooperative]\n\
                     local/remote two-way RPC and remote event delivery, beside raw rtpm-net\n\
                     reactor baselines measured in the same run (needs SCHED_FIFO, 2 CPUs).\n\
                     --burst B: the overlay's receive and command tasks and the server's\n\
                     request task take up to B jobs per window of B x their minimum\n\
                     inter-arrival time (the same average rate as B = 1, in bursts).\n\
                     --rpc-pace-us US: also time remote calls made one per US (a periodic\n\
                     client), beside raw round trips at the same pace.\n\
                     --dispatch threads|cooperative: the RT core's model (default threads)."
                );
                std::process::exit(0);
            }
            _ => {
                eprintln!("kernel_latency: unknown argument `{x}` (see --help)");
                std::process::exit(2);
            }
        }
    }
    a
}

struct Echo;

impl RpcServer for Echo {
    fn name(&self) -> &str {
        "bench.echo"
    }
    fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        let n: u64 = req.decode()?;
        reply.encode(&n)
    }
}

struct LocalEcho;

impl RpcServer for LocalEcho {
    fn name(&self) -> &str {
        "bench.local-echo"
    }
    fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        let n: u64 = req.decode()?;
        reply.encode(&n)
    }
}

/// A user service whose periodic task publishes `0..n` on a topic, one per period: the
/// publish is carried out inside the task's job (as the demo's vehicles do).
struct PeriodicPublisher {
    publisher: Option<Publisher<u64>>,
    period: Nanos,
    n: u64,
}

impl Service for PeriodicPublisher {
    fn name(&self) -> &str {
        "bench.periodic-publisher"
    }
}

impl UserService for PeriodicPublisher {
    fn start(&mut self, ctx: &mut UserContext<'_>) -> rtpm::Result<()> {
        let mut p = self
            .publisher
            .take()
            .ok_or_else(|| rtpm::Error::Invalid("started twice".into()))?;
        let n = self.n;
        ctx.periodic(
            TaskSpec::periodic("publish", self.period, Nanos::us(50)),
            TaskOptions::default(),
            move |job: &Job| {
                if job.seq < n {
                    let _ = p.publish(&job.seq);
                }
            },
        )?;
        Ok(())
    }
}

/// Takes `n` samples (or gives up after 120 s) and records publication → take.
fn take_all(mut sub: Subscriber<u64>, n: u64) -> std::thread::JoinHandle<Histogram<u64>> {
    std::thread::spawn(move || {
        let mut h = hist();
        let t = StdInstant::now();
        while h.len() < n && t.elapsed() < Duration::from_secs(120) {
            sub.wait(Nanos::ms(50));
            while let Some(r) = sub.try_take().unwrap() {
                h.record(MonotonicClock.now().since(r.published).get().max(10))
                    .unwrap();
            }
        }
        h
    })
}

fn runtime(name: &str, p: &Partition) -> (Runtime, Session) {
    let r = Runtime::builder()
        .node_name(name)
        .partition(p.clone())
        .lock_memory(false)
        .user("bench", "bench", &[("*", Permissions::ALL)])
        .build()
        .unwrap();
    let s = r.login("bench", "bench").unwrap();
    (r, s)
}

/// The overlay both runtimes join: the lowest minimum inter-arrival times this
/// machine's admission accepts for the reliable class's receive task and the command
/// task (400 µs; see RESULTS.md).
fn overlay(burst: u32) -> OverlaySpec {
    let pid = std::process::id();
    let ia = Nanos::us(400 * u64::from(burst));
    let batch = 2 * burst;
    let text = format!(
        r#"
name = "bench"
multicast = "239.254.{}.{}:{}"
key = "unused"
heartbeat = "10ms"
[commands]
min_interarrival = "{ia}"
batch = {batch}
burst = {burst}
[[sap]]
address = "127.0.0.1:0"
class = 0
[[sap]]
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
min_interarrival = "{ia}"
batch = {batch}
burst = {burst}
"#,
        (pid >> 8) % 250,
        pid % 250 + 1,
        30000 + pid % 20000
    );
    OverlaySpec::new(overlay_config(&text).unwrap(), None)
        .key(rtpm::overlay::proto::security::OverlayKey([0x42; 32]))
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t = StdInstant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Raw rtpm-net UDP ping-pong on loopback, inline handlers: round trips.
fn raw_pingpong(count: u64) -> Histogram<u64> {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Sap::builder(SapConfig::new("kl-srv", Transport::Udp { bind: lo }))
        .inline(|m, out| {
            let _ = out.reply(&m.source, m.bytes);
        })
        .bind()
        .unwrap();
    let to = server.local_addr().unwrap();
    let warm = count / 10;
    let total = count + warm;
    let samples: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let (s2, d2) = (samples.clone(), done.clone());
    let client = Sap::builder(SapConfig::new("kl-cli", Transport::Udp { bind: lo }))
        .inline(move |m, out| {
            let t = now_ns();
            let i = d2.fetch_add(1, Ordering::Relaxed);
            let t0 = u64::from_le_bytes(m.bytes[..8].try_into().unwrap_or([0; 8]));
            if let Some(s) = s2.get(i) {
                s.store(t - t0, Ordering::Relaxed);
            }
            if (i as u64) + 1 < total {
                let mut b = [0u8; 64];
                b[..8].copy_from_slice(&now_ns().to_le_bytes());
                let _ = out.reply(&m.source, &b);
            }
        })
        .bind()
        .unwrap();
    let mut first = [0u8; 64];
    first[..8].copy_from_slice(&now_ns().to_le_bytes());
    client.send_to(to, &first).unwrap();
    wait("raw ping-pong", || {
        done.load(Ordering::Relaxed) as u64 >= total
    });
    let mut h = hist();
    for s in &samples[warm as usize..] {
        h.record(s.load(Ordering::Relaxed).max(10)).unwrap();
    }
    h
}

/// Raw rtpm-net UDP on loopback, one 64 B datagram every `pace` from a thread: with
/// `round_trip`, through the recording SAP to an echoing one and back (the recorder's
/// inline handler records the round trip); otherwise from a plain SAP to the recorder
/// (its inline handler records the one-way time).
fn raw_paced(count: u64, pace: Duration, round_trip: bool) -> Histogram<u64> {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let samples: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let (s2, d2) = (samples.clone(), done.clone());
    let recorder = Sap::builder(SapConfig::new("kl-rec", Transport::Udp { bind: lo }))
        .inline(move |m, _out| {
            let t = now_ns();
            let t0 = u64::from_le_bytes(m.bytes[..8].try_into().unwrap_or([0; 8]));
            let i = d2.fetch_add(1, Ordering::Relaxed);
            if let Some(s) = s2.get(i) {
                s.store(t - t0, Ordering::Relaxed);
            }
        })
        .bind()
        .unwrap();
    let other = Sap::builder(SapConfig::new("kl-other", Transport::Udp { bind: lo }))
        .inline(move |m, out| {
            if round_trip {
                let _ = out.reply(&m.source, m.bytes);
            }
        })
        .bind()
        .unwrap();
    let (from, to) = if round_trip {
        (&recorder, other.local_addr().unwrap())
    } else {
        (&other, recorder.local_addr().unwrap())
    };
    for _ in 0..count {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(&now_ns().to_le_bytes());
        from.send_to(to, &b).unwrap();
        std::thread::sleep(pace);
    }
    wait("raw paced datagrams", || {
        done.load(Ordering::Relaxed) as u64 >= count
    });
    let mut h = hist();
    for s in samples.iter() {
        h.record(s.load(Ordering::Relaxed).max(10)).unwrap();
    }
    h
}

fn main() {
    let a = args();
    let date = std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // computed before the first runtime confines this process's threads off the RT core
    let mut p = Partition::embedded_default().unwrap();
    for c in p
        .cores
        .iter_mut()
        .filter(|c| c.role == rtpm::rt::config::Role::Rt)
    {
        if a.cooperative {
            c.dispatch = rtpm::rt::config::Dispatch::Cooperative;
        }
    }
    let (ra, sa) = runtime("bench-a", &p);
    let (rb, sb) = runtime("bench-b", &p);

    // local: collocated fast path
    let rpc_a = ra.rpc(&sa).unwrap();
    rpc_a
        .register_server(
            &sa,
            LocalEcho,
            ServerSpec::new(Nanos::ms(1), Nanos::us(5)).local_calls(LocalCalls::OnCaller),
        )
        .unwrap();
    let mut local = rpc_a
        .client(&sa, ServiceId::from_name("bench.local-echo"))
        .unwrap();
    let opts = CallOptions::within(Nanos::ms(100));
    let mut h_local = hist();
    for i in 0..a.local {
        let t = now_ns();
        let back: u64 = local.two_way(1, &i, opts).unwrap();
        h_local.record((now_ns() - t).max(10)).unwrap();
        assert_eq!(back, i);
    }
    eprintln!("local: {} calls", a.local);
    drop(local);
    rpc_a
        .unregister_server(&sa, ServiceId::from_name("bench.local-echo"))
        .unwrap();

    // remote: two runtimes joined by the overlay
    rpc_a
        .register_server(
            &sa,
            Echo,
            ServerSpec::new(Nanos::us(200 * u64::from(a.burst)), Nanos::us(40)).burst(a.burst),
        )
        .unwrap();
    let na = ra
        .get_network(&sa, ra.insert_network(&sa, overlay(a.burst)).unwrap())
        .unwrap();
    let nb = rb
        .get_network(&sb, rb.insert_network(&sb, overlay(a.burst)).unwrap())
        .unwrap();
    wait("both join one cell", || {
        matches!(na.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
            && matches!(nb.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
            && na.membership().cell().map(|c| c.cell) == nb.membership().cell().map(|c| c.cell)
    });
    let rpc_b = rb.rpc(&sb).unwrap();
    let mut remote = None;
    wait("the remote server is found", || {
        remote = rpc_b.client(&sb, ServiceId::from_name("bench.echo")).ok();
        remote.is_some()
    });
    let mut remote = remote.unwrap();
    assert!(remote.is_remote());
    let warm = a.remote / 10;
    let mut h_remote = hist();
    let mut failed = 0;
    for i in 0..a.remote + warm {
        let t = now_ns();
        match remote.two_way::<_, u64>(1, &i, opts) {
            Ok(back) => {
                assert_eq!(back, i);
                if i >= warm {
                    h_remote.record((now_ns() - t).max(10)).unwrap();
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("remote call {i}: {e}");
            }
        }
    }
    eprintln!("remote: {} calls, {failed} failed", a.remote + warm);
    let h_raw_pp = raw_pingpong(a.remote.max(1000));
    eprintln!("raw ping-pong done");
    let paced = a.rpc_pace.map(|pace| {
        let mut h = hist();
        for i in 0..a.remote {
            let t = now_ns();
            match remote.two_way::<_, u64>(1, &i, opts) {
                Ok(back) => {
                    assert_eq!(back, i);
                    h.record((now_ns() - t).max(10)).unwrap();
                }
                Err(e) => eprintln!("paced remote call {i}: {e}"),
            }
            std::thread::sleep(pace);
        }
        let raw = raw_paced(a.remote, pace, true);
        eprintln!("paced remote calls and raw round trips done");
        (pace, h, raw)
    });

    // events: publisher in a, subscriber in b
    let qos = TopicQos {
        class: QosClass::RELIABLE,
        depth: 1024,
    };
    let ev_a = ra.events(&sa).unwrap();
    let ev_b = rb.events(&sb).unwrap();
    let sub = ev_b.subscriber::<u64>(&sb, "bench.topic", qos).unwrap();
    let mut publ = ev_a
        .publisher::<u64>(&sa, "bench.topic", qos, PublisherQos::default())
        .unwrap();
    wait("the subscription reaches the publisher", || {
        ev_a.topics().iter().any(|t| t.remote_subscribers == 1)
    });
    let n = a.events;
    let pace = a.pace;
    let taker = take_all(sub, n);
    for i in 0..n {
        publ.publish(&i).unwrap();
        std::thread::sleep(pace);
    }
    let h_events = taker.join().unwrap();
    eprintln!("events: {} of {n} delivered", h_events.len());

    // the same from an admitted periodic task of a user service in a
    let sub = ev_b
        .subscriber::<u64>(&sb, "bench.topic-task", qos)
        .unwrap();
    let task_publisher = ev_a
        .publisher::<u64>(&sa, "bench.topic-task", qos, PublisherQos::default())
        .unwrap();
    wait(
        "the task topic's subscription reaches the publisher",
        || {
            ev_a.topics()
                .iter()
                .any(|t| t.name == "bench.topic-task" && t.remote_subscribers == 1)
        },
    );
    let taker = take_all(sub, n);
    let service = ra
        .insert_user_service(
            &sa,
            PeriodicPublisher {
                publisher: Some(task_publisher),
                period: Nanos::from_duration(pace),
                n,
            },
        )
        .unwrap();
    let h_task_events = taker.join().unwrap();
    ra.remove_user_service(&sa, service.id()).unwrap();
    eprintln!(
        "events from a periodic task: {} of {n} delivered",
        h_task_events.len()
    );
    let h_raw_ow = raw_paced(n, pace, false);
    drop(publ);
    drop(rb);
    drop(ra);

    let r = |x: &Histogram<u64>, y: &Histogram<u64>, q: f64| {
        x.value_at_quantile(q) as f64 / y.value_at_quantile(q) as f64
    };
    println!(
        "kernel_latency, {date}; RT core: {}",
        if a.cooperative {
            "cooperative"
        } else {
            "threads"
        }
    );
    println!();
    println!("| path | p50 | p99 | p99.9 | max | n |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("{}", row("local two-way RPC (on the caller)", &h_local));
    println!("{}", row("remote two-way RPC over the overlay", &h_remote));
    println!("{}", row("raw reactor UDP ping-pong (baseline)", &h_raw_pp));
    if let Some((pace, h, raw)) = &paced {
        let us = pace.as_micros();
        println!(
            "{}",
            row(&format!("remote two-way RPC, one per {us} µs"), h)
        );
        println!(
            "{}",
            row(
                &format!("raw reactor UDP round trip, one per {us} µs (baseline)"),
                raw
            )
        );
    }
    println!("{}", row("remote event publish → subscriber", &h_events));
    println!(
        "{}",
        row(
            "remote event, published by a periodic task → subscriber",
            &h_task_events
        )
    );
    println!("{}", row("raw reactor UDP one-way (baseline)", &h_raw_ow));
    println!();
    println!("| figure | value | target |");
    println!("|---|---:|---|");
    let p50_local = h_local.value_at_quantile(0.5) as f64 / 1e3;
    println!(
        "| local two-way p50 | {p50_local:.2} µs | ≤ 2 µs {} |",
        if p50_local <= 2.0 { "✓" } else { "✗" }
    );
    let rr = r(&h_remote, &h_raw_pp, 0.5);
    println!(
        "| remote two-way p50 ÷ raw ping-pong p50 | {rr:.2} | ≤ 1.3 {} |",
        if rr <= 1.3 { "✓" } else { "✗" }
    );
    let re = r(&h_events, &h_raw_ow, 0.99);
    println!(
        "| event delivery p99 ÷ raw one-way p99 | {re:.2} | ≤ 1.3 {} |",
        if re <= 1.3 { "✓" } else { "✗" }
    );
    let rt = r(&h_task_events, &h_raw_ow, 0.99);
    println!(
        "| event delivery p99 ÷ raw one-way p99, periodic-task publisher | {rt:.2} | ≤ 1.3 {} |",
        if rt <= 1.3 { "✓" } else { "✗" }
    );
    if let Some((pace, h, raw)) = &paced {
        let rp = r(h, raw, 0.5);
        println!(
            "| remote two-way p50 ÷ raw round trip p50, one per {} µs | {rp:.2} | ≤ 1.3 {} |",
            pace.as_micros(),
            if rp <= 1.3 { "✓" } else { "✗" }
        );
    }
}
