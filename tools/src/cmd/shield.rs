//! `rtpm shield`: exclusive cpusets around the RT cores.

use std::path::PathBuf;

use clap::Args;
use rtpm_rt::shield;

use super::{BAD_INPUT, NO, OK};

/// The flags of this subcommand (its help text is on the `Command` variant).
#[derive(Args, Debug)]
pub struct ShieldArgs {
    /// A config folder holding cores/cpuN.toml; without it, the embedded default (the
    /// last allowed CPU is the RT core).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Undo the active shield: move tasks back, remove the cpusets, restore load balancing.
    #[arg(long, conflicts_with = "status")]
    undo: bool,
    /// Show the shield's current state and change nothing.
    #[arg(long)]
    status: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `rtpm shield`.
pub fn run(args: ShieldArgs) -> u8 {
    if args.status {
        return match shield::status() {
            Ok(s) => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                } else if s.active {
                    println!(
                        "shield: active (cgroup {})",
                        match s.version {
                            Some(shield::Version::V2) => "v2",
                            _ => "v1",
                        }
                    );
                    println!(
                        "  RT CPUs:       {}  ({} tasks)",
                        s.rt_cpus.unwrap_or_default(),
                        s.rt_tasks
                    );
                    println!(
                        "  general CPUs:  {}  ({} tasks)",
                        s.general_cpus.unwrap_or_default(),
                        s.general_tasks
                    );
                    println!(
                        "  left in root:  {} tasks (kernel threads bound to a CPU)",
                        s.root_tasks
                    );
                    if let Some(lb) = s.root_load_balance {
                        println!(
                            "  root load balancing: {}",
                            if lb { "on (not shielded!)" } else { "off" }
                        );
                    }
                    if let Some(p) = s.partition {
                        println!("  partition: {p}");
                    }
                    println!("  journal: {}", s.state_file.display());
                } else {
                    println!("shield: inactive");
                }
                OK
            }
            Err(e) => {
                eprintln!("rtpm shield: {e}");
                NO
            }
        };
    }
    if args.undo {
        return match shield::undo() {
            Ok(j) => {
                println!(
                    "shield undone: {} changes reverted (RT CPUs were {}, general {})",
                    j.changes.len(),
                    if j.rt_cpus.is_empty() {
                        "?"
                    } else {
                        &j.rt_cpus
                    },
                    if j.general_cpus.is_empty() {
                        "?"
                    } else {
                        &j.general_cpus
                    }
                );
                OK
            }
            Err(e) => {
                eprintln!("rtpm shield --undo: {e}");
                NO
            }
        };
    }
    let partition = match super::partition(args.config.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (rt, general) = (partition.rt_cores(), partition.general_cores());
    if rt.is_empty() {
        eprintln!(
            "rtpm shield: the config has no RT core to shield (CPUs {}); mark one `role = \"rt\"` in cores/cpuN.toml",
            partition.allowed
        );
        return BAD_INPUT;
    }
    eprintln!(
        "rtpm shield: shielding RT CPUs {rt}; moving the system to general CPUs {general} ..."
    );
    match shield::setup(rt, general) {
        Ok(report) => {
            println!(
                "shield active: RT CPUs {rt} are their own root domain; {} tasks moved to CPUs {general}, {} kernel threads left bound; undo with `rtpm shield --undo`",
                report.moved, report.journal.unmovable
            );
            OK
        }
        Err(e) => {
            eprintln!("rtpm shield: {e}");
            NO
        }
    }
}
