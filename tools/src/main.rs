//! `rtpm`, the command line of the rtpm real-time middleware.
//!
//! Each subcommand lives in its own module under `cmd/`. Exit codes: 0 for success, 1
//! when the command ran and its answer is "no" (a rejected task set, a refused shield), 2
//! for bad input (an unreadable file, a bad flag), with a message naming what was wrong.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// rtpm: real-time peer-to-peer middleware for multicore Linux.
///
/// Cores are split into `rt` cores, reserved for admitted real-time work, and `general`
/// cores, from per-core files (DIR/cores/cpuN.toml) or the embedded default (the last
/// allowed CPU is rt). Start with `rtpm topology`.
#[derive(Parser, Debug)]
#[command(name = "rtpm", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the cores, their roles and policies, and what this machine permits.
    Topology(cmd::topology::TopologyArgs),
    /// Shield the RT cores with exclusive cpusets (root), or undo / show it.
    Shield(cmd::shield::ShieldArgs),
    /// Measure the executor's wake-up latency against a same-run cyclictest-method baseline.
    Latency(cmd::latency::LatencyArgs),
}

fn main() -> ExitCode {
    let code = match Cli::parse().command {
        Command::Topology(a) => cmd::topology::run(a),
        Command::Shield(a) => cmd::shield::run(a),
        Command::Latency(a) => cmd::latency::run(a),
    };
    ExitCode::from(code)
}
