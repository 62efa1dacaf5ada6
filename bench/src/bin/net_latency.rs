//! `net_latency`: the network layer's latency and throughput, each against a baseline of
//! plain blocking std sockets measured in the same run, on the same cores.
//!
//! Figures are ratios to that baseline (the reference machine is a noisy shared 2-core
//! VM). Server threads run on CPU 0, client threads on CPU 1 (the last allowed CPU), for
//! the baseline and for rtpm-net alike. Latencies are HDR percentiles of round trips
//! (or of reactor→consumer hand-offs).

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use rtpm_net::{BackendChoice, Cores, DropPolicy, Layout, Mode, Sap, SapConfig, Transport};
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::thread::{Policy, ThreadBuilder};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

/// Measures rtpm-net against blocking std sockets (same run, same cores).
///
/// Examples:
///   net_latency pingpong --transport udp --mode park
///   net_latency pingpong --transport tcp --mode busy-poll --count 50000
///   net_latency throughput --transport udp --size 1024 --seconds 2 --repeat 5
///   net_latency handoff --consumer park
///   net_latency layout
///   net_latency all            # every figure of bench/RESULTS.md, as markdown
#[derive(Parser, Debug)]
#[command(name = "net_latency", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Reactor backend for rtpm-net.
    #[arg(long, value_enum, default_value_t = Backend::Auto, global = true)]
    backend: Backend,
    /// Run every measured thread (baseline and rtpm-net) SCHED_FIFO at this priority
    /// (1..=99); default SCHED_OTHER.
    #[arg(long, global = true, value_parser = clap::value_parser!(u8).range(1..=99))]
    fifo: Option<u8>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Round trips of one message in flight: p50/p99/p99.9/max, rtpm-net vs std.
    Pingpong {
        /// UDP datagrams or TCP length-prefixed frames.
        #[arg(long, value_enum, default_value_t = Proto::Udp)]
        transport: Proto,
        /// rtpm-net pool threads park in the kernel or busy-poll.
        #[arg(long, value_enum, default_value_t = Wait::Park)]
        mode: Wait,
        /// Round trips measured (after 10% warm-up).
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Payload bytes (at least 8: a timestamp rides in it).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=1400))]
        size: u64,
        /// Alternate baseline and rtpm-net this many times (pooled), to share the drift.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        repeat: u64,
    },
    /// One-way messages per second counted at the receiver, with the sender's rate and
    /// the receiver's kernel drops: rtpm-net (batched sends; UDP with and without
    /// GSO/GRO) vs std (one call per message), alternated `repeat` times.
    Throughput {
        /// UDP datagrams or TCP length-prefixed frames.
        #[arg(long, value_enum, default_value_t = Proto::Udp)]
        transport: Proto,
        /// Payload bytes.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1400))]
        size: u64,
        /// Seconds per side.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        /// Rounds of baseline and rtpm-net, alternated (median and spread reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        repeat: u64,
    },
    /// Reactor → consumer-thread hand-off latency (received_at → popped).
    Handoff {
        /// The consumer parks on its doorbell (futex) or spins on the queue.
        #[arg(long, value_enum, default_value_t = Consume::Park)]
        consumer: Consume,
        /// Messages measured.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
    },
    /// Shared ring (leader/followers) vs one ring per thread (SO_REUSEPORT), 2 threads.
    Layout {
        /// Round trips for the latency part.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Seconds for the throughput part.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
    },
    /// Everything above, printed as the markdown of bench/RESULTS.md.
    All {
        /// Round trips per latency figure.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Alternations of baseline and rtpm-net per ping-pong figure.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        repeat: u64,
        /// Seconds per throughput figure.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    Udp,
    Tcp,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Wait {
    Park,
    BusyPoll,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Consume {
    Park,
    Spin,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Auto,
    IoUring,
    Epoll,
}

struct Env {
    backend: BackendChoice,
    fifo: Option<u8>,
    server_cpu: usize,
    client_cpu: usize,
}

type Res<T> = Result<T, String>;

fn now_ns() -> u64 {
    MonotonicClock.now().as_nanos()
}

fn policy(env: &Env) -> Policy {
    match env.fifo {
        Some(p) => Policy::Fifo { priority: p },
        None => Policy::Other { nice: 0 },
    }
}

fn spawn<T: Send + 'static>(
    env: &Env,
    name: &str,
    cpu: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Res<rtpm_rt::thread::RtThread<T>> {
    ThreadBuilder::new(name)
        .policy(policy(env))
        .affinity(CpuSet::single(cpu))
        .spawn(f)
        .map_err(|e| format!("starting {name}: {e}"))
}

struct Lat {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    n: u64,
}

impl Lat {
    fn of(h: &Histogram<u64>) -> Lat {
        let us = |v: u64| v as f64 / 1000.0;
        Lat {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            n: h.len(),
        }
    }
    fn row(&self, what: &str, base: Option<&Lat>) -> String {
        let ratio = base.map_or("1.00 (baseline)".to_string(), |b| {
            format!("{:.2}", self.p50 / b.p50)
        });
        format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {ratio} |",
            self.p50, self.p99, self.p999, self.max, self.n
        )
    }
}

fn hist() -> Res<Histogram<u64>> {
    Histogram::new_with_bounds(100, 10_000_000_000, 3).map_err(|e| e.to_string())
}

fn record(samples: &[AtomicU64], n: usize) -> Res<Histogram<u64>> {
    let mut h = hist()?;
    for s in &samples[..n] {
        let v = s.load(Ordering::Relaxed).clamp(100, 10_000_000_000);
        h.record(v).map_err(|e| e.to_string())?;
    }
    Ok(h)
}

// ---------------------------------------------------------------- CPU accounting

/// `(on-CPU ns, run-queue wait ns, time slices)` of a thread, from its schedstat.
fn schedstat(path: &str) -> Option<[u64; 3]> {
    let t = std::fs::read_to_string(path).ok()?;
    let mut it = t.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The calling thread's schedstat.
fn my_schedstat() -> [u64; 3] {
    schedstat("/proc/thread-self/schedstat").unwrap_or([0; 3])
}

/// Summed schedstat of this process's threads whose name starts with `prefix`.
fn threads_schedstat(prefix: &str) -> [u64; 3] {
    let mut sum = [0u64; 3];
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return sum;
    };
    for e in dir.flatten() {
        let p = e.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix)
            && let Some(v) = schedstat(&p.join("schedstat").to_string_lossy())
        {
            for i in 0..3 {
                sum[i] += v[i];
            }
        }
    }
    sum
}

fn cpu_line(what: &str, srv: [u64; 3], cli: [u64; 3], hops: u64) -> String {
    let per = |v: u64| v as f64 / 1000.0 / hops.max(1) as f64;
    format!(
        "  {what}: per round trip: server on-CPU {:.1} µs (run-queue wait {:.1} µs, {:.2} slices), client on-CPU {:.1} µs (wait {:.1} µs, {:.2} slices)",
        per(srv[0]),
        per(srv[1]),
        srv[2] as f64 / hops.max(1) as f64,
        per(cli[0]),
        per(cli[1]),
        cli[2] as f64 / hops.max(1) as f64
    )
}

// ---------------------------------------------------------------- baseline ping-pong

fn base_pingpong(env: &Env, proto: Proto, count: u64, size: usize) -> Res<Histogram<u64>> {
    let warm = count / 10;
    let total = (count + warm) as usize;
    match proto {
        Proto::Udp => {
            let server = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let to = server.local_addr().map_err(|e| e.to_string())?;
            let srv = spawn(env, "base-srv", env.server_cpu, move || {
                let mut buf = [0u8; 2048];
                let s0 = my_schedstat();
                for _ in 0..total {
                    let Ok((n, from)) = server.recv_from(&mut buf) else {
                        return [0; 3];
                    };
                    let _ = server.send_to(&buf[..n], from);
                }
                let s1 = my_schedstat();
                [s1[0] - s0[0], s1[1] - s0[1], s1[2] - s0[2]]
            })?;
            let size2 = size;
            let cli = spawn(
                env,
                "base-cli",
                env.client_cpu,
                move || -> Res<(Histogram<u64>, [u64; 3])> {
                    let c = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                    c.connect(to).map_err(|e| e.to_string())?;
                    let mut h = hist()?;
                    let mut buf = vec![0u8; size2];
                    let mut rx = [0u8; 2048];
                    let s0 = my_schedstat();
                    for i in 0..total {
                        let t0 = now_ns();
                        buf[..8].copy_from_slice(&t0.to_le_bytes());
                        c.send(&buf).map_err(|e| e.to_string())?;
                        c.recv(&mut rx).map_err(|e| e.to_string())?;
                        if i as u64 >= warm {
                            h.record((now_ns() - t0).max(100))
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    let s1 = my_schedstat();
                    Ok((h, [s1[0] - s0[0], s1[1] - s0[1], s1[2] - s0[2]]))
                },
            )?;
            let (h, c) = cli.join().map_err(|_| "baseline client panicked")??;
            let s = srv.join().unwrap_or([0; 3]);
            eprintln!("{}", cpu_line("std", s, c, total as u64));
            Ok(h)
        }
        Proto::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let to = l.local_addr().map_err(|e| e.to_string())?;
            let srv = spawn(env, "base-srv", env.server_cpu, move || {
                let Ok((s, _)) = l.accept() else { return };
                let _ = s.set_nodelay(true);
                let mut w = match s.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let mut r = BufReader::new(s);
                let mut frame = vec![0u8; 4 + 2048];
                for _ in 0..total {
                    if r.read_exact(&mut frame[..4]).is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
                    if r.read_exact(&mut frame[4..4 + n]).is_err() {
                        return;
                    }
                    let _ = w.write_all(&frame[..4 + n]);
                }
            })?;
            let cli = spawn(
                env,
                "base-cli",
                env.client_cpu,
                move || -> Res<Histogram<u64>> {
                    let s = TcpStream::connect(to).map_err(|e| e.to_string())?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    let mut w = s.try_clone().map_err(|e| e.to_string())?;
                    let mut r = BufReader::new(s);
                    let mut h = hist()?;
                    let mut frame = vec![0u8; 4 + size];
                    frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
                    let mut rx = vec![0u8; 4 + size];
                    for i in 0..total {
                        let t0 = now_ns();
                        frame[4..12].copy_from_slice(&t0.to_le_bytes());
                        w.write_all(&frame).map_err(|e| e.to_string())?;
                        r.read_exact(&mut rx).map_err(|e| e.to_string())?;
                        if i as u64 >= warm {
                            h.record((now_ns() - t0).max(100))
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(h)
                },
            )?;
            let h = cli.join().map_err(|_| "baseline client panicked")??;
            let _ = srv.join();
            Ok(h)
        }
    }
}

// ---------------------------------------------------------------- rtpm-net ping-pong

fn sap_cfg(env: &Env, name: &str, t: Transport, cpu: usize, mode: Wait) -> SapConfig {
    let mut c = SapConfig::new(name, t);
    c.backend = env.backend;
    c.qos.cores = Cores::List(vec![cpu]);
    c.qos.priority = env.fifo.unwrap_or(0);
    c.qos.mode = match mode {
        Wait::Park => Mode::Park,
        Wait::BusyPoll => Mode::BusyPoll,
    };
    c.qos.spin = Nanos::ms(2);
    c
}

fn net_pingpong(
    env: &Env,
    proto: Proto,
    mode: Wait,
    count: u64,
    size: usize,
    layout: Layout,
    threads: u32,
) -> Res<(Histogram<u64>, String)> {
    let warm = count / 10;
    let total = count + warm;
    let lo: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "addr")?;
    let (st, ct) = match proto {
        Proto::Udp => (Transport::Udp { bind: lo }, Transport::Udp { bind: lo }),
        Proto::Tcp => (
            Transport::Tcp { bind: Some(lo) },
            Transport::Tcp { bind: None },
        ),
    };
    let mut scfg = sap_cfg(env, "pp-srv", st, env.server_cpu, mode);
    scfg.layout = layout;
    scfg.qos.threads = threads;
    if threads > 1 {
        scfg.qos.cores = Cores::List(vec![env.server_cpu, env.client_cpu]);
    }
    let server = Sap::builder(scfg)
        .inline(|m, out| {
            let _ = out.reply(&m.source, m.bytes);
        })
        .bind()
        .map_err(|e| e.to_string())?;
    let to = server.local_addr().ok_or("server has no address")?;
    let samples: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let (s2, d2) = (samples.clone(), done.clone());
    let mut ccfg = sap_cfg(env, "pp-cli", ct, env.client_cpu, mode);
    if proto == Proto::Udp {
        // Like the baseline's client: a socket connected to the server (its route cached).
        ccfg.peer = Some(to);
    }
    let client = Sap::builder(ccfg)
        .inline(move |m, out| {
            let t = now_ns();
            let i = d2.fetch_add(1, Ordering::Relaxed);
            let t0 = u64::from_le_bytes(m.bytes[..8].try_into().unwrap_or([0; 8]));
            if let Some(s) = s2.get(i) {
                s.store(t - t0, Ordering::Relaxed);
            }
            if (i as u64) + 1 < total {
                let mut b = [0u8; 1400];
                let n = m.bytes.len().min(1400);
                b[..n].copy_from_slice(&m.bytes[..n]);
                b[..8].copy_from_slice(&now_ns().to_le_bytes());
                let _ = out.reply(&m.source, &b[..n]);
            }
        })
        .bind()
        .map_err(|e| e.to_string())?;
    let backend = format!("{}", client.backend());
    let (s0, c0) = (
        threads_schedstat("net/pp-srv"),
        threads_schedstat("net/pp-cli"),
    );
    let mut first = vec![0u8; size];
    first[..8].copy_from_slice(&now_ns().to_le_bytes());
    match proto {
        Proto::Udp => client.send_to(to, &first).map_err(|e| e.to_string())?,
        Proto::Tcp => {
            let c = client.connect(to).map_err(|e| e.to_string())?;
            first[..8].copy_from_slice(&now_ns().to_le_bytes());
            client.send(c, &first).map_err(|e| e.to_string())?;
        }
    }
    let deadline = StdInstant::now() + Duration::from_secs(120);
    while (done.load(Ordering::Relaxed) as u64) < total {
        if StdInstant::now() > deadline {
            return Err(format!(
                "ping-pong stalled at {} of {total}",
                done.load(Ordering::Relaxed)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let h = {
        let mut h = hist()?;
        for s in &samples[warm as usize..] {
            h.record(s.load(Ordering::Relaxed).clamp(100, 10_000_000_000))
                .map_err(|e| e.to_string())?;
        }
        h
    };
    let (s1, c1) = (
        threads_schedstat("net/pp-srv"),
        threads_schedstat("net/pp-cli"),
    );
    let d = |a: [u64; 3], b: [u64; 3]| [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    eprintln!("{}", cpu_line("rtpm-net", d(s0, s1), d(c0, c1), total));
    drop(client);
    drop(server);
    Ok((h, backend))
}

// ---------------------------------------------------------------- throughput

/// Receive buffer of every throughput receiver, baseline and rtpm-net alike (the
/// kernel's `net.core.rmem_max` caps it).
const THROUGHPUT_RCVBUF: u32 = 4 << 20;

/// One throughput measurement, per second over the window: messages counted by the
/// receiver, messages the sender handed to the kernel, and datagrams the kernel dropped
/// at the receiver's full socket buffer.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    recv: f64,
    sent: f64,
    drops: f64,
}

/// Counters a run samples at the window's start and end.
struct Probes<'a> {
    recv: &'a dyn Fn() -> u64,
    sent: &'a dyn Fn() -> u64,
    drops: &'a dyn Fn() -> u64,
}

/// Rates over `secs` after a 0.3 s warm-up.
fn measure(p: &Probes<'_>, secs: u64) -> Rate {
    std::thread::sleep(Duration::from_millis(300));
    let (r0, s0, d0, t0) = ((p.recv)(), (p.sent)(), (p.drops)(), StdInstant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (r1, s1, d1) = ((p.recv)(), (p.sent)(), (p.drops)());
    let el = t0.elapsed().as_secs_f64();
    Rate {
        recv: r1.saturating_sub(r0) as f64 / el,
        sent: s1.saturating_sub(s0) as f64 / el,
        drops: d1.saturating_sub(d0) as f64 / el,
    }
}

/// Datagrams the kernel dropped at `fd`'s full receive buffer (SO_MEMINFO, the counter
/// rtpm-net reports as `kernel_drops`).
fn socket_drops(fd: std::os::fd::RawFd) -> u64 {
    const SO_MEMINFO: i32 = 55;
    let mut v = [0u32; 9];
    let mut len = std::mem::size_of::<[u32; 9]>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and writable; len holds v's size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            v.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        u64::from(v[libc::SK_MEMINFO_DROPS as usize])
    } else {
        0
    }
}

fn set_rcvbuf(fd: std::os::fd::RawFd, bytes: u32) -> Res<()> {
    let v = bytes as i32;
    // SAFETY: passes a live i32 and its size; setsockopt copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("SO_RCVBUF: {}", std::io::Error::last_os_error()))
    }
}

/// The baseline: std blocking sockets, one `send` per message (a connected socket per
/// flow) and one `recv` per message, counted by the receiving thread.
fn base_throughput(env: &Env, proto: Proto, size: usize, secs: u64, flows: usize) -> Res<Rate> {
    use std::os::fd::AsRawFd;
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    match proto {
        Proto::Udp => {
            let server = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            set_rcvbuf(server.as_raw_fd(), THROUGHPUT_RCVBUF)?;
            server
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let to = server.local_addr().map_err(|e| e.to_string())?;
            let fd = server.as_raw_fd();
            let server = Arc::new(server);
            let (g, s, sv) = (got.clone(), stop.clone(), server.clone());
            let srv = spawn(env, "base-rx", env.server_cpu, move || {
                let mut buf = [0u8; 2048];
                while !s.load(Ordering::Relaxed) {
                    if sv.recv(&mut buf).is_ok() {
                        g.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })?;
            let mut senders = Vec::new();
            for f in 0..flows {
                let (s, n) = (stop.clone(), sent.clone());
                senders.push(spawn(
                    env,
                    &format!("base-tx{f}"),
                    env.client_cpu,
                    move || {
                        let Ok(c) = UdpSocket::bind("127.0.0.1:0") else {
                            return;
                        };
                        if c.connect(to).is_err() {
                            return;
                        }
                        let msg = vec![1u8; size];
                        while !s.load(Ordering::Relaxed) {
                            if c.send(&msg).is_ok() {
                                n.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    },
                )?);
            }
            let r = measure(
                &Probes {
                    recv: &|| got.load(Ordering::Relaxed),
                    sent: &|| sent.load(Ordering::Relaxed),
                    drops: &|| socket_drops(fd),
                },
                secs,
            );
            stop.store(true, Ordering::Relaxed);
            for t in senders {
                let _ = t.join();
            }
            let _ = srv.join();
            Ok(r)
        }
        Proto::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let to = l.local_addr().map_err(|e| e.to_string())?;
            let (g, s) = (got.clone(), stop.clone());
            let srv = spawn(env, "base-rx", env.server_cpu, move || {
                let Ok((st, _)) = l.accept() else { return };
                let _ = st.set_read_timeout(Some(Duration::from_millis(50)));
                let mut r = BufReader::with_capacity(64 * 1024, st);
                let mut frame = vec![0u8; 4 + 2048];
                while !s.load(Ordering::Relaxed) {
                    if r.read_exact(&mut frame[..4]).is_err() {
                        continue;
                    }
                    let n = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
                    if r.read_exact(&mut frame[4..4 + n]).is_ok() {
                        g.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })?;
            let (s, n) = (stop.clone(), sent.clone());
            let tx = spawn(env, "base-tx", env.client_cpu, move || {
                let Ok(mut c) = TcpStream::connect(to) else {
                    return;
                };
                let _ = c.set_nodelay(true);
                let mut frame = (size as u32).to_be_bytes().to_vec();
                frame.extend(vec![1u8; size]);
                while !s.load(Ordering::Relaxed) {
                    if c.write_all(&frame).is_err() {
                        return;
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                }
            })?;
            let r = measure(
                &Probes {
                    recv: &|| got.load(Ordering::Relaxed),
                    sent: &|| sent.load(Ordering::Relaxed),
                    drops: &|| 0,
                },
                secs,
            );
            stop.store(true, Ordering::Relaxed);
            let _ = tx.join();
            let _ = srv.join();
            Ok(r)
        }
    }
}

/// How an rtpm-net throughput run is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NetSetup {
    layout: Layout,
    threads: u32,
    flows: usize,
    /// UDP: GSO on the senders and GRO (64 KiB buffers) on the receiver.
    offload: bool,
}

/// rtpm-net: senders queue batches (`send_many`: 64 datagrams, or `send_frames`: 256
/// frames) on a client SAP; an inline handler on the server SAP counts what arrives.
fn net_throughput(env: &Env, proto: Proto, size: usize, secs: u64, setup: NetSetup) -> Res<Rate> {
    let NetSetup {
        layout,
        threads,
        flows,
        offload,
    } = setup;
    let lo: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "addr")?;
    let (st, ct) = match proto {
        Proto::Udp => (Transport::Udp { bind: lo }, Transport::Udp { bind: lo }),
        Proto::Tcp => (
            Transport::Tcp { bind: Some(lo) },
            Transport::Tcp { bind: None },
        ),
    };
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let mut scfg = sap_cfg(env, "tp-srv", st, env.server_cpu, Wait::Park);
    scfg.layout = layout;
    scfg.qos.threads = threads;
    scfg.qos.recv_buffer = Some(THROUGHPUT_RCVBUF);
    if proto == Proto::Tcp {
        // A stream SAP tuned for throughput: each completion carries up to 16 KiB of frames.
        scfg.buffer_size = 16384;
    } else if offload {
        // GRO: a receive carries up to 64 datagrams of one flow.
        scfg.udp_gro = true;
        scfg.buffer_size = SapConfig::GRO_MIN_BUFFER_SIZE;
        scfg.buffers = 256;
        scfg.send_slots = 16;
    }
    if threads > 1 {
        scfg.qos.cores = Cores::List(vec![env.server_cpu, env.client_cpu]);
    }
    let server = Sap::builder(scfg)
        .inline(move |_, _| {
            g.fetch_add(1, Ordering::Relaxed);
        })
        .bind()
        .map_err(|e| e.to_string())?;
    let to = server.local_addr().ok_or("no address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut senders = Vec::new();
    for f in 0..flows {
        let mut ccfg = sap_cfg(
            env,
            &format!("tp-cli{f}"),
            ct.clone(),
            env.client_cpu,
            Wait::Park,
        );
        ccfg.send_slots = 1024;
        ccfg.udp_gso = offload;
        if proto == Proto::Tcp {
            ccfg.buffer_size = 16384;
            ccfg.send_slots = 256;
        }
        ccfg.qos.drop_policy = DropPolicy::DropNewest;
        let client = Arc::new(Sap::bind(ccfg).map_err(|e| e.to_string())?);
        let conn = match proto {
            Proto::Tcp => Some(client.connect(to).map_err(|e| e.to_string())?),
            Proto::Udp => None,
        };
        let (c2, s2) = (client.clone(), stop.clone());
        senders.push(spawn(
            env,
            &format!("net-tx{f}"),
            env.client_cpu,
            move || {
                let msg = vec![1u8; size];
                let frames: Vec<&[u8]> = vec![&msg[..]; 256];
                let datagrams: Vec<&[u8]> = vec![&msg[..]; 64];
                let mut off = 0;
                while !s2.load(Ordering::Relaxed) {
                    let r = match conn {
                        // Streams pack frames into a slot; datagrams are one per slot,
                        // queued 64 at a time.
                        Some(c) => c2.send_frames(c, &frames).map(drop),
                        None => c2.send_many(to, &datagrams[off..]).map(|n| {
                            off = (off + n) % datagrams.len();
                        }),
                    };
                    if r.is_err() {
                        // Every send slot is queued or in flight: wait a little, as a
                        // blocking writer would, rather than spin against the reactor
                        // for the CPU (what is queued lasts far longer than this).
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            },
        )?);
        clients.push(client);
    }
    let r = measure(
        &Probes {
            recv: &|| got.load(Ordering::Relaxed),
            sent: &|| match proto {
                // A TCP send completes a slot of many frames: count frames received.
                Proto::Tcp => got.load(Ordering::Relaxed),
                Proto::Udp => clients.iter().map(|c| c.stats().sent).sum(),
            },
            drops: &|| server.stats().kernel_drops,
        },
        secs,
    );
    stop.store(true, Ordering::Relaxed);
    for t in senders {
        let _ = t.join();
    }
    eprintln!("  server: {:?}", server.stats());
    for c in &clients {
        eprintln!("  client: {:?}", c.stats());
    }
    drop(clients);
    drop(server);
    Ok(r)
}

// ---------------------------------------------------------------- hand-off

fn handoff(env: &Env, consume: Consume, count: u64) -> Res<Lat> {
    let mut cfg = sap_cfg(
        env,
        "handoff",
        Transport::Udp {
            bind: "127.0.0.1:0".parse().map_err(|_| "addr")?,
        },
        env.server_cpu,
        Wait::Park,
    );
    cfg.qos.queue_depth = 4096;
    let sap = Sap::bind(cfg).map_err(|e| e.to_string())?;
    let to = sap.local_addr().ok_or("no address")?;
    let consumer = sap.consumer(0).map_err(|e| e.to_string())?;
    let warm = count / 10;
    let total = (count + warm) as usize;
    let samples: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let s2 = samples.clone();
    let cons = spawn(env, "consumer", env.client_cpu, move || {
        let mut i = 0;
        let end = StdInstant::now() + Duration::from_secs(120);
        while i < total && StdInstant::now() < end {
            let d = match consume {
                Consume::Park => consumer
                    .wait(Duration::from_millis(100))
                    .and_then(|d| d.into_handle()),
                Consume::Spin => consumer.pop_handle(),
            };
            if let Some(h) = d {
                let lat = now_ns().saturating_sub(h.received_at().as_nanos());
                s2[i].store(lat, Ordering::Relaxed);
                i += 1;
                let _ = consumer.release(h);
            } else if consume == Consume::Spin {
                std::hint::spin_loop();
            }
        }
        i
    })?;
    let c = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    for _ in 0..total {
        c.send_to(&[5u8; 64], to).map_err(|e| e.to_string())?;
        // One message at a time, spaced so each hand-off is measured on its own.
        std::thread::sleep(Duration::from_micros(200));
    }
    let n = cons.join().map_err(|_| "consumer panicked")?;
    if n < total {
        return Err(format!("only {n} of {total} hand-offs arrived"));
    }
    let h = record(&samples[warm as usize..], total - warm as usize)?;
    Ok(Lat::of(&h))
}

// ---------------------------------------------------------------- reports

fn lat_header() -> &'static str {
    "| case | p50 µs | p99 µs | p99.9 µs | max µs | n | p50 ÷ baseline |\n|---|---|---|---|---|---|---|"
}

/// Baseline and rtpm-net in turn, `repeat` times, each over `count / repeat` round trips,
/// pooled: both sides see the same drift of a shared machine.
fn pingpong_report(
    env: &Env,
    proto: Proto,
    mode: Wait,
    count: u64,
    size: usize,
    repeat: u64,
) -> Res<String> {
    let mut base = hist()?;
    let mut ours = hist()?;
    let mut backend = String::new();
    let per = (count / repeat.max(1)).max(100);
    for r in 0..repeat.max(1) {
        eprintln!(
            "ping-pong {proto:?} {mode:?} round {}/{repeat}: baseline (std blocking)...",
            r + 1
        );
        base.add(base_pingpong(env, proto, per, size)?)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "ping-pong {proto:?} {mode:?} round {}/{repeat}: rtpm-net...",
            r + 1
        );
        let (h, b) = net_pingpong(env, proto, mode, per, size, Layout::Sharded, 1)?;
        ours.add(h).map_err(|e| e.to_string())?;
        backend = b;
    }
    let (base, ours) = (Lat::of(&base), Lat::of(&ours));
    Ok(format!(
        "{}\n{}\n{}",
        lat_header(),
        base.row(&format!("std blocking {proto:?} {size} B"), None),
        ours.row(
            &format!("rtpm-net {backend} {proto:?} {size} B {mode:?}"),
            Some(&base)
        )
    ))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    format!("{lo:.2}–{hi:.2}")
}

/// Baseline and rtpm-net in turn, `repeat` times (UDP: rtpm-net with GSO/GRO, and
/// without); each row gives the median and the spread of the ratio over the rounds.
fn throughput_report(env: &Env, proto: Proto, size: usize, secs: u64, repeat: u64) -> Res<String> {
    let variants: &[bool] = match proto {
        Proto::Udp => &[true, false],
        Proto::Tcp => &[false],
    };
    let mut base = Vec::new();
    let mut ours: Vec<Vec<Rate>> = vec![Vec::new(); variants.len()];
    for r in 0..repeat.max(1) {
        eprintln!(
            "throughput {proto:?} {size} B round {}/{repeat}: baseline (std, one call per message)...",
            r + 1
        );
        let b = base_throughput(env, proto, size, secs, 1)?;
        eprintln!("  {b:?}");
        base.push(b);
        for (i, offload) in variants.iter().enumerate() {
            eprintln!(
                "throughput {proto:?} {size} B round {}/{repeat}: rtpm-net (batched{})...",
                r + 1,
                if *offload { ", GSO/GRO" } else { "" }
            );
            let setup = NetSetup {
                layout: Layout::Sharded,
                threads: 1,
                flows: 1,
                offload: *offload,
            };
            let o = net_throughput(env, proto, size, secs, setup)?;
            eprintln!("  {o:?}");
            ours[i].push(o);
        }
    }
    let row = |what: &str, rates: &[Rate], ratios: Option<Vec<f64>>| {
        let mut recv: Vec<f64> = rates.iter().map(|r| r.recv).collect();
        let mut sent: Vec<f64> = rates.iter().map(|r| r.sent).collect();
        let mut drops: Vec<f64> = rates.iter().map(|r| r.drops).collect();
        let each = rates
            .iter()
            .map(|r| format!("{:.0}", r.recv))
            .collect::<Vec<_>>()
            .join(", ");
        let ratio = match ratios {
            None => "1.00 (baseline)".to_string(),
            Some(v) => format!("**{:.2}** ({})", median(&mut v.clone()), spread(&v)),
        };
        let mut lost: Vec<f64> = rates
            .iter()
            .map(|r| 100.0 * (1.0 - r.recv / r.sent.max(1.0)).max(0.0))
            .collect();
        format!(
            "| {what} | {:.0} | {each} | {:.0} | {:.1} % | {:.0} | {ratio} |",
            median(&mut recv),
            median(&mut sent),
            median(&mut lost),
            median(&mut drops)
        )
    };
    let mut out = vec![row(&format!("std {proto:?} {size} B"), &base, None)];
    for (i, offload) in variants.iter().enumerate() {
        let ratios = ours[i]
            .iter()
            .zip(&base)
            .map(|(o, b)| o.recv / b.recv.max(1.0))
            .collect();
        let what = match (proto, offload) {
            (Proto::Udp, true) => format!("rtpm-net {proto:?} {size} B, GSO+GRO"),
            (Proto::Udp, false) => format!("rtpm-net {proto:?} {size} B, no GSO/GRO"),
            _ => format!("rtpm-net {proto:?} {size} B"),
        };
        out.push(row(&what, &ours[i], Some(ratios)));
    }
    Ok(out.join("\n"))
}

fn throughput_header() -> &'static str {
    "| case | received msg/s (median) | each round | sent msg/s | lost (1 − received/sent) | receiver socket drops/s (SO_MEMINFO; a GRO burst counts once) | received ÷ baseline, median (min–max) |\n|---|---|---|---|---|---|---|"
}

fn handoff_report(env: &Env, consume: Consume, count: u64) -> Res<String> {
    eprintln!("hand-off, consumer {consume:?}...");
    let l = handoff(env, consume, count)?;
    Ok(format!(
        "| reactor → consumer ({consume:?}) | {:.1} | {:.1} | {:.1} | {:.1} | {} | – |",
        l.p50, l.p99, l.p999, l.max, l.n
    ))
}

fn layout_report(env: &Env, count: u64, secs: u64) -> Res<String> {
    let mut out = vec![
        "| layout (2 threads) | ping-pong p50 µs | p99 µs | p99.9 µs | UDP 64 B msg/s (2 flows, no GSO/GRO) |"
            .to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    for layout in [Layout::Shared, Layout::Sharded] {
        eprintln!("layout {layout:?}: ping-pong...");
        let (h, _) = net_pingpong(env, Proto::Udp, Wait::Park, count, 64, layout, 2)?;
        let l = Lat::of(&h);
        eprintln!("layout {layout:?}: throughput...");
        let setup = NetSetup {
            layout,
            threads: 2,
            flows: 2,
            offload: false,
        };
        let t = net_throughput(env, Proto::Udp, 64, secs, setup)?.recv;
        out.push(format!(
            "| {layout:?} | {:.1} | {:.1} | {:.1} | {t:.0} |",
            l.p50, l.p99, l.p999
        ));
    }
    Ok(out.join("\n"))
}

fn run(cli: Cli) -> Res<()> {
    let allowed = CpuSet::allowed().map_err(|e| e.to_string())?;
    let ids: Vec<usize> = allowed.iter().collect();
    let (server_cpu, client_cpu) = match ids.as_slice() {
        [] => return Err("no CPU allowed".into()),
        [one] => (*one, *one),
        [first, .., last] => (*first, *last),
    };
    let env = Env {
        backend: match cli.backend {
            Backend::Auto => BackendChoice::Auto,
            Backend::IoUring => BackendChoice::IoUring,
            Backend::Epoll => BackendChoice::Epoll,
        },
        fifo: cli.fifo,
        server_cpu,
        client_cpu,
    };
    eprintln!(
        "server CPU {server_cpu}, client CPU {client_cpu}, policy {:?}",
        policy(&env)
    );
    let text = match cli.cmd {
        Cmd::Pingpong {
            transport,
            mode,
            count,
            size,
            repeat,
        } => pingpong_report(&env, transport, mode, count, size as usize, repeat)?,
        Cmd::Throughput {
            transport,
            size,
            seconds,
            repeat,
        } => format!(
            "{}\n{}",
            throughput_header(),
            throughput_report(&env, transport, size as usize, seconds, repeat)?
        ),
        Cmd::Handoff { consumer, count } => format!(
            "{}\n{}",
            lat_header(),
            handoff_report(&env, consumer, count)?
        ),
        Cmd::Layout { count, seconds } => layout_report(&env, count, seconds)?,
        Cmd::All {
            count,
            seconds,
            repeat,
        } => {
            let mut s = String::new();
            s += "#### Ping-pong, 64 B, one message in flight\n\n";
            for mode in [Wait::Park, Wait::BusyPoll] {
                for proto in [Proto::Udp, Proto::Tcp] {
                    s += &pingpong_report(&env, proto, mode, count, 64, repeat)?;
                    s += "\n\n";
                }
            }
            s += "#### Throughput, one flow, batched sends\n\n";
            s += throughput_header();
            s += "\n";
            for proto in [Proto::Udp, Proto::Tcp] {
                for size in [64, 1024] {
                    s += &throughput_report(&env, proto, size, seconds, repeat)?;
                    s += "\n";
                }
            }
            s += "\n#### Reactor → consumer-thread hand-off\n\n";
            s += lat_header();
            s += "\n";
            for c in [Consume::Park, Consume::Spin] {
                s += &handoff_report(&env, c, count)?;
                s += "\n";
            }
            s += "\n#### Shared ring vs one ring per thread\n\n";
            s += &layout_report(&env, count, seconds)?;
            s
        }
    };
    println!("{text}");
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("net_latency: {e}");
        std::process::exit(1);
    }
}
