//! `rtpm topology`: the cores, their roles, and what this machine permits.

use std::path::PathBuf;

use clap::Args;
use rtpm_rt::config::{Partition, Role, Source};
use rtpm_rt::cpu::Topology;
use rtpm_rt::probe::{self, Capabilities, Probe};
use rtpm_rt::shield;
use serde::Serialize;

use super::{BAD_INPUT, OK};

/// The flags of this subcommand (its help text is on the `Command` variant).
#[derive(Args, Debug)]
pub struct TopologyArgs {
    /// A config folder holding cores/cpuN.toml; without it, the embedded default (last
    /// allowed CPU rt, the rest general).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ShieldView {
    active: bool,
    detail: String,
}

#[derive(Serialize)]
struct View<'a> {
    topology: &'a Topology,
    partition: &'a Partition,
    permits: &'a Capabilities,
    shield: ShieldView,
}

/// Runs `rtpm topology`.
pub fn run(args: TopologyArgs) -> u8 {
    let partition = match super::partition(args.config.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let topology = match Topology::discover() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rtpm: cannot read the CPU topology: {e}");
            return BAD_INPUT;
        }
    };
    let caps = probe::capabilities();
    let shield = match shield::status() {
        Ok(s) if s.active => ShieldView {
            active: true,
            detail: format!(
                "active: RT CPUs {}, general CPUs {}, journal {}",
                s.rt_cpus.unwrap_or_default(),
                s.general_cpus.unwrap_or_default(),
                s.state_file.display()
            ),
        },
        Ok(_) => ShieldView {
            active: false,
            detail: "inactive (`rtpm shield` sets it up, as root)".into(),
        },
        Err(e) => ShieldView {
            active: false,
            detail: format!("unavailable: {e}"),
        },
    };
    if args.json {
        let view = View {
            topology: &topology,
            partition: &partition,
            permits: &caps,
            shield,
        };
        match serde_json::to_string_pretty(&view) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("rtpm: cannot encode JSON: {e}");
                return BAD_INPUT;
            }
        }
        return OK;
    }
    print_human(&topology, &partition, &caps, &shield);
    OK
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn probe_line(p: &Probe) -> String {
    format!("{}: {}", if p.ok { "works" } else { "FAILS" }, p.detail)
}

fn print_human(topo: &Topology, part: &Partition, caps: &Capabilities, shield: &ShieldView) {
    let source = match &part.source {
        Source::Embedded => "embedded default".to_string(),
        Source::Dir(d) => d.display().to_string(),
    };
    println!(
        "CPUs this process may use: {} ({} in all)",
        topo.allowed,
        topo.allowed.len()
    );
    println!("Config: {source}");
    println!();
    println!(
        "{:>4}  {:<8} {:<9} {:<12} {:>5}  {:<6} {:<6} {:<10} {:<6} {:>4}  {:<8} {:<9}",
        "CPU",
        "role",
        "scheduler",
        "dispatch",
        "cap",
        "band",
        "shield",
        "share_idle",
        "SMT",
        "NUMA",
        "isolated",
        "nohz_full"
    );
    for core in &topo.cores {
        let Some(cfg) = part.core(core.id) else {
            continue;
        };
        let (sched, dispatch, cap, band, sh, share) = if cfg.role == Role::Rt {
            (
                format!("{:?}", cfg.scheduler).to_lowercase(),
                format!("{:?}", cfg.dispatch).to_lowercase(),
                format!("{:.2}", cfg.utilization_cap),
                format!("{}-{}", cfg.priority_band.0, cfg.priority_band.1),
                yes(cfg.shield).to_string(),
                yes(cfg.share_idle).to_string(),
            )
        } else {
            Default::default()
        };
        let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
        println!(
            "{:>4}  {:<8} {:<9} {:<12} {:>5}  {:<6} {:<6} {:<10} {:<6} {:>4}  {:<8} {:<9}",
            core.id,
            if cfg.role == Role::Rt {
                "rt"
            } else {
                "general"
            },
            dash(sched),
            dash(dispatch),
            dash(cap),
            dash(band),
            dash(sh),
            dash(share),
            core.smt_siblings.to_list(),
            core.numa_node.map_or("-".to_string(), |n| n.to_string()),
            yes(core.isolated),
            yes(core.nohz_full),
        );
    }
    println!();
    println!("What this machine permits:");
    let rtprio = caps
        .rtprio_limit
        .map_or("unlimited".to_string(), |v| v.to_string());
    let rtprio_note = if caps.cap_sys_nice {
        "CAP_SYS_NICE held, so priorities 1-99 are allowed"
    } else {
        "no CAP_SYS_NICE: SCHED_FIFO is limited to this priority"
    };
    println!("  {:<26} {rtprio} ({rtprio_note})", "RT priority limit");
    println!("  {:<26} {}", "SCHED_FIFO", probe_line(&caps.sched_fifo));
    println!(
        "  {:<26} {}",
        "SCHED_DEADLINE",
        probe_line(&caps.sched_deadline)
    );
    println!(
        "  {:<26} {:.2} of each CPU (sched_rt_runtime_us {} / sched_rt_period_us {})",
        "deadline bandwidth cap",
        caps.dl_bandwidth,
        caps.sched_rt_runtime_us,
        caps.sched_rt_period_us
    );
    let disabled = caps.io_uring_disabled.map_or("no sysctl".to_string(), |v| {
        format!("kernel.io_uring_disabled = {v}")
    });
    println!(
        "  {:<26} {} ({disabled})",
        "io_uring",
        probe_line(&caps.io_uring)
    );
    let memlock = caps
        .memlock_limit
        .map_or("unlimited".to_string(), |v| format!("{} KiB", v / 1024));
    let memlock_note = if caps.cap_ipc_lock {
        "CAP_IPC_LOCK held, so the limit does not bind"
    } else {
        "mlockall and io_uring buffers must fit in it"
    };
    println!("  {:<26} {memlock} ({memlock_note})", "memlock limit");
    println!("  {:<26} {}", "shield", shield.detail);
    for w in &part.warnings {
        println!();
        println!("warning: {w}");
    }
}
