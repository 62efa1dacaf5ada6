//! `rtpm node`: run a peer from a config folder (or the embedded loopback peer) until
//! SIGINT or SIGTERM, then leave its overlays, announced, and exit.
//!
//! Order: validate everything (node.toml with its `[[overlay]]` sections and key files,
//! the per-core files, the users file; every fixed SAP address is bound and released at
//! once) before anything starts, so a bad folder exits with code 2 and binds nothing.
//! Then the logger (level and format from the flags, else node.toml), the signal mask
//! (SIGINT and SIGTERM are blocked in every thread and taken by the main thread with
//! `sigwait`, so no handler runs in the middle of a real-time job), the runtime (executor,
//! services, overlays — admission refusals also exit 2, naming `overlay[i]`), and the
//! control socket `rtpm status` asks.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use rtpm::config::{LoadedConfig, NodeConfig, default_control_socket};
use rtpm::rt::config::Partition;
use rtpm::rt::time::Nanos;
use rtpm::security::UsersFile;
use rtpm::{Error, Runtime};

use super::{BAD_INPUT, NO, OK};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// The flags of this subcommand (its help text is on the `Command` variant).
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The config folder: DIR/node.toml and DIR/cores/*.toml. Without it, the embedded
    /// default: a peer of the `loopback` overlay on 127.0.0.1 (free ports, public key).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Log level (overrides node.toml's `log`): error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The control socket (overrides node.toml's `control`; default
    /// /run/rtpm/NAME.sock for root, else under $XDG_RUNTIME_DIR or /tmp).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Leave and exit after this long (e.g. "30s"), as SIGTERM would.
    #[arg(long, value_name = "DURATION")]
    duration: Option<Nanos>,
    /// Validate the folder and exit: nothing is bound, nothing starts.
    #[arg(long)]
    check: bool,
}

fn load(args: &NodeArgs) -> Result<LoadedConfig, Error> {
    match &args.config {
        Some(dir) => LoadedConfig::load(dir),
        None => Ok(LoadedConfig {
            node: NodeConfig::embedded_peer()?,
            partition: Partition::embedded_default()?,
            users: UsersFile::new(),
            dir: None,
        }),
    }
}

fn level(args: &NodeArgs, cfg: &LoadedConfig) -> Result<String, String> {
    match &args.log {
        None => Ok(cfg.node.node.log.as_str().to_string()),
        Some(l) => match l.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => Ok(l.clone()),
            other => Err(format!(
                "--log {other}: give error, warn, info, debug or trace"
            )),
        },
    }
}

fn init_logging(level: &str, format: LogFormat) {
    // the level applies to rtpm's crates; other crates log warnings and errors
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,rtpm={level},rtpm_rt={level},rtpm_net={level},rtpm_overlay={level},rtpm_tools={level}"
    ));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// Runs `rtpm node`.
pub fn run(args: NodeArgs) -> u8 {
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtpm node: {e}");
            return BAD_INPUT;
        }
    };
    let level = match level(&args, &cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rtpm node: {e}");
            return BAD_INPUT;
        }
    };
    if args.check {
        println!(
            "rtpm node: {} is valid: node `{}`, {} overlay(s), {} core file(s)",
            args.config
                .as_ref()
                .map_or("the embedded default".into(), |d| d.display().to_string()),
            cfg.node.node.name,
            cfg.node.overlay.len(),
            cfg.partition.cores.len()
        );
        return OK;
    }
    init_logging(&level, args.log_format);
    // before any thread exists: every thread inherits the mask, only sigwait takes them
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("rtpm node: cannot block SIGINT/SIGTERM: {e}");
        return NO;
    }
    let socket = args
        .socket
        .clone()
        .or_else(|| cfg.node.node.control.clone())
        .unwrap_or_else(|| default_control_socket(&cfg.node.node.name));
    let rt = match Runtime::builder()
        .config(cfg)
        .control_socket(&socket)
        .build()
    {
        Ok(rt) => rt,
        Err(e @ Error::Config { .. }) => {
            eprintln!("rtpm node: {e}");
            return BAD_INPUT;
        }
        Err(e) => {
            eprintln!("rtpm node: {e}");
            return NO;
        }
    };
    let (name, id) = rt.node();
    for n in rt.networks().iter() {
        match n.report() {
            Some(r) => tracing::info!(
                network = n.name(),
                address = %r.address,
                group = %r.group,
                "joining"
            ),
            None => tracing::info!(network = n.name(), "joining"),
        }
    }
    tracing::info!(node = name, %id, socket = %socket.display(), "node running; SIGINT or SIGTERM leaves and exits");
    if let Some(d) = args.duration {
        std::thread::spawn(move || {
            std::thread::sleep(d.to_duration());
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGTERM);
        });
    }
    let sig = match signals.wait() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "sigwait failed; leaving");
            Signal::SIGTERM
        }
    };
    tracing::info!(signal = %sig, "leaving the overlays");
    let report = rt.stop();
    let misses: u64 = report
        .as_ref()
        .map_or(0, |r| r.tasks.iter().map(|t| t.deadline_misses).sum());
    tracing::info!(deadline_misses = misses, "node stopped");
    OK
}
