//! One peer of the demo, as its own process (`rtpm demo-peer`, hidden; `rtpm demo`
//! starts them): a runtime from the peer's folder with its overlay and control socket,
//! then its part of the scenario — the coordinator or one vehicle — until SIGTERM.
//!
//! It prints its counters as a JSON line ([`Progress`]) every 250 ms on standard output,
//! writes its measurements into its folder ([`records`](super::records)), logs to
//! standard error, and stops by itself when the demo that started it is gone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use rtpm::{Permissions, Runtime};

use super::records::Progress;
use super::scenario::Scenario;
use super::{coordinator, vehicle};
use crate::cmd::{BAD_INPUT, NO, OK};

/// The environment variable that carries the demo user's passphrase to the peers (not
/// on the command line, where `ps` would show it).
pub const PASSPHRASE_ENV: &str = "RTPM_DEMO_PASSPHRASE";
/// The demo's user on every peer.
pub const USER: &str = "demo";

/// What a peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Serves speed limits over RPC and subscribes to every vehicle's positions.
    Coordinator,
    /// Publishes its position at 100 Hz and asks the coordinator for its speed limit.
    Vehicle,
}

/// The flags of `rtpm demo-peer` (started by `rtpm demo`, not by hand).
#[derive(Args, Debug)]
pub struct PeerArgs {
    /// The peer's folder: node.toml, cores/, and where its records go.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// What the peer does.
    #[arg(long, value_enum)]
    role: Role,
    /// The vehicle's number (vehicles only).
    #[arg(long, default_value_t = 0)]
    vehicle: u32,
    /// How many vehicles there are, numbered 1..=N (the coordinator subscribes to each).
    #[arg(long, default_value_t = 0)]
    vehicles: u32,
    /// Lock the process's memory (mlockall), as a real-time process should.
    #[arg(long)]
    lock_memory: bool,
}

/// A peer's counters, shared by its threads and tasks (atomics: the tasks take no lock).
#[derive(Debug, Default)]
pub struct Counters {
    /// See [`Progress`].
    pub published: AtomicU64,
    /// See [`Progress`].
    pub publish_errors: AtomicU64,
    /// See [`Progress`].
    pub received: AtomicU64,
    /// See [`Progress`].
    pub dropped: AtomicU64,
    /// See [`Progress`].
    pub deadline_notices: AtomicU64,
    /// See [`Progress`].
    pub liveliness_lost: AtomicU64,
    /// See [`Progress`].
    pub rpc_ok: AtomicU64,
    /// See [`Progress`].
    pub rpc_timeout: AtomicU64,
    /// See [`Progress`].
    pub rpc_failed: AtomicU64,
    /// See [`Progress`].
    pub served: AtomicU64,
    /// The latest error (written by best-effort threads only).
    pub last_error: Mutex<Option<String>>,
}

impl Counters {
    /// Bumps a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers `e` as the latest error.
    pub fn error(&self, e: impl std::fmt::Display) {
        let mut g = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Some(e.to_string());
    }

    fn progress(&self) -> Progress {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Progress {
            published: l(&self.published),
            publish_errors: l(&self.publish_errors),
            received: l(&self.received),
            dropped: l(&self.dropped),
            deadline_notices: l(&self.deadline_notices),
            liveliness_lost: l(&self.liveliness_lost),
            rpc_ok: l(&self.rpc_ok),
            rpc_timeout: l(&self.rpc_timeout),
            rpc_failed: l(&self.rpc_failed),
            served: l(&self.served),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            ..Progress::default()
        }
    }
}

/// What a role leaves running: its threads stop when `stop` is set, and are joined.
pub type Workers = Vec<std::thread::JoinHandle<()>>;

fn say(p: &Progress) {
    if let Ok(line) = serde_json::to_string(p) {
        println!("{line}");
    }
}

/// The demo's own tasks' and the other tasks' deadline misses.
fn task_misses(rt: &Runtime, session: &rtpm::Session) -> (u64, u64) {
    let reports = rt.task_reports(session).unwrap_or_default();
    let mine = |n: &str| n.contains("demo.");
    (
        reports
            .iter()
            .filter(|t| mine(&t.name))
            .map(|t| t.deadline_misses)
            .sum(),
        reports
            .iter()
            .filter(|t| !mine(&t.name))
            .map(|t| t.deadline_misses)
            .sum(),
    )
}

/// Runs `rtpm demo-peer`.
pub fn run(args: PeerArgs) -> u8 {
    let Ok(passphrase) = std::env::var(PASSPHRASE_ENV) else {
        eprintln!(
            "rtpm demo-peer: {PASSPHRASE_ENV} is not set; this command is started by `rtpm demo`"
        );
        return BAD_INPUT;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,rtpm=info,rtpm_overlay=info,rtpm_tools=info",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    // as `rtpm node`: SIGINT/SIGTERM blocked in every thread, taken by sigwait below
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("rtpm demo-peer: cannot block SIGINT/SIGTERM: {e}");
        return NO;
    }
    let rt = match Runtime::builder()
        .config_dir(&args.config)
        .user(USER, &passphrase, &[("*", Permissions::ALL)])
        .lock_memory(args.lock_memory)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtpm demo-peer: {e}");
            return NO;
        }
    };
    for w in rt.warnings() {
        tracing::warn!("{w}");
    }
    let session = match rt.login(USER, &passphrase) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtpm demo-peer: {e}");
            return NO;
        }
    };
    let scenario = Scenario::embedded(0);
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = match args.role {
        Role::Coordinator => {
            coordinator::start(&rt, &session, args.vehicles, &args.config, &counters, &stop)
        }
        Role::Vehicle => vehicle::start(
            &rt,
            &session,
            &scenario,
            args.vehicle,
            &args.config,
            &counters,
            &stop,
        ),
    };
    let workers = match started {
        Ok(w) => w,
        Err(e) => {
            eprintln!("rtpm demo-peer: the {:?} did not start: {e}", args.role);
            return NO;
        }
    };
    tracing::info!(role = ?args.role, vehicle = args.vehicle, "demo peer running");
    // the reporter: counters every 250 ms; SIGTERM to itself when the demo is gone
    let reporter = {
        let counters = Arc::clone(&counters);
        let stop = Arc::clone(&stop);
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                say(&counters.progress());
                if std::os::unix::process::parent_id() != parent {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGTERM);
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let _ = signals.wait();
    stop.store(true, Ordering::Release);
    for w in workers {
        let _ = w.join();
    }
    let _ = reporter.join();
    let mut last = counters.progress();
    (last.task_misses, last.other_task_misses) = task_misses(&rt, &session);
    last.r#final = true;
    say(&last);
    drop(rt);
    OK
}
