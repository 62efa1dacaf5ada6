//! The overlay's task set: the protocol's declared activities ([`crate::proto::tasks`])
//! plus the driver's own receive and command tasks, as the rt crate's task specs.
//!
//! Tasks are named `OVERLAY/TASK`.
//!
//! | task | release | what a job does |
//! |---|---|---|
//! | `heartbeat`, `failure-detector` | periodic (the protocol's periods) | runs the protocol's timers that are due (`handle_timeout`) |
//! | `lease-refresh`, `root-beacon` | sporadic, released by the heartbeat's job once their (long) period has passed | the same |
//! | `control-message` | sporadic with class 0's burst, from the control SAP's and the group SAP's wake hooks | handles received control datagrams (and class-0 data) |
//! | `retransmit` | sporadic, from the driver's clock at the protocol's next deadline | retransmissions, probe, join and lookup deadlines |
//! | `rx/cN` | sporadic with the SAP's burst, from class N's SAP wake hook | handles class N's datagrams |
//! | `commands` | sporadic with its burst, from the application's command queue (a command queued inside another admitted job is carried out by that job when the node is free) | send, publish, unpublish, lookup, leave |
//!
//! **Sharing the node.** All of them touch the one protocol node, one job at a time (see
//! [`baton`](super::baton)): a job that finds the node held leaves its work to the holder,
//! which does it before it lets go. So each task may wait for at most one other overlay
//! job: its spec carries a blocking term equal to the largest budget among the others,
//! which is the bound under the cooperative model and for tasks of adjacent priorities.

use rtpm_rt::exec::{TaskKind, TaskSpec};
use rtpm_rt::time::Nanos;

use super::config::{OverlayConfig, per_job};
use crate::proto::tasks::{PER_DATAGRAM_NS, Release};
use crate::proto::{self, Config};

/// What a task's job serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// Due protocol timers (and, for the heartbeat, re-arming every wake-up source).
    Tick {
        /// Whether this is the heartbeat task.
        heartbeat: bool,
    },
    /// Class SAP `i` (in `Links::classes` order; 0 also drains the group SAP).
    Rx(usize),
    /// Deadlines between ticks, released by the driver's clock.
    Timers,
    /// The application's commands.
    Commands,
}

/// One task of the overlay, ready for admission.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    pub(crate) spec: TaskSpec,
    pub(crate) work: Work,
    /// Most items (datagrams, commands) one job takes from its source.
    pub(crate) batch: usize,
    /// A periodic activity whose period is many heartbeats runs as a sporadic task with
    /// that minimum inter-arrival time, released by the heartbeat's job when its period
    /// has passed (the same worst case for admission; and removing the task then does
    /// not wait for a release seconds away).
    pub(crate) released_by_heartbeat: Option<Nanos>,
}

impl Planned {
    /// The declaration, for error messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {} {}, budget {}, deadline {}, blocking {}",
            self.spec.kind,
            if self.spec.kind == TaskKind::Periodic {
                "every"
            } else {
                "at most every"
            },
            self.spec.period,
            self.spec.wcet,
            self.spec.deadline,
            self.spec.blocking
        )
    }
}

fn spec_of(t: &proto::tasks::TaskSpec) -> TaskSpec {
    let s = match t.release {
        Release::Periodic { period } => TaskSpec::periodic(t.name, Nanos(period), Nanos(t.wcet)),
        Release::Sporadic { min_interarrival } => {
            TaskSpec::sporadic(t.name, Nanos(min_interarrival), Nanos(t.wcet))
        }
    };
    s.with_deadline(Nanos(t.deadline.clamp(t.wcet, t.period())))
}

/// The task set of an overlay with config `cfg` and protocol config `proto`; class SAPs
/// in `classes` order (class 0 first).
pub(crate) fn plan(cfg: &OverlayConfig, proto: &Config, classes: &[u8]) -> Vec<Planned> {
    let mut out = Vec::new();
    for t in proto::tasks::tasks(proto) {
        let (work, batch, spec) = match t.name {
            "control-message" => {
                // the control SAP carries class 0's data too: one job per the SAP's
                // min_interarrival takes its batch plus the control datagrams the
                // protocol's bound lets arrive meanwhile
                let (min_ia, data, burst) = cfg
                    .saps
                    .iter()
                    .find(|s| s.class == 0)
                    .map_or((t.period(), 0, 1), |s| {
                        (s.min_interarrival.get(), s.batch as u64, s.burst())
                    });
                let control = min_ia.div_ceil(t.period().max(1));
                let batch = per_job(((data + control).max(1)) as u32, burst);
                let wcet = (batch * PER_DATAGRAM_NS).max(t.wcet);
                let burst = burst.min((min_ia / wcet.max(1)).max(1) as u32);
                (
                    Work::Rx(0),
                    batch as usize,
                    TaskSpec::sporadic(t.name, Nanos(min_ia), Nanos(wcet.min(min_ia)))
                        .with_burst(burst),
                )
            }
            "retransmit" => (Work::Timers, 1, spec_of(&t)),
            name => (
                Work::Tick {
                    heartbeat: name == "heartbeat",
                },
                1,
                spec_of(&t),
            ),
        };
        let mut spec = spec;
        let mut released_by_heartbeat = None;
        if let Release::Periodic { period } = t.release
            && period > 4 * proto.heartbeat
        {
            spec.kind = TaskKind::Sporadic;
            released_by_heartbeat = Some(Nanos(period));
        }
        out.push(Planned {
            spec,
            work,
            batch,
            released_by_heartbeat,
        });
    }
    for (i, class) in classes.iter().enumerate().skip(1) {
        if let Some(s) = cfg.saps.iter().find(|s| s.class == *class) {
            let batch = per_job(s.batch, s.burst());
            out.push(Planned {
                spec: TaskSpec::sporadic(
                    format!("rx/c{class}"),
                    s.min_interarrival,
                    Nanos(batch * PER_DATAGRAM_NS),
                )
                .with_burst(s.burst()),
                work: Work::Rx(i),
                batch: batch as usize,
                released_by_heartbeat: None,
            });
        }
    }
    let c = cfg.commands;
    let batch = per_job(c.batch, c.burst());
    out.push(Planned {
        spec: TaskSpec::sporadic(
            "commands",
            c.min_interarrival,
            Nanos(batch * PER_DATAGRAM_NS),
        )
        .with_burst(c.burst()),
        work: Work::Commands,
        batch: batch as usize,
        released_by_heartbeat: None,
    });
    // unique in a host running several overlays
    for p in &mut out {
        p.spec.name = format!("{}/{}", cfg.name, p.spec.name);
    }
    // each may wait for one other overlay job (the one holding the node)
    let wcets: Vec<Nanos> = out.iter().map(|p| p.spec.wcet).collect();
    for (i, p) in out.iter_mut().enumerate() {
        let others = wcets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(Nanos::ZERO);
        p.spec.blocking = others;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::security::OverlayKey;
    use crate::proto::{Addr, PeerId};

    #[test]
    fn every_protocol_activity_and_every_sap_has_a_task() {
        let cfg: OverlayConfig = toml::from_str(
            r#"
name = "t"
multicast = "239.1.1.1:7600"
key = "k"
[[sap]]
address = "127.0.0.1:7000"
class = 0
[[sap]]
address = "127.0.0.1:7001"
class = 1
batch = 4
burst = 2
min_interarrival = "200us"
"#,
        )
        .unwrap();
        let a = Addr("127.0.0.1:7000".parse().unwrap());
        let p = Config::new(PeerId(1), a, a, 1, OverlayKey([0; 32]));
        let tasks = plan(&cfg, &p, &[0, 1]);
        let names: Vec<&str> = tasks
            .iter()
            .map(|t| t.spec.name.strip_prefix("t/").unwrap())
            .collect();
        for n in [
            "heartbeat",
            "failure-detector",
            "lease-refresh",
            "root-beacon",
            "control-message",
            "retransmit",
            "rx/c1",
            "commands",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        for t in &tasks {
            t.spec.validate().unwrap();
            assert!(t.spec.blocking > Nanos::ZERO, "{}", t.spec.name);
        }
        let rx = tasks.iter().find(|t| t.spec.name == "t/rx/c1").unwrap();
        assert_eq!(rx.spec.period, Nanos::us(200));
        // the window's 4 datagrams shared by a burst of 2 jobs: two each
        assert_eq!(rx.spec.wcet, Nanos(2 * PER_DATAGRAM_NS));
        assert_eq!(rx.spec.burst, 2);
        assert_eq!(rx.spec.window_wcet(), Nanos(4 * PER_DATAGRAM_NS));
        assert_eq!(rx.batch, 2);
        // the default: 16 commands per window in one job
        let c = tasks.iter().find(|t| t.spec.name == "t/commands").unwrap();
        assert_eq!((c.batch, c.spec.burst), (16, 1));
    }
}
