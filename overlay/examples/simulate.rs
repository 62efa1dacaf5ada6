//! Simulate an rtpm overlay of many peers in virtual time and print its metrics.
//!
//! ```text
//! cargo run --release -p rtpm-overlay --example simulate -- \
//!     --peers 10000 --scenario crash-superpeer --seed 7 --heartbeat 25ms
//! ```

use std::process::ExitCode;
use std::time::Instant as WallClock;

use clap::Parser;
use rtpm_overlay::sim::scenario::{self, Params, Scenario};
use rtpm_rt::time::Nanos;

/// Simulate a P3 overlay (cells of super-peers in a tree) deterministically in virtual
/// time, inject a fault, and report failure detection, repair and lookup figures.
///
/// The overlay forms first (peer 0 founds the root, the others join one per --join-gap
/// and each publishes one SAP), then settles, then the scenario's fault is injected and
/// the simulator measures until the tree is valid again and every live SAP is
/// discoverable. The same --seed always gives the same run.
#[derive(Parser, Debug)]
#[command(name = "simulate", version, after_help = SCENARIOS)]
struct Args {
    /// Number of peers (at least 1).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    peers: u32,
    /// Scenario to run (see below).
    #[arg(long, default_value = "crash-superpeer")]
    scenario: Scenario,
    /// Seed of every random choice (network and protocol).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Heartbeat period, as a unit string ("25ms", "10ms", "500us").
    #[arg(long, default_value = "25ms")]
    heartbeat: Nanos,
    /// Gap between two peers' joins.
    #[arg(long, default_value = "1ms")]
    join_gap: Nanos,
    /// Run at least this much virtual time in total ("60s"). The steady-state window
    /// (for control traffic) starts a second after the overlay formed and is the largest
    /// whole number of lease-refresh periods (10 s) that fits, else 2 s.
    #[arg(long, default_value = "0s")]
    duration: Nanos,
    /// Loss probability on every link for the `loss` scenario.
    #[arg(long, default_value_t = 0.10)]
    loss: f64,
    /// Lookups to check after repair.
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    /// Encrypt payloads (XChaCha20-Poly1305) as well as authenticating them.
    #[arg(long)]
    encrypt: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

const SCENARIOS: &str = "Scenarios:
  join             form the overlay, no fault
  crash-superpeer  crash one super-peer of a non-root cell that serves peers
  crash-cell       crash every super-peer of one non-root cell
  crash-root       crash every super-peer of the root cell
  partition-heal   split the peers in two halves for 3 s, then heal
  loss             10 % loss (see --loss) on every link for 10 s, then recovery

Output: detect_ms (fault until the monitors responsible for the repair, the crashed
super-peer's cell mates, have declared it down), repair_ms (fault, or heal,
to: every peer bound, every cell at k members, one tree, every live SAP discoverable),
lookup_msgs_max, tree_depth (levels), wall_s, and control_bytes_per_peer_per_s:
every byte of every control datagram (header, tag and payload; everything but
application data) that every live peer sent during the steady-state window (see
--duration), divided by the live peers and the window's seconds; control_by_type
splits it by frame, deltas_up_per_s counts index deltas sent up the tree.

Example:
  cargo run --release -p rtpm-overlay --example simulate -- \\
      --peers 10000 --scenario crash-superpeer --seed 7 --heartbeat 25ms --json";

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if args.heartbeat.get() < 100_000 {
        eprintln!(
            "simulate: --heartbeat {} is too short; use at least 100us",
            args.heartbeat
        );
        return ExitCode::from(2);
    }
    if !(0.0..1.0).contains(&args.loss) {
        eprintln!("simulate: --loss {} must be in [0, 1)", args.loss);
        return ExitCode::from(2);
    }
    let mut p = Params::new(args.peers as usize, args.scenario, args.seed);
    p.heartbeat = args.heartbeat.get();
    p.join_gap = args.join_gap.get();
    p.duration = args.duration.get();
    p.loss = args.loss;
    p.lookups = args.lookups;
    p.encrypt = args.encrypt;
    let wall = WallClock::now();
    let quiet = args.quiet;
    let mut progress = |line: &str| {
        if !quiet {
            eprintln!("[{:7.1}s wall] {line}", wall.elapsed().as_secs_f64());
        }
    };
    let r = match scenario::run(&p, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("simulate: scenario {} failed: {e}", args.scenario);
            return ExitCode::from(1);
        }
    };
    let wall_s = wall.elapsed().as_secs_f64();
    let bound = 2 * r.tree_depth + 2;
    if args.json {
        let j = serde_json::json!({
            "peers": r.peers,
            "scenario": r.scenario,
            "seed": r.seed,
            "heartbeat_ms": r.heartbeat_ms,
            "formed_ms": r.formed_ms,
            "detect_ms": r.detect_ms,
            "detect_first_ms": r.detect_first_ms,
            "detect_all_ms": r.detect_all_ms,
            "repair_ms": r.repair_ms,
            "orphans": r.orphans,
            "lookups": r.lookups,
            "lookup_msgs_max": r.lookup_msgs_max,
            "lookup_msgs_bound": bound,
            "tree_depth": r.tree_depth,
            "cells": r.cells,
            "control_bytes_per_peer_per_s": (r.control_bytes_per_peer_per_s * 10.0).round() / 10.0,
            "control_by_type": r
                .control_by_type
                .iter()
                .map(|(n, v)| ((*n).to_string(), serde_json::json!((v * 10.0).round() / 10.0)))
                .collect::<serde_json::Map<_, _>>(),
            "window_s": r.window_s,
            "deltas_up_per_s": (r.deltas_up_per_s * 100.0).round() / 100.0,
            "virtual_s": r.virtual_s,
            "delivered": r.delivered,
            "wakeups": r.wakeups,
            "idle_wakeups": r.idle_wakeups,
            "security_drops": r.security_drops,
            "resyncs": r.resyncs,
            "security_drops_forged_truncated_replayed_wrongoverlay_oversize_malformed": r.security_by_reason,
            "wall_s": (wall_s * 1000.0).round() / 1000.0,
        });
        println!("{j}");
    } else {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1} ms"));
        println!("scenario            {}", r.scenario);
        println!("peers               {}", r.peers);
        println!("seed                {}", r.seed);
        println!("heartbeat           {} ms", r.heartbeat_ms);
        println!("formed after        {:.1} ms", r.formed_ms);
        println!("detect              {}", opt(r.detect_ms));
        println!("detect (first)      {}", opt(r.detect_first_ms));
        println!("detect (any, last)  {}", opt(r.detect_all_ms));
        println!("repair              {}", opt(r.repair_ms));
        println!("orphaned peers      {}", r.orphans);
        println!("lookups checked     {}", r.lookups);
        println!(
            "lookup msgs max     {} (bound 2 x depth + 2 = {bound})",
            r.lookup_msgs_max
        );
        println!(
            "tree depth          {} levels, {} cells",
            r.tree_depth, r.cells
        );
        println!(
            "control traffic     {:.1} B per peer per s",
            r.control_bytes_per_peer_per_s
        );
        println!("virtual time        {:.1} s", r.virtual_s);
        println!("datagrams delivered {}", r.delivered);
        println!("wall time           {wall_s:.2} s");
    }
    ExitCode::SUCCESS
}
