//! `rtpm status`: ask a running node over its control socket and print what it is.
//!
//! Which node: `--socket PATH`, or `--node X` where X is a node name, a node id, or an
//! address one of its SAPs is bound to (the sockets in the default folder are asked in
//! turn), or — with neither — the only node in the default folder.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use rtpm::config::control_dir;
use serde_json::Value;

use super::{BAD_INPUT, NO, OK};

/// The flags of this subcommand (its help text is on the `Command` variant).
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The node: its name, its id, or an address one of its SAPs listens on.
    #[arg(long, value_name = "NAME|ID|ADDR", conflicts_with = "socket")]
    node: Option<String>,
    /// The node's control socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the node's answer as JSON (one object).
    #[arg(long)]
    json: bool,
}

/// Sends one request and reads one answer.
pub fn ask(socket: &Path, request: &Value) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {} ({e}): is the node running? (`rtpm node` prints its socket)",
            socket.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    writeln!(s, "{request}").map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| format!("{}: not a node's answer ({e})", socket.display()))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(format!(
            "{}: {}",
            socket.display(),
            v["error"].as_str().unwrap_or("the node refused")
        ))
    }
}

fn sockets() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(control_dir())
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn matches(status: &Value, who: &str) -> bool {
    let node = &status["node"];
    if node["name"].as_str() == Some(who) || node["id"].as_str() == Some(who) {
        return true;
    }
    status["networks"].as_array().is_some_and(|nets| {
        nets.iter().any(|n| {
            n["address"].as_str() == Some(who)
                || n["saps"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x["address"].as_str() == Some(who)))
        })
    })
}

fn pick(args: &StatusArgs) -> Result<(PathBuf, Value), (u8, String)> {
    let req = serde_json::json!({"cmd": "status"});
    if let Some(s) = &args.socket {
        return ask(s, &req).map(|v| (s.clone(), v)).map_err(|e| (NO, e));
    }
    let all = sockets();
    let mut answering = Vec::new();
    for s in &all {
        if let Ok(v) = ask(s, &req) {
            answering.push((s.clone(), v));
        }
    }
    match &args.node {
        Some(who) => answering
            .into_iter()
            .find(|(_, v)| matches(v, who))
            .ok_or_else(|| {
                (
                    NO,
                    format!(
                        "no running node named, numbered or bound at `{who}` answers in {} (give --socket PATH)",
                        control_dir().display()
                    ),
                )
            }),
        None => match answering.len() {
            1 => Ok(answering.remove(0)),
            0 => Err((
                NO,
                format!(
                    "no running node answers in {}: start one with `rtpm node`, or give --socket PATH",
                    control_dir().display()
                ),
            )),
            n => Err((
                BAD_INPUT,
                format!(
                    "{n} nodes answer in {}: say which with --node NAME ({})",
                    control_dir().display(),
                    answering
                        .iter()
                        .filter_map(|(_, v)| v["node"]["name"].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

fn short(id: &Value) -> String {
    id.as_str()
        .map_or("?".into(), |s| s.chars().take(8).collect())
}

fn ids(v: &Value) -> String {
    let list: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(short).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(" ")
    }
}

fn us(v: &Value) -> String {
    format!("{:.1}", v.as_u64().unwrap_or(0) as f64 / 1000.0)
}

fn print(socket: &Path, v: &Value) {
    let node = &v["node"];
    println!(
        "node {} ({}), pid {}, control socket {}",
        node["name"].as_str().unwrap_or("?"),
        node["id"].as_str().unwrap_or("?"),
        node["pid"],
        socket.display()
    );
    for w in v["warnings"].as_array().into_iter().flatten() {
        println!("  warning: {}", w.as_str().unwrap_or(""));
    }
    for n in v["networks"].as_array().into_iter().flatten() {
        let role = n["role"].as_str().unwrap_or("?");
        println!();
        println!(
            "network {}: {} at {}, depth {}{}",
            n["name"].as_str().unwrap_or("?"),
            role,
            n["address"].as_str().unwrap_or("?"),
            n["depth"],
            if n["listening"] == Value::Bool(true) {
                ", root (listens to the group)"
            } else {
                ""
            }
        );
        let cell = &n["cell"];
        if cell.is_null() {
            println!("  cell: none yet");
        } else {
            println!("  cell {}", cell["id"].as_str().unwrap_or("?"));
            println!("    super-peers: {}", ids(&cell["super_peers"]));
            println!("    members:     {}", ids(&cell["members"]));
            match cell["parent"].as_null() {
                Some(()) => println!("    parent cell: none (this cell is a root)"),
                None => println!(
                    "    parent cell: {} (super-peers {})",
                    cell["parent"].as_str().unwrap_or("?"),
                    ids(&n["parent_members"])
                ),
            }
        }
        if !n["super_peer"].is_null() {
            println!("  bound to super-peer {}", short(&n["super_peer"]));
        }
        if role == "super-peer" {
            println!(
                "  child cells: {}, index records: {}",
                n["children"].as_array().map_or(0, Vec::len),
                n["index_records"]
            );
        }
        println!("  SAPs (group {}):", n["group"].as_str().unwrap_or("?"));
        for s in n["saps"].as_array().into_iter().flatten() {
            println!(
                "    {:<6} class {} {:<21} {:<11} prio {:<2} queue {:<5} {:<8} rx {} tx {} queue-full {} kernel-drops {} send-errors {}",
                s["name"].as_str().unwrap_or("?"),
                s["class"],
                s["address"].as_str().unwrap_or("?"),
                s["reliability"].as_str().unwrap_or("?"),
                s["priority"].to_string(),
                s["queue_depth"].to_string(),
                s["backend"].as_str().unwrap_or("?"),
                s["received"],
                s["sent"],
                s["queue_full"],
                s["kernel_drops"],
                s["send_errors"],
            );
        }
        let c = &n["counters"];
        println!(
            "  messages: tx {} rx {} accepted {} delivered {} retransmits {} duplicates {} unroutable {}",
            c["tx_datagrams"],
            c["rx_datagrams"],
            c["accepted"],
            c["delivered"],
            c["retransmits"],
            c["duplicates"],
            c["unroutable"]
        );
        println!(
            "  dropped:  bad-mac {} replayed {} wrong-overlay {} malformed {} rx-queue-full {} tx-refused {} commands-refused {} untrusted {} unknown-port {}",
            c["bad_mac"],
            c["replayed"],
            c["wrong_overlay"],
            c["malformed"],
            c["rx_queue_full"],
            c["tx_refused"],
            c["commands_refused"],
            c["untrusted"],
            c["unknown_port"]
        );
    }
    let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
    println!();
    if tasks.is_empty() {
        println!("tasks: none admitted (no RT core?)");
        return;
    }
    println!(
        "tasks ({}): response µs p50/p99/p99.9/max, release latency µs p50/p99; deferred: \
         sporadic arrivals held back by the minimum inter-arrival time (many: raise the \
         rate or the burst)",
        tasks.len()
    );
    println!(
        "  {:<34} {:>3} {:>9} {:>8} {:>7} {:>8} {:>30} {:>14}",
        "name", "cpu", "released", "deferred", "misses", "overruns", "response", "release lat."
    );
    for t in &tasks {
        let r = &t["response_ns"];
        let l = &t["release_latency_ns"];
        println!(
            "  {:<34} {:>3} {:>9} {:>8} {:>7} {:>8} {:>30} {:>14}",
            t["name"].as_str().unwrap_or("?"),
            t["cpu"].to_string(),
            t["released"].to_string(),
            t["deferred"].to_string(),
            t["deadline_misses"].to_string(),
            t["overruns"].to_string(),
            format!(
                "{}/{}/{}/{}",
                us(&r["p50_ns"]),
                us(&r["p99_ns"]),
                us(&r["p999_ns"]),
                us(&r["max_ns"])
            ),
            format!("{}/{}", us(&l["p50_ns"]), us(&l["p99_ns"])),
        );
    }
}

/// Runs `rtpm status`.
pub fn run(args: StatusArgs) -> u8 {
    match pick(&args) {
        Ok((socket, v)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                );
            } else {
                print(&socket, &v);
            }
            OK
        }
        Err((code, e)) => {
            eprintln!("rtpm status: {e}");
            code
        }
    }
}
