//! `rtpm demo`: the embedded default scenario on one machine.
//!
//! Seven peers (by default) run as processes of this binary (`rtpm demo-peer`, see
//! [`peer`]) on loopback and form an overlay of two or more cells. Peer p0 is the
//! coordinator: an RPC server answering speed-limit requests and a subscriber to every
//! vehicle's positions. Every other peer is a vehicle: a periodic task publishing its
//! position at 100 Hz through the event service, and a thread asking the coordinator
//! for its speed limit (two-way, with a deadline) at 10 Hz. At 40 % of the run one
//! super-peer other than the coordinator's is killed with SIGKILL; the demo watches
//! the overlay repair through the peers' control sockets ([`watch`]). Then it stops
//! every peer, reads what they recorded ([`records`]), and prints and writes the report
//! ([`report`]) and two SVG figures ([`figures`]).
//!
//! Order: [`scenario`] fixes the numbers, [`cluster`] writes the peers' folders and runs
//! their processes (stopped on every exit path: its `Drop` stops what still runs, and
//! SIGINT/SIGTERM to the demo are taken by a thread that asks the main loop to stop).

pub mod cluster;
pub mod coordinator;
pub mod figures;
pub mod peer;
pub mod records;
pub mod report;
pub mod rivals;
pub mod scenario;
pub mod vehicle;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};

use self::cluster::{Cluster, Peer};
use self::peer::Role;
use self::records::Progress;
use self::report::{Repair, Report, Window};
use self::scenario::Scenario;
use self::watch::{Shape, Watched};
use super::{BAD_INPUT, NO, OK};

/// The flags of `rtpm demo` (its help text is on the `Command` variant).
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long the measured run lasts (after the overlay has formed), e.g. "30s", "120s".
    /// At least 5s.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    duration: Nanos,
    /// Where the report, the figures and the peers' folders go. Default:
    /// target/rtpm-demo/YYYYMMDD-HHMMSS/ (UTC). Created if missing; must not hold an
    /// earlier run's report.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Peer processes: one coordinator, the rest vehicles (7..=16; fewer do not make
    /// two cells).
    #[arg(long, value_name = "N", default_value_t = 7)]
    peers: usize,
}

/// Why [`demo`] returned early after SIGINT/SIGTERM.
const INTERRUPTED: &str = "interrupted";
/// The exit code then (128 + SIGINT, as shells report a Ctrl-C).
const INTERRUPTED_EXIT: u8 = 130;

/// `YYYYMMDD-HHMMSS` (UTC) of `secs` since the epoch.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil date from days since 1970-01-01 (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_ns() -> u64 {
    MonotonicClock.now().as_nanos()
}

/// Checks the flags; the error says which flag and what is valid.
fn check(args: &DemoArgs) -> Result<PathBuf, String> {
    if args.duration < Nanos::secs(5) || args.duration > Nanos::secs(3600) {
        return Err(format!(
            "--duration {}: give 5s..1h (the super-peer is killed at 40 % and the overlay needs a few seconds to repair)",
            args.duration
        ));
    }
    if !(7..=16).contains(&args.peers) {
        return Err(format!(
            "--peers {}: give 7..=16 (cells of 2 super-peers serving 2 peers each: fewer than 7 peers make one cell)",
            args.peers
        ));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("target/rtpm-demo").join(utc_stamp(secs))
    });
    if out.join("report.json").exists() {
        return Err(format!(
            "--out {}: holds an earlier run's report; give an empty or new folder",
            out.display()
        ));
    }
    std::fs::create_dir_all(&out)
        .map_err(|e| format!("--out {}: cannot create it: {e}", out.display()))?;
    Ok(out)
}

/// What this machine permits, as the peers need it: an error when they cannot run,
/// otherwise whether they can lock their memory, and lines to print.
fn machine() -> Result<(bool, Vec<String>), String> {
    let caps = rtpm::rt::probe::capabilities();
    let allowed = rtpm::rt::cpu::CpuSet::allowed().ok();
    let cpus = allowed.as_ref().map_or(0, |c| c.len());
    if cpus < 2 {
        return Err(format!(
            "this process may use {cpus} CPU(s); the peers' executors need two (one general, one rt): run it where two CPUs are allowed (taskset, cpuset)"
        ));
    }
    if !caps.sched_fifo.ok {
        return Err(format!(
            "the peers run their tasks under SCHED_FIFO, which this process may not use ({}): run it as root, or grant CAP_SYS_NICE or an rtprio limit (ulimit -r 99)",
            caps.sched_fifo.detail
        ));
    }
    let mut lines = Vec::new();
    let lock = caps.euid == 0 || caps.cap_ipc_lock;
    if !lock {
        lines.push(
            "memory is not locked in the peers (needs root or CAP_IPC_LOCK): page faults may show in the tail latencies".to_string(),
        );
    }
    // the peers' RT core is the last allowed CPU (see cluster.rs)
    if let Some(rt_core) = allowed.as_ref().and_then(|c| c.last())
        && let Some(n) = rivals::note(rt_core, &rivals::on_core(rt_core, &[]))
    {
        lines.push(format!("before the start, {n}"));
    }
    if !caps.io_uring.ok {
        lines.push(format!(
            "io_uring is not available ({}): the peers' reactors use epoll",
            caps.io_uring.detail
        ));
    }
    Ok((lock, lines))
}

/// SIGINT/SIGTERM to the demo: blocked in every thread and taken by one that sets the
/// flag the main loop polls, so the peers are stopped in order.
fn interrupts() -> Result<Arc<AtomicBool>, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()
        .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            f.store(true, Ordering::Release);
        }
    });
    Ok(flag)
}

/// The repair as the watcher thread sees it (CLOCK_MONOTONIC ns).
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    rebound_ns: Option<u64>,
    repaired_ns: Option<u64>,
    check_ns: Option<u64>,
}

/// Watches the survivors until they have rebound and every SAP (and `service`) is
/// discoverable, or until `stop`.
fn watch_repair(
    survivors: Vec<Watched>,
    victim_id: String,
    service: Option<(String, String)>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let all: Vec<&Watched> = survivors.iter().collect();
        let set = |f: &dyn Fn(&mut Seen)| {
            let mut g = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut g);
        };
        while !stop.load(Ordering::Acquire) {
            if watch::rebound(&all, &victim_id) {
                let t = now_ns();
                set(&|s| s.rebound_ns = Some(t));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while !stop.load(Ordering::Acquire) {
            let began = now_ns();
            let svc = service.as_ref().map(|(k, o)| (k.as_str(), o.as_str()));
            if watch::discoverable(&all, svc) {
                let t = now_ns();
                set(&|s| {
                    s.repaired_ns = Some(t);
                    s.check_ns = Some(t - began);
                });
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// Sums the peers' counters.
fn total(c: &Cluster) -> Progress {
    let mut t = Progress::default();
    for p in &c.peers {
        let x = p.progress();
        t.published += x.published;
        t.publish_errors += x.publish_errors;
        t.received += x.received;
        t.dropped += x.dropped;
        t.deadline_notices += x.deadline_notices;
        t.liveliness_lost += x.liveliness_lost;
        t.rpc_ok += x.rpc_ok;
        t.rpc_timeout += x.rpc_timeout;
        t.rpc_failed += x.rpc_failed;
        t.served += x.served;
        t.task_misses += x.task_misses;
        t.other_task_misses += x.other_task_misses;
        if t.last_error.is_none() {
            t.last_error = x.last_error;
        }
    }
    t
}

fn watched(c: &Cluster, ids: &[String], skip: Option<usize>) -> Vec<Watched> {
    c.peers
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .map(|(i, p)| Watched {
            socket: p.socket.clone(),
            id: ids[i].clone(),
        })
        .collect()
}

/// Picks the super-peer to kill: not the coordinator's; one with peers bound to it
/// first (so that they have to rebind).
fn victim(c: &Cluster, ids: &[String]) -> Option<(usize, usize)> {
    let all = watched(c, ids, None);
    let mut best: Option<(usize, usize)> = None;
    for (i, w) in all.iter().enumerate().skip(1) {
        if let Some(bound) = watch::super_peer(w)
            && best.is_none_or(|(_, b)| bound > b)
        {
            best = Some((i, bound));
        }
    }
    best
}

/// Runs `rtpm demo`.
pub fn run(args: DemoArgs) -> u8 {
    let out = match check(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rtpm demo: {e}");
            return BAD_INPUT;
        }
    };
    match demo(&args, &out) {
        Ok(code) => code,
        Err(e) if e == INTERRUPTED => {
            println!("rtpm demo: interrupted: the peers are stopped");
            INTERRUPTED_EXIT
        }
        Err(e) => {
            eprintln!("rtpm demo: {e}");
            if out.join("peers").join("p0").join("log").exists() {
                eprintln!(
                    "rtpm demo: the peers' logs are in {}",
                    out.join("peers").display()
                );
            }
            NO
        }
    }
}

fn demo(args: &DemoArgs, out: &Path) -> Result<u8, String> {
    let (lock_memory, machine_notes) = machine()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let stop = interrupts()?;
    let scenario = Scenario::embedded(args.peers);
    let passphrase = cluster::random_hex(16).map_err(|e| format!("/dev/urandom: {e}"))?;
    let mut c = Cluster::prepare(out, &scenario)
        .map_err(|e| format!("cannot write the peers' folders in {}: {e}", out.display()))?;
    println!(
        "rtpm demo: {} peers on 127.0.0.1 (p0 the coordinator, p1..p{} vehicles), overlay group {}, a key made for this run",
        args.peers,
        args.peers - 1,
        c.group
    );
    println!("rtpm demo: output in {}", out.display());
    for n in &machine_notes {
        println!("rtpm demo: note: {n}");
    }
    let interrupted = || stop.load(Ordering::Acquire);

    // start: the coordinator first (it founds the root), then the vehicles
    let wait = |c: &mut Cluster,
                what: &str,
                secs: u64,
                f: &mut dyn FnMut(&Cluster) -> bool|
     -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(secs);
        while !f(c) {
            if interrupted() {
                return Err(INTERRUPTED.into());
            }
            if let Some(i) = c.peers.iter_mut().position(Peer::exited) {
                let p = &c.peers[i];
                return Err(format!(
                    "{} exited while starting; the end of its log ({}):\n    {}",
                    p.name,
                    p.dir.join("log").display(),
                    p.log_tail()
                ));
            }
            if Instant::now() >= until {
                return Err(format!("{what} within {secs} s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    let spawned_at = Instant::now();
    c.spawn(0, &exe, &passphrase, lock_memory)
        .map_err(|e| format!("cannot start p0: {e}"))?;
    wait(&mut c, "p0 did not become a super-peer", 10, &mut |c| {
        watch::network(&c.peers[0].socket).is_some_and(|n| n["role"] == "super-peer")
    })?;
    for i in 1..c.peers.len() {
        c.spawn(i, &exe, &passphrase, lock_memory)
            .map_err(|e| format!("cannot start p{i}: {e}"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ids = Vec::new();
    for i in 0..c.peers.len() {
        let socket = c.peers[i].socket.clone();
        let mut id = None;
        wait(
            &mut c,
            &format!("p{i} did not answer on its control socket"),
            10,
            &mut |_| {
                id = watch::node_id(&socket);
                id.is_some()
            },
        )?;
        ids.push(id.unwrap_or_default());
    }
    let all = watched(&c, &ids, None);
    let refs: Vec<&Watched> = all.iter().collect();
    let mut formed = Shape::default();
    let mut last_print = Instant::now();
    wait(
        &mut c,
        "the overlay did not form (every peer joined, one tree, two cells)",
        20,
        &mut |_| {
            formed = watch::shape(&refs);
            if last_print.elapsed() >= Duration::from_secs(1) {
                println!("  forming: {formed}");
                last_print = Instant::now();
            }
            formed.formed(refs.len())
        },
    )
    .map_err(|e| {
        if interrupted() {
            e
        } else {
            format!("{e} ({formed})")
        }
    })?;
    println!(
        "rtpm demo: overlay formed in {:.1} s: {formed}",
        spawned_at.elapsed().as_secs_f64()
    );
    // the coordinator's service, when discovery knows it, is part of the repair check
    let coordinator_key = scenario::coordinator_id().to_string();
    let service_known = refs.iter().skip(1).all(|w| {
        crate::cmd::status::ask(
            &w.socket,
            &serde_json::json!({"cmd": "lookup", "key": coordinator_key, "timeout_ms": 500}),
        )
        .is_ok_and(|v| v["found"].as_str() == Some(ids[0].as_str()))
    });

    // the measured run
    let d = args.duration;
    let start_ns = now_ns();
    let end_ns = start_ns + d.get();
    let kill_due = start_ns + (d.get() as f64 * scenario.kill_at) as u64;
    println!(
        "rtpm demo: running {:.0} s; a super-peer is killed at {:.1} s",
        d.get() as f64 / 1e9,
        (kill_due - start_ns) as f64 / 1e9
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher_stop = Arc::new(AtomicBool::new(false));
    let mut watcher = None;
    let mut kill: Option<(usize, u64, String)> = None;
    let mut next_line = start_ns + 1_000_000_000;
    let mut before = total(&c);
    let rt_core = rtpm::rt::cpu::CpuSet::allowed().ok().and_then(|c| c.last());
    let mut rivals_seen = Vec::new();
    while now_ns() < end_ns {
        if interrupted() {
            println!("rtpm demo: interrupted: stopping the peers");
            watcher_stop.store(true, Ordering::Release);
            let _ = c.stop_all(Duration::from_secs(3));
            return Ok(INTERRUPTED_EXIT);
        }
        if kill.is_none() && now_ns() >= kill_due {
            match victim(&c, &ids) {
                Some((i, bound)) => {
                    let p = &c.peers[i];
                    let what = format!(
                        "{} (super-peer with {bound} peer(s) bound, vehicle {})",
                        p.name, p.vehicle
                    );
                    println!("rtpm demo: killing {what} with SIGKILL");
                    let at = now_ns();
                    c.kill(i)
                        .map_err(|e| format!("cannot kill {}: {e}", c.peers[i].name))?;
                    let survivors = watched(&c, &ids, Some(i));
                    let service = service_known.then(|| (coordinator_key.clone(), ids[0].clone()));
                    watcher = Some(watch_repair(
                        survivors,
                        ids[i].clone(),
                        service,
                        Arc::clone(&seen),
                        Arc::clone(&watcher_stop),
                    ));
                    kill = Some((i, at, what));
                }
                None => {
                    println!(
                        "rtpm demo: no super-peer other than the coordinator's to kill; trying again in 1 s"
                    );
                }
            }
            if kill.is_none() {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        if now_ns() >= next_line {
            next_line += 1_000_000_000;
            if let Some(cpu) = rt_core {
                rivals::merge(&mut rivals_seen, rivals::on_core(cpu, &c.pids()));
            }
            let now = total(&c);
            let survivors = watched(&c, &ids, kill.as_ref().map(|k| k.0));
            let shape = watch::shape(&survivors.iter().collect::<Vec<_>>());
            let s = *seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = match (&kill, s.rebound_ns, s.repaired_ns) {
                (None, ..) => String::new(),
                (Some((_, at, _)), _, Some(r)) => {
                    format!(" · repaired in {} ms", (r - at) / 1_000_000)
                }
                (Some((_, at, _)), Some(r), None) => format!(
                    " · rebound in {} ms, checking discovery",
                    (r - at) / 1_000_000
                ),
                (Some(_), None, None) => " · repairing".to_string(),
            };
            println!(
                "  [{:>5.1} s] positions {} delivered (+{}/s) · RPC {} ok, {} timeouts, {} failed · misses: {} DEADLINE, {} task · overlay: {shape}{state}",
                (now_ns() - start_ns) as f64 / 1e9,
                now.received,
                now.received.saturating_sub(before.received),
                now.rpc_ok,
                now.rpc_timeout,
                now.rpc_failed,
                now.deadline_notices,
                shape.task_misses,
            );
            if now.received == before.received
                && let Some(e) = &now.last_error
            {
                println!("           latest error at a peer: {e}");
            }
            before = now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    watcher_stop.store(true, Ordering::Release);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    println!("rtpm demo: stopping the peers");
    let forced = c.stop_all(Duration::from_secs(5));
    let mut notes: Vec<String> = machine_notes;
    if let Some(cpu) = rt_core
        && let Some(n) = rivals::note(cpu, &rivals_seen)
    {
        notes.push(format!("during the run, {n}"));
    }
    notes.extend(forced);
    for p in &mut c.peers {
        if !p.killed && !p.progress().r#final {
            notes.push(format!(
                "{} sent no final counters: see {}",
                p.name,
                p.dir.join("log").display()
            ));
        }
    }
    if !service_known {
        notes.push("the coordinator's service was not discoverable through the overlay when the run started: the repair check covers the SAPs only".into());
    }

    // the report
    let coordinator = c.peers.iter().find(|p| p.role == Role::Coordinator);
    let mut samples = Vec::new();
    let mut notices = Vec::new();
    if let Some(co) = coordinator {
        for p in c.peers.iter().filter(|p| p.role == Role::Vehicle) {
            samples.extend(records::read_samples(
                &co.dir.join(records::samples_file(p.vehicle)),
            ));
            notices.extend(records::read_notices(
                &co.dir.join(records::notices_file(p.vehicle)),
            ));
        }
    }
    let mut rpcs = Vec::new();
    for p in c.peers.iter().filter(|p| p.role == Role::Vehicle) {
        rpcs.extend(records::read_rpcs(&p.dir.join(records::RPCS)));
    }
    rpcs.sort_by_key(|r| r.issued_ns);
    let window = Window {
        start_ns,
        end_ns,
        kill_ns: kill.as_ref().map(|k| k.1),
    };
    let killed_vehicle = kill.as_ref().map(|k| c.peers[k.0].vehicle);
    let (streams, all) = report::streams(&samples, &notices, &window, killed_vehicle)?;
    let rpc = report::rpcs(&rpcs, &window)?;
    let s = *seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let repair = kill.as_ref().map(|(_, at, what)| Repair {
        victim: what.clone(),
        killed_at_s: (at - start_ns) as f64 / 1e9,
        rebound_ms: s.rebound_ns.map(|t| (t - at) as f64 / 1e6),
        repaired_ms: s.repaired_ns.map(|t| (t - at) as f64 / 1e6),
        check_ms: s.check_ns.map(|t| t as f64 / 1e6),
        criterion: format!(
            "kill -> every survivor rebound, and every survivor's two SAPs{} found by every survivor through discovery; polled every 10 ms",
            if service_known { " and the coordinator's service" } else { "" }
        ),
    });
    let finals: Vec<Progress> = c.peers.iter().map(cluster::Peer::progress).collect();
    let rep = Report {
        peers: args.peers,
        cells: formed.cells,
        super_peers: formed.super_peers,
        duration_s: d.get() as f64 / 1e9,
        samples: streams.iter().map(|s| s.received).sum(),
        all_streams_us: report::Micros::of(&all),
        streams,
        rpc,
        task_misses: finals.iter().map(|p| p.task_misses).sum(),
        other_task_misses: finals.iter().map(|p| p.other_task_misses).sum(),
        repair,
        notes,
    };
    let text = rep.text();
    println!();
    print!("{text}");
    let instants = figures::Instants {
        start_ns,
        end_ns,
        kill_ns: kill.as_ref().map(|k| k.1),
        rebound_ns: s.rebound_ns,
        repaired_ns: s.repaired_ns,
    };
    let write = |name: &str, body: &str| {
        std::fs::write(out.join(name), body)
            .map_err(|e| format!("cannot write {}: {e}", out.join(name).display()))
    };
    let in_window: Vec<records::Sample> = samples
        .into_iter()
        .filter(|x| window.holds(x.sent_ns))
        .collect();
    write("latency.svg", &figures::distributions(&rep))?;
    write(
        "timeline.svg",
        &figures::timeline(&in_window, &rpcs, &instants),
    )?;
    write("report.txt", &text)?;
    write(
        "report.json",
        &serde_json::to_string_pretty(&rep).map_err(|e| format!("the report as JSON: {e}"))?,
    )?;
    println!();
    println!(
        "Wrote {0}/report.txt, report.json, latency.svg (latency distributions), timeline.svg (around the failure), peers/ (each peer's config, log and records)",
        out.display()
    );
    let mut failed = Vec::new();
    if rep.samples == 0 {
        failed.push("no position reached the coordinator");
    }
    if rep.rpc.answered == 0 {
        failed.push("no speed-limit request was answered");
    }
    if rep.repair.as_ref().is_none_or(|r| r.repaired_ms.is_none()) {
        failed.push("the repair was not seen within the run");
    }
    if failed.is_empty() {
        Ok(OK)
    } else {
        println!(
            "rtpm demo: the scenario did not hold: {}",
            failed.join("; ")
        );
        Ok(NO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2026-11-27 20:00:00 UTC
        assert_eq!(utc_stamp(1_795_809_600), "20261127-200000");
        // a leap day
        assert_eq!(utc_stamp(951_782_400 + 3661), "20000229-010101");
    }
}
