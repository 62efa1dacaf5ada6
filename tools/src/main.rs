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
    ///
    /// Lists the CPUs this process may use (its affinity and cpuset cgroup), the role and
    /// policy of each from the effective per-core config (DIR/cores/cpuN.toml, or the
    /// embedded default), and what the machine permits: the RT priority limit, whether
    /// SCHED_FIFO and SCHED_DEADLINE work (probed in a throwaway thread, then undone), the
    /// deadline bandwidth cap, whether io_uring works (probed) or is disabled, the memlock
    /// limit, and whether the shield is active.
    ///
    /// Example: rtpm topology --config config/example --json
    Topology(cmd::topology::TopologyArgs),
    /// Shield the RT cores with exclusive cpusets (root), or undo / show it.
    ///
    /// Makes the RT cores a scheduler root domain of their own with exclusive cpusets
    /// (cgroup v1 or v2) and moves every other movable task of the system to the general
    /// cores, so nothing else runs on the RT cores and SCHED_DEADLINE threads can be
    /// pinned to them. Kernel threads bound to a CPU cannot move and are counted. Every
    /// change is journalled in /run/rtpm/shield.toml; a setup that fails halfway rolls
    /// back, and `rtpm shield --undo` restores exactly what was there before.
    ///
    /// Examples: sudo rtpm shield --config config/example; rtpm shield --status; sudo rtpm shield --undo
    Shield(cmd::shield::ShieldArgs),
    /// Measure the executor's wake-up latency against a same-run cyclictest-method baseline.
    ///
    /// N periodic tasks with empty bodies run on the first RT core (fixed priority, in the
    /// chosen model), each released every INTERVAL on absolute CLOCK_MONOTONIC times; a
    /// job's latency is its start minus its release. With --baseline the same process
    /// alternates, in slices on the same core, with a plain loop using cyclictest's method
    /// (SCHED_FIFO at the same priority, absolute clock_nanosleep, mlockall), and prints
    /// min/p50/p90/p99/p99.9/max for both and the ratios executor/baseline.
    /// --compare-cyclictest also runs the real cyclictest (rt-tests) with matching
    /// parameters afterwards, as a third column. --duration is measured on each side.
    /// Files go to --out: executor.hgrm, baseline.hgrm, cyclictest.hgrm (HdrHistogram
    /// percentile distributions, in µs) and latency.svg. Needs SCHED_FIFO (root or
    /// CAP_SYS_NICE) and two CPUs; install stress-ng and rt-tests with
    /// bench/scripts/install-load-tools.sh.
    ///
    /// Example: rtpm latency --tasks 2 --interval 1ms --duration 30s --model cooperative --baseline --load stress-ng --json
    Latency(cmd::latency::LatencyArgs),
    /// Manage the users file: add (prompting for the passphrase), remove, list.
    ///
    /// The users file holds each user's argon2id passphrase hash (never the passphrase)
    /// and their grants: TARGET=PERMS, where TARGET is `*`, a service name, topic:NAME or
    /// a UUID, and PERMS are execute, publish, subscribe, admin. `add` prompts twice
    /// without echo on a terminal; when standard input is not a terminal it reads the
    /// passphrase from its first line (for scripts). The file is written atomically with
    /// mode 0600. Point node.toml's `users` key at it.
    ///
    /// Example: rtpm user add alice --users config/users.toml --grant '*=admin' --grant topic:positions=publish,subscribe
    User(cmd::user::UserArgs),
}

fn main() -> ExitCode {
    let code = match Cli::parse().command {
        Command::Topology(a) => cmd::topology::run(a),
        Command::Shield(a) => cmd::shield::run(a),
        Command::Latency(a) => cmd::latency::run(a),
        Command::User(a) => cmd::user::run(a),
    };
    ExitCode::from(code)
}
