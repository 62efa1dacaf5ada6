//! Rivals on the RT core: real-time threads (SCHED_FIFO, SCHED_RR, SCHED_DEADLINE) of
//! other processes placed on the CPU the peers' tasks run on. Admission in each peer
//! cannot see them, so the demo looks before it starts (in /proc) and says so: a
//! benchmark spinning there starves the peers, and the latencies show it.

use std::collections::BTreeMap;

/// One other process with real-time threads on the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rival {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// Its real-time threads on the core.
    pub threads: usize,
    /// Their highest real-time priority.
    pub max_priority: u32,
}

/// (processor, rt_priority, policy) from the text of a `/proc/…/stat` file.
fn placement(stat: &str) -> Option<(usize, u32, u32)> {
    // fields after the parenthesised command name, which may itself hold spaces
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // field 39 (processor) is the 37th after the name (field 3, state, is the first)
    Some((
        f.get(36)?.parse().ok()?,
        f.get(37)?.parse().ok()?,
        f.get(38)?.parse().ok()?,
    ))
}

/// The user-space processes other than this one and those in `ignore` with real-time
/// threads on `cpu`.
pub fn on_core(cpu: usize, ignore: &[u32]) -> Vec<Rival> {
    let me = std::process::id();
    let mut found: BTreeMap<u32, Rival> = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // kernel threads have no command line
        if pid == me
            || ignore.contains(&pid)
            || std::fs::read(p.path().join("cmdline")).map_or(true, |c| c.is_empty())
        {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.filter_map(Result::ok) {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            // SCHED_FIFO 1, SCHED_RR 2, SCHED_DEADLINE 6
            if let Some((on, prio, policy)) = placement(&stat)
                && on == cpu
                && matches!(policy, 1 | 2 | 6)
            {
                let comm = std::fs::read_to_string(p.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let r = found.entry(pid).or_insert(Rival {
                    pid,
                    comm,
                    threads: 0,
                    max_priority: 0,
                });
                r.threads += 1;
                r.max_priority = r.max_priority.max(prio);
            }
        }
    }
    found.into_values().collect()
}

/// Adds `seen` to `all` (by pid, keeping the most threads seen).
pub fn merge(all: &mut Vec<Rival>, seen: Vec<Rival>) {
    for r in seen {
        match all.iter_mut().find(|a| a.pid == r.pid) {
            Some(a) => {
                a.threads = a.threads.max(r.threads);
                a.max_priority = a.max_priority.max(r.max_priority);
            }
            None => all.push(r),
        }
    }
}

/// A sentence about `rivals` on `cpu`, if there are any.
pub fn note(cpu: usize, rivals: &[Rival]) -> Option<String> {
    if rivals.is_empty() {
        return None;
    }
    let list: Vec<String> = rivals
        .iter()
        .take(5)
        .map(|r| {
            format!(
                "{} (pid {}, {} thread(s), priority up to {})",
                r.comm, r.pid, r.threads, r.max_priority
            )
        })
        .collect();
    Some(format!(
        "{} other process(es) ran real-time threads on the RT core (cpu{cpu}): {}{}; the peers' tasks compete with them there, and the latencies include that",
        rivals.len(),
        list.join(", "),
        if rivals.len() > 5 { ", …" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_reads_processor_priority_and_policy_after_a_name_with_spaces() {
        // a SCHED_FIFO thread at priority 89 on CPU 1 (fields 39, 40, 41)
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[39 - 3] = "1".into();
        fields[40 - 3] = "89".into();
        fields[41 - 3] = "1".into();
        let stat = format!("7602 (rt-bench/rx c1) {}", fields.join(" "));
        assert_eq!(placement(&stat), Some((1, 89, 1)));
        assert_eq!(placement("garbage"), None);
    }

    #[test]
    fn this_process_is_not_its_own_rival_and_the_note_names_them() {
        assert!(on_core(0, &[]).iter().all(|r| r.pid != std::process::id()));
        let r = Rival {
            pid: 7,
            comm: "bench".into(),
            threads: 2,
            max_priority: 89,
        };
        let mut all = vec![r.clone()];
        merge(
            &mut all,
            vec![
                Rival {
                    threads: 5,
                    ..r.clone()
                },
                Rival {
                    pid: 8,
                    ..r.clone()
                },
            ],
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].threads, 5);
        let n = note(1, &[r]).unwrap();
        assert!(n.contains("bench (pid 7, 2 thread(s), priority up to 89)") && n.contains("cpu1"));
        assert_eq!(note(1, &[]), None);
    }
}
