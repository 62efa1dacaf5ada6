//! `overlay_latency`: the overlay between two `rtpm node` processes on loopback, against
//! the raw net reactor measured in the same run; and kill-to-repair of real processes
//! against the simulator's prediction for the same parameters.
//!
//! - **latency**: 64 B ping-pong, one message in flight, on the best-effort class (0)
//!   and the reliable class (1), through each node's probe port (the origin's RT job
//!   sends the next ping as the pong arrives, so only the overlay's path is measured:
//!   reactor → receive job → port → reply → reactor). Round trip and one way (both ends
//!   read the same `CLOCK_MONOTONIC`). Baseline: rtpm-net's UDP ping-pong with inline
//!   handlers (`net_latency pingpong`'s rtpm-net side), reactors parked, server on CPU 0
//!   and client on the last CPU, alternated with the overlay `--repeat` times.
//! - **throughput**: `--flood` sequence-numbered messages of 64 B and 1 KiB from one node
//!   to the other on each class, as fast as the sender's command queue takes them;
//!   messages per second at the receiver (first to last arrival), what arrived, and the
//!   drop counters. The receive tasks take `--tp-batch` datagrams per job at most every
//!   500 µs: that rate is what admission reserves the RT core for, so it is the ceiling.
//!   Baseline: rtpm-net UDP, one `send_to` per datagram, in the same run.
//! - **repair**: `--peers` nodes on loopback (k = 2, two peers per super-peer, 25 ms
//!   heartbeat), SIGKILL of a super-peer with bound peers, time until every survivor is
//!   bound to a live super-peer, every cell has k members again in one tree, and every
//!   survivor finds every survivor's SAPs; against the simulator (same k, peers per
//!   super-peer, heartbeat and size; its LAN model) over `--sim-seeds` seeds.
//!
//! Each node is a real `rtpm node` (found next to this binary: build it with
//! `cargo build --release -p rtpm-tools`), configured in a temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: a panic is the failure report

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant as StdInstant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rtpm_net::{Cores, Mode, Sap, SapConfig, Transport};
use rtpm_overlay::proto::{Instant, Role};
use rtpm_overlay::sim::check;
use rtpm_overlay::sim::world::{Sim, WorldConfig};
use rtpm_rt::cpu::CpuSet;
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};
use serde_json::Value;

/// The overlay between two `rtpm node` processes against the raw net reactor, and
/// kill-to-repair against the simulator (see the file's documentation).
///
/// Examples:
///   overlay_latency all
///   overlay_latency latency --count 5000 --repeat 3
///   overlay_latency repair --peers 8 --runs 3
#[derive(Parser, Debug)]
#[command(name = "overlay_latency", version, verbatim_doc_comment)]
struct Cli {
    /// What to measure.
    #[arg(value_enum, default_value_t = What::All)]
    what: What,
    /// Round trips per latency figure (after 10 % warm-up).
    #[arg(long, default_value_t = 5000)]
    count: u64,
    /// Alternations of baseline and overlay per latency figure.
    #[arg(long, default_value_t = 3)]
    repeat: u64,
    /// Reactors of both sides park in the kernel or busy-poll.
    #[arg(long, value_enum, default_value_t = Wait::Park)]
    mode: Wait,
    /// The receive tasks' minimum inter-arrival time (what admission reserves the core
    /// for, and the fastest a receive job may follow the previous one).
    #[arg(long, default_value = "150us")]
    min_interarrival: Nanos,
    /// Receive jobs one minimum inter-arrival window may hold, in the latency figure (the
    /// SAPs' and command task's `burst`): a datagram arriving sooner than the minimum
    /// inter-arrival time after the last job runs at once unless this many already ran.
    #[arg(long, default_value_t = 4)]
    burst: usize,
    /// Pace the latency figure: one ping every INTERVAL, sent by a thread (the overlay's
    /// through the node's command queue, the raw baseline's through its SAP), instead of
    /// the next ping leaving as the last answer arrives. A periodic client's view.
    #[arg(long)]
    interval: Option<Nanos>,
    /// Messages per throughput figure.
    #[arg(long, default_value_t = 20_000)]
    flood: u64,
    /// Datagrams a receive job takes in the throughput figure (one job per 500 µs at
    /// most: the admitted ceiling is this × 2000 msgs/s per class).
    #[arg(long, default_value_t = 16)]
    tp_batch: usize,
    /// Nodes for the repair figure.
    #[arg(long, default_value_t = 8)]
    peers: usize,
    /// Kills measured for the repair figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Simulator seeds for the repair prediction.
    #[arg(long, default_value_t = 10)]
    sim_seeds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    All,
    Latency,
    Throughput,
    Repair,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Wait {
    Park,
    BusyPoll,
}

impl Wait {
    fn name(self) -> &'static str {
        match self {
            Wait::Park => "park",
            Wait::BusyPoll => "busy-poll",
        }
    }
}

const KEY: &str = "6f7665726c6179206c6174656e637920626e63682c206e6f7420612073656372";

fn now_ns() -> u64 {
    MonotonicClock.now().as_nanos()
}

fn us(v: u64) -> f64 {
    v as f64 / 1000.0
}

/// p50/p99/p99.9/max in µs and the count.
#[derive(Clone, Copy, Debug)]
struct Lat {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    n: u64,
}

impl Lat {
    fn of(h: &Histogram<u64>) -> Lat {
        Lat {
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            n: h.len(),
        }
    }
    fn of_json(v: &Value) -> Lat {
        let g = |k: &str| us(v[k].as_u64().unwrap_or(0));
        Lat {
            p50: g("p50_ns"),
            p99: g("p99_ns"),
            p999: g("p999_ns"),
            max: g("max_ns"),
            n: v["samples"].as_u64().unwrap_or(0),
        }
    }
    fn row(&self, what: &str, base: Option<&Lat>) -> String {
        let ratio = base.map_or("1.00 (baseline)".into(), |b| {
            format!("**{:.2}**", self.p50 / b.p50)
        });
        format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {ratio} |",
            self.p50, self.p99, self.p999, self.max, self.n
        )
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(100, 10_000_000_000, 3).unwrap()
}

fn cpus() -> (usize, usize) {
    let all = CpuSet::allowed().unwrap();
    let first = all.iter().next().unwrap_or(0);
    (first, all.last().unwrap_or(first))
}

// ---------------------------------------------------------------- raw reactor

fn sap_cfg(name: &str, cpu: usize, mode: Wait) -> SapConfig {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut c = SapConfig::new(name, Transport::Udp { bind: lo });
    c.qos.cores = Cores::List(vec![cpu]);
    c.qos.mode = match mode {
        Wait::Park => Mode::Park,
        Wait::BusyPoll => Mode::BusyPoll,
    };
    c.qos.spin = Nanos::ms(2);
    c
}

/// Round trips and one-way times of the raw reactor: a ping-pong (the client's inline
/// handler sends the next ping as the pong arrives; 10 % warm-up dropped), or with
/// `every`, paced — a thread sends one ping every `every` through the client's SAP, as
/// a periodic client would.
fn raw_pingpong(
    count: u64,
    size: usize,
    mode: Wait,
    every: Option<Nanos>,
) -> (Histogram<u64>, Histogram<u64>) {
    let (server_cpu, client_cpu) = cpus();
    let warm = if every.is_some() { 0 } else { count / 10 };
    let total = (count + warm) as usize;
    let rtt: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let oneway: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let server = echo_server("raw-srv", server_cpu, mode, oneway.clone());
    let to = server.local_addr().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let (r2, d2) = (rtt.clone(), done.clone());
    let client = Sap::builder(sap_cfg("raw-cli", client_cpu, mode))
        .inline(move |m, out| {
            let t = now_ns();
            let i = d2.fetch_add(1, Ordering::Relaxed);
            let t0 = u64::from_le_bytes(m.bytes[..8].try_into().unwrap_or([0; 8]));
            if let Some(s) = r2.get(i) {
                s.store(t.saturating_sub(t0), Ordering::Relaxed);
            }
            if every.is_none() && i + 1 < total {
                let mut b = [0u8; 1400];
                let n = m.bytes.len().min(1400);
                b[..n].copy_from_slice(&m.bytes[..n]);
                b[..8].copy_from_slice(&now_ns().to_le_bytes());
                let _ = out.reply(&m.source, &b[..n]);
            }
        })
        .bind()
        .unwrap();
    let mut ping = vec![0u8; size];
    for _ in 0..every.map_or(1, |_| count) {
        ping[..8].copy_from_slice(&now_ns().to_le_bytes());
        client.send_to(to, &ping).unwrap();
        if let Some(e) = every {
            std::thread::sleep(Duration::from_nanos(e.get()));
        }
    }
    let deadline = StdInstant::now() + Duration::from_secs(120);
    while done.load(Ordering::Relaxed) < total && StdInstant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(client);
    drop(server);
    (
        hist_of(&rtt[warm as usize..]),
        hist_of(&oneway[warm as usize..]),
    )
}

/// The raw baseline's server: echoes each datagram from its inline handler and records
/// the one-way time (the first word is the send time) into `oneway`, in arrival order.
fn echo_server(name: &str, cpu: usize, mode: Wait, oneway: Arc<Vec<AtomicU64>>) -> Sap {
    let seen = AtomicUsize::new(0);
    Sap::builder(sap_cfg(name, cpu, mode))
        .inline(move |m, out| {
            let t = now_ns();
            let t0 = u64::from_le_bytes(m.bytes[..8].try_into().unwrap_or([0; 8]));
            let i = seen.fetch_add(1, Ordering::Relaxed);
            if let Some(s) = oneway.get(i) {
                s.store(t.saturating_sub(t0), Ordering::Relaxed);
            }
            let _ = out.reply(&m.source, m.bytes);
        })
        .bind()
        .unwrap()
}

/// A histogram of the recorded samples (0: none arrived).
fn hist_of(samples: &[AtomicU64]) -> Histogram<u64> {
    let mut h = hist();
    for s in samples {
        let v = s.load(Ordering::Relaxed);
        if v > 0 {
            let _ = h.record(v.clamp(100, 10_000_000_000));
        }
    }
    h
}

/// Datagrams per second the raw reactor receives from one sender (one `send_to` each).
fn raw_throughput(count: u64, size: usize) -> f64 {
    let (server_cpu, client_cpu) = cpus();
    let got = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let (g, f, l) = (got.clone(), first.clone(), last.clone());
    let mut scfg = sap_cfg("raw-tp-srv", server_cpu, Wait::Park);
    scfg.qos.recv_buffer = Some(4 << 20);
    let server = Sap::builder(scfg)
        .inline(move |_, _| {
            let t = now_ns();
            if g.fetch_add(1, Ordering::Relaxed) == 0 {
                f.store(t, Ordering::Relaxed);
            }
            l.store(t, Ordering::Relaxed);
        })
        .bind()
        .unwrap();
    let to = server.local_addr().unwrap();
    let mut ccfg = sap_cfg("raw-tp-cli", client_cpu, Wait::Park);
    ccfg.send_slots = 1024;
    let client = Sap::bind(ccfg).unwrap();
    let buf = vec![7u8; size];
    for _ in 0..count {
        while client.send_to(to, &buf).is_err() {
            std::thread::yield_now();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = got.load(Ordering::Relaxed);
    let span = last.load(Ordering::Relaxed) - first.load(Ordering::Relaxed);
    drop(client);
    drop(server);
    if span == 0 {
        0.0
    } else {
        n as f64 / (span as f64 / 1e9)
    }
}

// ---------------------------------------------------------------- rtpm node processes

fn rtpm_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().join("rtpm");
    if !p.is_file() {
        eprintln!(
            "overlay_latency: {} is missing: build it with `cargo build --release -p rtpm-tools`",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

struct NodeProc {
    child: Child,
    dir: PathBuf,
    id: String,
}

impl NodeProc {
    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn ask(socket: &Path, req: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    writeln!(s, "{req}").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(v["error"].to_string())
    }
}

fn net(socket: &Path) -> Option<Value> {
    ask(socket, r#"{"cmd":"status"}"#)
        .ok()
        .map(|v| v["networks"][0].clone())
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = StdInstant::now();
    while !f() {
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(start.elapsed())
}

struct Topology {
    k: usize,
    pps: usize,
    mode: Wait,
    /// Minimum inter-arrival of class 0's and class 1's receive tasks.
    min_ia: [Nanos; 2],
    /// Datagrams a receive job of class 0 and class 1 takes, and commands a command job
    /// takes (what admission reserves the RT core for, per minimum inter-arrival).
    batch: [usize; 2],
    /// Commands per command job (one job per millisecond at most).
    commands: usize,
    /// Jobs per minimum inter-arrival window (receive and command tasks).
    burst: usize,
}

fn free_base() -> u16 {
    loop {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if p < 64000 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn start_node(root: &Path, name: &str, group: &str, t: &Topology) -> NodeProc {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("cores")).unwrap();
    let all: Vec<usize> = CpuSet::allowed().unwrap().iter().collect();
    for (i, c) in all.iter().enumerate() {
        let role = if i + 1 == all.len() && all.len() > 1 {
            "rt"
        } else {
            "general"
        };
        std::fs::write(
            dir.join("cores").join(format!("cpu{c}.toml")),
            format!("role = \"{role}\"\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("k.key"), KEY).unwrap();
    let port = free_base();
    let text = format!(
        r#"[node]
name = "{name}"
log = "warn"
control = "ctl.sock"
[[overlay]]
name = "bench"
multicast = "{group}"
interface = "127.0.0.1"
key = "k.key"
cell_size = {k}
peers_per_super_peer = {pps}
heartbeat = "25ms"
[overlay.commands]
min_interarrival = "1ms"
batch = {cb}
burst = {bc}
[[overlay.sap]]
address = "127.0.0.1:{port}"
class = 0
mode = "{mode}"
min_interarrival = "{ia0}"
batch = {b0}
burst = {bu0}
[[overlay.sap]]
address = "127.0.0.1:{p1}"
class = 1
reliability = "reliable"
mode = "{mode}"
min_interarrival = "{ia1}"
batch = {b1}
burst = {bu1}
"#,
        bc = t.burst.min(t.commands),
        bu0 = t.burst.min(t.batch[0]),
        bu1 = t.burst.min(t.batch[1]),
        k = t.k,
        pps = t.pps,
        mode = t.mode.name(),
        ia0 = t.min_ia[0],
        ia1 = t.min_ia[1],
        b0 = t.batch[0],
        b1 = t.batch[1],
        cb = t.commands,
        p1 = port + 1
    );
    std::fs::write(dir.join("node.toml"), text).unwrap();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = Command::new(rtpm_binary())
        .args(["node", "--config"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = dir.join("ctl.sock");
    if wait_until(Duration::from_secs(10), || net(&sock).is_some()).is_none() {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        eprintln!("overlay_latency: node {name} did not start:\n{log}");
        std::process::exit(1);
    }
    let id = ask(&sock, r#"{"cmd":"status"}"#).unwrap()["node"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    NodeProc { child, dir, id }
}

fn joined(n: &Value) -> bool {
    matches!(n["role"].as_str(), Some("peer" | "super-peer"))
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtpm-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pair(
    tag: &str,
    mode: Wait,
    min_ia: [Nanos; 2],
    batch: [usize; 2],
    commands: usize,
    burst: usize,
) -> (PathBuf, NodeProc, NodeProc) {
    let root = temp(tag);
    let group = format!("239.254.{}.1:{}", std::process::id() % 250, free_base());
    let t = Topology {
        k: 3,
        pps: 2,
        mode,
        min_ia,
        batch,
        commands,
        burst,
    };
    let a = start_node(&root, "a", &group, &t);
    wait_until(Duration::from_secs(20), || {
        net(&a.socket()).is_some_and(|n| n["role"] == "super-peer")
    })
    .expect("a founds the overlay");
    let b = start_node(&root, "b", &group, &t);
    wait_until(Duration::from_secs(10), || {
        net(&a.socket()).is_some_and(|n| joined(&n)) && net(&b.socket()).is_some_and(|n| joined(&n))
    })
    .expect("both join");
    (root, a, b)
}

// ---------------------------------------------------------------- figures

fn latency(cli: &Cli) {
    println!(
        "### Overlay ping-pong, 64 B, one message in flight ({} reactors; the measured class's receive task at most every {}, the other's every 1 ms)\n",
        cli.mode.name(),
        cli.min_interarrival
    );
    println!("| case | p50 µs | p99 µs | p99.9 µs | max µs | n | p50 ÷ raw reactor |");
    println!("|---|---|---|---|---|---|---|");
    let slow = Nanos::ms(1);
    // one datagram per job, `burst` jobs per window (2 at least: the reliable class's ack)
    let b = cli.burst.max(2);
    let pairs = [
        pair(
            "lat0",
            cli.mode,
            [cli.min_interarrival, slow],
            [b, b],
            8,
            cli.burst,
        ),
        pair(
            "lat1",
            cli.mode,
            [slow, cli.min_interarrival],
            [b, b],
            8,
            cli.burst,
        ),
    ];
    let (mut raw_rtt, mut raw_ow) = (hist(), hist());
    let mut rows = Vec::new();
    for r in 0..cli.repeat {
        eprintln!("latency: repetition {}/{}", r + 1, cli.repeat);
        let (h, o) = raw_pingpong(cli.count, 64, cli.mode, cli.interval);
        raw_rtt.add(&h).unwrap();
        raw_ow.add(&o).unwrap();
        for class in [0u8, 1] {
            let (_, a, b) = &pairs[class as usize];
            let req = format!(
                r#"{{"cmd":"ping","to":"{}","class":{class},"count":{},"size":64,"timeout_ms":120000,"interval_us":{}}}"#,
                b.id,
                cli.count,
                cli.interval.map_or(0, |i| i.get() / 1000)
            );
            let v = ask(&a.socket(), &req).unwrap();
            let p = &v["ping"];
            rows.push((
                r,
                class,
                Lat::of_json(&p["rtt_ns"]),
                Lat::of_json(&p["one_way_ns"]),
            ));
            eprintln!(
                "  class {class}: {} of {} round trips, p50 {:.1} µs",
                p["completed"],
                p["count"],
                us(p["rtt_ns"]["p50_ns"].as_u64().unwrap_or(0))
            );
        }
    }
    let (base, base_ow) = (Lat::of(&raw_rtt), Lat::of(&raw_ow));
    println!("{}", base.row("raw reactor round trip (pooled)", None));
    for (r, class, rtt, _) in &rows {
        let name = if *class == 0 {
            "best-effort"
        } else {
            "reliable"
        };
        println!(
            "{}",
            rtt.row(
                &format!("overlay round trip, class {class} ({name}), run {}", r + 1),
                Some(&base)
            )
        );
    }
    println!("{}", base_ow.row("raw reactor one way (pooled)", None));
    for (r, class, _, ow) in &rows {
        let name = if *class == 0 {
            "best-effort"
        } else {
            "reliable"
        };
        println!(
            "{}",
            ow.row(
                &format!("overlay one way, class {class} ({name}), run {}", r + 1),
                Some(&base_ow)
            )
        );
    }
    for (class, (_, a, _)) in pairs.iter().enumerate() {
        let status = ask(&a.socket(), r#"{"cmd":"status"}"#).unwrap();
        println!();
        println!("Class {class} pair, node a's receive tasks during the runs:");
        for t in status["tasks"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or("");
            if name.contains("control-message") || name.contains("rx/") {
                println!(
                    "- `{name}`: response p50/p99 {:.1}/{:.1} µs, {} jobs, {} deferred by the minimum inter-arrival time, {} deadline misses",
                    us(t["response_ns"]["p50_ns"].as_u64().unwrap_or(0)),
                    us(t["response_ns"]["p99_ns"].as_u64().unwrap_or(0)),
                    t["released"],
                    t["deferred"],
                    t["deadline_misses"]
                );
            }
        }
    }
    for (root, a, b) in pairs {
        drop((a, b));
        let _ = std::fs::remove_dir_all(root);
    }
}

fn throughput(cli: &Cli) {
    let ia = Nanos::us(500);
    let (batch, commands) = (cli.tp_batch, cli.tp_batch.max(8));
    let ceiling = batch as f64 / (ia.get() as f64 / 1e9);
    println!(
        "\n### Overlay throughput, one flow ({} messages per figure; receive tasks take {batch} datagrams per job at most every {ia}, i.e. an admitted ceiling of {ceiling:.0} msgs/s per class; the sender's command task {commands} per 1 ms)\n",
        cli.flood
    );
    println!(
        "| case | arrived | msgs/s | ÷ raw reactor | receiver: rx-queue-full, kernel drops, duplicates; sender: retransmits |"
    );
    println!("|---|---|---|---|---|");
    let (root, a, b) = pair("tp", Wait::Park, [ia; 2], [batch; 2], commands, 1);
    for (i, size) in [64usize, 1024].into_iter().enumerate() {
        eprintln!("throughput: raw reactor, {size} B");
        let raw = raw_throughput(cli.flood, size);
        println!(
            "| raw reactor UDP {size} B | {} | {raw:.0} | 1.00 | |",
            cli.flood
        );
        for class in [0u8, 1] {
            eprintln!("throughput: overlay class {class}, {size} B");
            let run = (i * 2 + class as usize + 1) as u64;
            let req = format!(
                r#"{{"cmd":"flood","to":"{}","class":{class},"count":{},"size":{size},"run":{run},"timeout_ms":120000}}"#,
                b.id, cli.flood
            );
            ask(&a.socket(), &req).unwrap();
            let stream = || -> Option<Value> {
                let v = ask(&b.socket(), r#"{"cmd":"streams"}"#).ok()?;
                v["streams"]
                    .as_array()?
                    .iter()
                    .find(|s| s["run"] == run && s["class"] == class)
                    .cloned()
            };
            // until all arrived, or nothing more arrived for 3 s
            let (mut seen, mut since) = (0, StdInstant::now());
            wait_until(Duration::from_secs(120), || {
                let n = stream().map_or(0, |s| s["received"].as_u64().unwrap_or(0));
                if n != seen {
                    (seen, since) = (n, StdInstant::now());
                }
                n >= cli.flood || since.elapsed() > Duration::from_secs(3)
            });
            let s = stream().unwrap_or(Value::Null);
            let n = s["received"].as_u64().unwrap_or(0);
            let span = s["last_ns"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(s["first_ns"].as_u64().unwrap_or(0));
            let rate = if span > 0 {
                n as f64 / (span as f64 / 1e9)
            } else {
                0.0
            };
            // message counters, or (kernel_drops) the sum over the SAPs
            let c = |node: &NodeProc, k: &str| {
                net(&node.socket()).map_or(0, |v| {
                    v["counters"][k].as_u64().unwrap_or_else(|| {
                        v["saps"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| x[k].as_u64())
                            .sum()
                    })
                })
            };
            let name = if class == 0 {
                "best-effort"
            } else {
                "reliable"
            };
            println!(
                "| overlay class {class} ({name}) {size} B | {n} of {} ({} skipped) | {rate:.0} | {:.3} | {} / {} / {}; {} (cumulative) |",
                cli.flood,
                s["skipped"],
                rate / raw,
                c(&b, "rx_queue_full"),
                c(&b, "kernel_drops"),
                c(&b, "duplicates"),
                c(&a, "retransmits"),
            );
        }
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(root);
}

/// The simulator's kill-to-repair for `peers` peers, k = 2, two peers per super-peer.
fn simulated_repair(peers: usize, seed: u64) -> Option<f64> {
    const MS: u64 = 1_000_000;
    let mut wc = WorldConfig::new(seed);
    wc.cell_size = 2;
    wc.max_bound = 2;
    let mut sim = Sim::new(wc, peers);
    for i in 0..peers {
        let at = if i == 0 {
            Instant::ZERO
        } else {
            Instant(300 * MS + i as u64 * 100 * MS)
        };
        sim.run_until(at);
        sim.start(i);
        sim.with_node(i, |n, now| n.publish(check::sap_key(i), 1, now));
    }
    let valid = |sim: &Sim| check::tree(sim).is_ok() && check::discoverable(sim).is_ok();
    let limit = sim.now().after(20_000 * MS);
    while !valid(&sim) {
        if sim.now() >= limit {
            return None;
        }
        let t = sim.now().after(10 * MS);
        sim.run_until(t);
    }
    let t = sim.now().after(2_000 * MS);
    sim.run_until(t);
    let victim = sim
        .live()
        .find(|(_, n)| n.role() == Role::SuperPeer && n.bound_peers().count() > 0)
        .map(|(i, _)| i)?;
    sim.crash(victim);
    let at = sim.now();
    let limit = at.after(20_000 * MS);
    loop {
        let t = sim.now().after(5 * MS);
        sim.run_until(t);
        if valid(&sim) {
            return Some((sim.now().0 - at.0) as f64 / 1e6);
        }
        if sim.now() >= limit {
            return None;
        }
    }
}

fn repaired(nodes: &[&NodeProc], victim: &str, k: usize) -> bool {
    let mut roots = std::collections::BTreeSet::new();
    for n in nodes {
        let Some(v) = net(&n.socket()) else {
            return false;
        };
        let names = |x: &Value| {
            x.as_array()
                .is_some_and(|a| a.iter().any(|y| y.as_str() == Some(victim)))
        };
        if !joined(&v)
            || v["super_peer"].as_str() == Some(victim)
            || names(&v["cell"]["super_peers"])
            || names(&v["parent_members"])
            || v["cell"]["super_peers"].as_array().map_or(0, Vec::len) != k
        {
            return false;
        }
        roots.insert(v["root"].to_string());
    }
    roots.len() == 1
}

fn discoverable(nodes: &[&NodeProc]) -> bool {
    nodes.iter().all(|asker| {
        nodes.iter().all(|owner| {
            (0..2).all(|class| {
                let req = format!(
                    r#"{{"cmd":"lookup","node":"{}","class":{class},"timeout_ms":300}}"#,
                    owner.id
                );
                ask(&asker.socket(), &req)
                    .is_ok_and(|v| v["found"].as_str() == Some(owner.id.as_str()))
            })
        })
    })
}

fn repair(cli: &Cli) {
    println!(
        "\n### Kill-to-repair: {} `rtpm node` processes on loopback vs the simulator (k = 2, 2 peers per super-peer, heartbeat 25 ms)\n",
        cli.peers
    );
    let mut measured = Vec::new();
    for run in 0..cli.runs {
        eprintln!("repair: run {}/{}", run + 1, cli.runs);
        let root = temp(&format!("repair{run}"));
        let group = format!(
            "239.253.{}.{}:{}",
            std::process::id() % 250,
            run + 1,
            free_base()
        );
        let t = Topology {
            k: 2,
            pps: 2,
            mode: Wait::Park,
            min_ia: [Nanos::us(500); 2],
            batch: [2, 2],
            commands: 8,
            burst: 2,
        };
        let mut nodes = Vec::new();
        for i in 0..cli.peers {
            let n = start_node(&root, &format!("r{i}"), &group, &t);
            if i == 0 {
                wait_until(Duration::from_secs(20), || {
                    net(&n.socket()).is_some_and(|v| v["role"] == "super-peer")
                });
            }
            nodes.push(n);
        }
        let all: Vec<&NodeProc> = nodes.iter().collect();
        if wait_until(Duration::from_secs(20), || {
            all.iter()
                .all(|n| net(&n.socket()).is_some_and(|v| joined(&v)))
                && discoverable(&all)
        })
        .is_none()
        {
            eprintln!("repair: run {} did not form; skipped", run + 1);
            continue;
        }
        std::thread::sleep(Duration::from_secs(2));
        let victim = nodes.iter().position(|n| {
            net(&n.socket()).is_some_and(|v| {
                v["role"] == "super-peer"
                    && v["cell"]["members"]
                        .as_array()
                        .is_some_and(|m| !m.is_empty())
            })
        });
        let Some(victim) = victim else {
            eprintln!("repair: run {}: no super-peer with bound peers", run + 1);
            continue;
        };
        let vid = nodes[victim].id.clone();
        let mut killed = nodes.remove(victim);
        let at = StdInstant::now();
        let _ = killed.child.kill();
        let survivors: Vec<&NodeProc> = nodes.iter().collect();
        let members = wait_until(Duration::from_secs(20), || repaired(&survivors, &vid, 2));
        let found = wait_until(Duration::from_secs(20), || discoverable(&survivors));
        match (members, found) {
            (Some(m), Some(_)) => {
                let total = at.elapsed();
                measured.push(total.as_secs_f64() * 1e3);
                println!(
                    "- run {}: membership repaired (every peer bound to a live super-peer, k per cell, one tree) {:.0} ms after the kill; every SAP found by every survivor at {:.0} ms",
                    run + 1,
                    m.as_secs_f64() * 1e3,
                    total.as_secs_f64() * 1e3
                );
            }
            _ => println!("- run {}: not repaired within 20 s", run + 1),
        }
        drop(nodes);
        drop(killed);
        let _ = std::fs::remove_dir_all(root);
    }
    let mut sim: Vec<f64> = (1..=cli.sim_seeds)
        .filter_map(|s| simulated_repair(cli.peers, s))
        .collect();
    sim.sort_by(f64::total_cmp);
    measured.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    println!();
    println!("| | median ms | min ms | max ms | runs |");
    println!("|---|---|---|---|---|");
    println!(
        "| measured (processes, loopback; status polled every 5 ms) | {:.0} | {:.0} | {:.0} | {} |",
        med(&measured),
        measured.first().copied().unwrap_or(f64::NAN),
        measured.last().copied().unwrap_or(f64::NAN),
        measured.len()
    );
    println!(
        "| simulator (same k, peers per super-peer, heartbeat, size; LAN model 0.5–1 ms links; checked every 5 ms) | {:.0} | {:.0} | {:.0} | {} seeds |",
        med(&sim),
        sim.first().copied().unwrap_or(f64::NAN),
        sim.last().copied().unwrap_or(f64::NAN),
        sim.len()
    );
    if !measured.is_empty() && !sim.is_empty() {
        println!(
            "\nmeasured ÷ predicted (medians): **{:.2}**",
            med(&measured) / med(&sim)
        );
    }
}

fn main() {
    let cli = Cli::parse();
    println!(
        "<!-- overlay_latency {} on {} CPUs, {} -->",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        CpuSet::allowed().map_or(0, |c| c.len()),
        now_ns()
    );
    if matches!(cli.what, What::All | What::Latency) {
        latency(&cli);
    }
    if matches!(cli.what, What::All | What::Throughput) {
        throughput(&cli);
    }
    if matches!(cli.what, What::All | What::Repair) {
        repair(&cli);
    }
}
