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
    /// Analyse a task-set file: which tasks fit on the RT cores, and why others do not.
    ///
    /// Offers the file's tasks to admission control in decreasing density (pinned tasks
    /// first, ties in file order), each to a core chosen by the heuristic; a task that fits
    /// nowhere is rejected and the rest continue. Prints a table per core (task, priority,
    /// utilisation, deadline, worst-case response time, verdict), then each rejection with
    /// the test that failed, the task that would miss and by how much. Exit code 0 when
    /// every task is admitted, 1 when any is rejected, 2 for bad input (nothing else is
    /// printed then).
    ///
    /// The file (TOML; every [analysis] key is optional and overridden by its flag):
    ///
    ///   [analysis]
    ///   policy = "fp"            # "edf" | "fp" (default fp)
    ///   priority = "dm"          # fp only: "rm" | "dm" | "audsley" | "explicit" (default dm)
    ///   preemptive = true        # false = cooperative (non-preemptive) dispatch
    ///   cores = 1                # RT cores to partition over (default 1)
    ///   heuristic = "ffd"        # "ffd" | "bfd" | "wfd"
    ///   utilization_cap = 1.0    # per core, 0 < x <= 1
    ///   overhead = "25us"        # per job (default: the measured DEFAULT_JOB_OVERHEAD, 25us)
    ///
    ///   [[task]]
    ///   name = "brake"           # unique; required
    ///   kind = "periodic"        # "periodic" | "sporadic" (default periodic)
    ///   period = "10ms"          # required; minimum inter-arrival time if sporadic
    ///   wcet = "2ms"             # required
    ///   deadline = "10ms"        # default = period; wcet <= deadline <= period
    ///   offset = "0ms"           # optional; the analysis assumes the worst phasing anyway
    ///   jitter = "0ms"           # optional release jitter
    ///   blocking = "0ms"         # optional blocking by lower-priority work
    ///   burst = 1                # sporadic only: up to this many jobs per window of
    ///                            # period (1..=64); charged as burst x wcet
    ///   priority = 1             # only with priority = "explicit"; 1 is the highest
    ///   core = 0                 # optional pin, 0-based index among the RT cores
    ///
    /// Durations are unit strings: "250us", "10ms", "1s". Preemptive EDF cores are also
    /// bounded by the SCHED_DEADLINE bandwidth (this machine's, unless --dl-bandwidth).
    /// With --json, stdout is one object: {"schedulable", "policy", "cores": [{"core",
    /// "utilization", "tasks": [{"name", "priority", "response_time_ns",
    /// "deadline_ns"}]}], "rejected": [{"name", "reason", "response_time_ns"}]}.
    ///
    /// Examples: rtpm admit tasks.toml; rtpm admit tasks.toml --policy edf --cores 2 --json
    #[command(verbatim_doc_comment)]
    Admit(cmd::admit::AdmitArgs),
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
    /// Run a peer: the runtime, its services and its overlays, until SIGINT or SIGTERM.
    ///
    /// Starts rtpm::Runtime from DIR/node.toml and DIR/cores/*.toml: the executor on the
    /// RT cores, the kernel services, and one overlay per [[overlay]] section (its SAPs,
    /// one per QoS class; the bootstrap multicast group; every protocol activity as an
    /// admitted task). Everything is validated before anything starts: a bad file, key,
    /// address (each is bound and released first) or an inadmissible task set exits with
    /// code 2, names the file and the key, and binds nothing. SIGINT or SIGTERM makes the
    /// node leave its overlays, announced, and exit 0. Logs go to standard error through
    /// tracing (--log, --log-format; default: node.toml's `log`). `rtpm status` asks the
    /// running node over its control socket.
    ///
    /// Without --config the embedded default starts a peer of the `loopback` overlay on
    /// 127.0.0.1 (group 239.255.77.1:7600, free ports, a public key: for trying rtpm on
    /// one machine). Three peers on one machine: see README.md.
    ///
    /// Example: rtpm node --config config/three-peers/a
    Node(cmd::node::NodeArgs),
    /// Ask a running node what it is: role, cell, SAPs, tasks, message counters.
    ///
    /// Connects to the node's control socket and prints its role (peer or super-peer),
    /// its cell with the cell's super-peers and members and the parent cell, its bound
    /// SAPs with their counters, its admitted tasks with response and release-latency
    /// percentiles and deadline misses, and its message counters, including drops for a
    /// bad MAC (authentication), replays, full receive and send queues. Pick the node
    /// with --socket PATH, or --node NAME|ID|ADDR among the sockets in the default folder
    /// (/run/rtpm for root); with neither, the only node running. --json prints the
    /// node's answer as one JSON object.
    ///
    /// Example: rtpm status --node a --json
    Status(cmd::status::StatusArgs),
    /// Run the embedded scenario: peers on loopback, vehicles, a coordinator, a crash.
    ///
    /// Starts --peers processes of this binary (default 7) on 127.0.0.1, each an rtpm
    /// runtime with one overlay (cells of 2 super-peers serving 2 peers each, 25 ms
    /// heartbeats; a key, a multicast group and free ports made for this run), and waits
    /// until they form one tree of two or more cells. Peer p0 is the coordinator: an RPC
    /// server answering speed-limit requests, and a subscriber to every vehicle's
    /// positions. Every other peer is a vehicle: a periodic task (admitted on the RT
    /// core) publishes its position at 100 Hz through the event service, promising a
    /// 15 ms DEADLINE, and a thread asks the coordinator for its speed limit over
    /// two-way RPC with a 20 ms deadline at 10 Hz, then drives at it.
    ///
    /// At 40 % of the run a super-peer other than the coordinator's is killed with
    /// SIGKILL (the choice is printed), and the demo polls the survivors' control sockets
    /// until every one has rebound and every SAP (and the coordinator's service) can be
    /// found through discovery again: the repair time. A line a second shows the
    /// progress. Then the peers are stopped and the report printed: per-vehicle
    /// publish-to-delivery latency percentiles (p50, p99, p99.9, max), lost samples and
    /// DEADLINE notices, the tasks' deadline misses, the RPC round trips and timeouts,
    /// and the repair time. --out (default target/rtpm-demo/YYYYMMDD-HHMMSS/) receives
    /// report.txt, report.json, latency.svg (the distributions), timeline.svg (latency,
    /// deliveries and failures around the kill) and peers/ (each peer's node.toml,
    /// cores/, log and raw records). --duration is the measured run, after the overlay
    /// formed (a few seconds).
    ///
    /// Needs two CPUs and SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit); without
    /// root the peers do not lock their memory, and it says so. Ctrl-C stops every peer
    /// (exit code 130).
    /// Exit code 0 when positions arrived, RPCs were answered and the repair was seen; 1
    /// when not (the report says which); 2 for bad flags.
    ///
    /// Example: rtpm demo --duration 30s --out /tmp/demo
    Demo(cmd::demo::DemoArgs),
    /// One peer of `rtpm demo` (started by it; not for direct use).
    #[command(hide = true)]
    DemoPeer(cmd::demo::peer::PeerArgs),
}

fn main() -> ExitCode {
    // Restores the default action of SIGPIPE, so `rtpm … | head` ends quietly like other
    // Unix tools instead of panicking on a closed stdout.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = match Cli::parse().command {
        Command::Topology(a) => cmd::topology::run(a),
        Command::Shield(a) => cmd::shield::run(a),
        Command::Admit(a) => cmd::admit::run(a),
        Command::Latency(a) => cmd::latency::run(a),
        Command::User(a) => cmd::user::run(a),
        Command::Node(a) => cmd::node::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::DemoPeer(a) => cmd::demo::peer::run(a),
    };
    ExitCode::from(code)
}
