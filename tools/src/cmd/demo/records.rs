//! What the peers report to the demo: live counters as JSON lines on their standard
//! output, and every measurement as a CSV line in their folder of the output folder.
//!
//! Times are `CLOCK_MONOTONIC` nanoseconds, which every process on the machine shares,
//! so the demo lines up what different peers recorded. A peer killed with SIGKILL
//! leaves a file that may end in a partial line: readers skip lines that do not parse.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The coordinator's received positions from vehicle `v`: `recv_ns,vehicle,seq,sent_ns`.
pub fn samples_file(v: u32) -> String {
    format!("samples-v{v}.csv")
}
/// The coordinator's DEADLINE and liveliness notices about vehicle `v`:
/// `at_ns,kind,vehicle`.
pub fn notices_file(v: u32) -> String {
    format!("notices-v{v}.csv")
}
/// A vehicle's speed-limit requests: `issued_ns,vehicle,outcome,rtt_ns`.
pub const RPCS: &str = "rpc.csv";

/// A peer's counters, sent as one JSON line every 250 ms (and once more, with `final`
/// set, when it stops).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Positions published (vehicles).
    pub published: u64,
    /// Publications that failed (vehicles).
    pub publish_errors: u64,
    /// Positions received (coordinator).
    pub received: u64,
    /// Samples the coordinator's subscriber dropped because it was full.
    pub dropped: u64,
    /// DEADLINE notices (coordinator), except for publishers whose liveliness is lost.
    pub deadline_notices: u64,
    /// Liveliness-lost notices (coordinator).
    pub liveliness_lost: u64,
    /// Speed-limit requests answered in time (vehicles).
    pub rpc_ok: u64,
    /// Speed-limit requests past their deadline (vehicles).
    pub rpc_timeout: u64,
    /// Speed-limit requests that failed otherwise: not found, not available (vehicles).
    pub rpc_failed: u64,
    /// Requests the coordinator served.
    pub served: u64,
    /// Deadline misses of the demo's tasks in this peer (the vehicle's publishing task,
    /// the coordinator's request task), as the executor counts them.
    pub task_misses: u64,
    /// Deadline misses of this peer's other tasks (overlay, event monitor).
    pub other_task_misses: u64,
    /// The latest error, if any (e.g. why the coordinator cannot be reached).
    pub last_error: Option<String>,
    /// Set on the last line a peer sends.
    #[serde(default)]
    pub r#final: bool,
}

/// How a speed-limit request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered before its deadline.
    Ok,
    /// No answer by its deadline.
    Timeout,
    /// The coordinator could not be found (discovery) or reached.
    NotFound,
    /// The coordinator was found but could not take the request.
    Unavailable,
    /// Anything else.
    Failed,
}

impl Outcome {
    /// Its CSV word.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::NotFound => "not-found",
            Outcome::Unavailable => "unavailable",
            Outcome::Failed => "failed",
        }
    }

    fn parse(word: &str) -> Option<Outcome> {
        Some(match word {
            "ok" => Outcome::Ok,
            "timeout" => Outcome::Timeout,
            "not-found" => Outcome::NotFound,
            "unavailable" => Outcome::Unavailable,
            "failed" => Outcome::Failed,
            _ => return None,
        })
    }
}

/// One received position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When the coordinator took it.
    pub recv_ns: u64,
    /// From which vehicle.
    pub vehicle: u32,
    /// Its sequence number.
    pub seq: u64,
    /// When the vehicle published it.
    pub sent_ns: u64,
}

/// One notice to the coordinator's subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeRecord {
    /// When it was noticed.
    pub at_ns: u64,
    /// `deadline-missed`, `liveliness-lost`, `liveliness-regained`, `publisher-gone`.
    pub kind: String,
    /// The vehicle, when known from its samples.
    pub vehicle: Option<u32>,
}

/// One speed-limit request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcRecord {
    /// When it was issued.
    pub issued_ns: u64,
    /// By which vehicle.
    pub vehicle: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// Issue to answer (to failure for the others).
    pub rtt_ns: u64,
}

/// A CSV file being written: buffered, flushed by [`Log::flush`] (every 250 ms by the
/// peer) so that a peer killed with SIGKILL loses at most that much.
#[derive(Debug)]
pub struct Log {
    out: BufWriter<File>,
}

impl Log {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Log> {
        Ok(Log {
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Appends a received position.
    pub fn sample(&mut self, s: &Sample) {
        let _ = writeln!(
            self.out,
            "{},{},{},{}",
            s.recv_ns, s.vehicle, s.seq, s.sent_ns
        );
    }

    /// Appends a notice.
    pub fn notice(&mut self, n: &NoticeRecord) {
        let v = n.vehicle.map_or(String::new(), |v| v.to_string());
        let _ = writeln!(self.out, "{},{},{v}", n.at_ns, n.kind);
    }

    /// Appends a request.
    pub fn rpc(&mut self, r: &RpcRecord) {
        let _ = writeln!(
            self.out,
            "{},{},{},{}",
            r.issued_ns,
            r.vehicle,
            r.outcome.word(),
            r.rtt_ns
        );
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

fn lines(path: &Path) -> impl Iterator<Item = Vec<String>> {
    let file = File::open(path).ok();
    file.into_iter().flat_map(|f| {
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .map(|l| l.split(',').map(str::to_string).collect())
    })
}

/// The positions in `path` (none when it does not exist).
pub fn read_samples(path: &Path) -> Vec<Sample> {
    lines(path)
        .filter_map(|f| {
            Some(Sample {
                recv_ns: f.first()?.parse().ok()?,
                vehicle: f.get(1)?.parse().ok()?,
                seq: f.get(2)?.parse().ok()?,
                sent_ns: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// The notices in `path`.
pub fn read_notices(path: &Path) -> Vec<NoticeRecord> {
    lines(path)
        .filter_map(|f| {
            Some(NoticeRecord {
                at_ns: f.first()?.parse().ok()?,
                kind: f.get(1)?.clone(),
                vehicle: f.get(2).and_then(|v| v.parse().ok()),
            })
        })
        .collect()
}

/// The requests in `path`.
pub fn read_rpcs(path: &Path) -> Vec<RpcRecord> {
    lines(path)
        .filter_map(|f| {
            Some(RpcRecord {
                issued_ns: f.first()?.parse().ok()?,
                vehicle: f.get(1)?.parse().ok()?,
                outcome: Outcome::parse(f.get(2)?)?,
                rtt_ns: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_last_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("rtpm-demo-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(RPCS);
        let mut log = Log::create(&path).unwrap();
        let r = RpcRecord {
            issued_ns: 10,
            vehicle: 2,
            outcome: Outcome::Timeout,
            rtt_ns: 20_000_000,
        };
        log.rpc(&r);
        log.flush();
        drop(log);
        // what a SIGKILL in the middle of a write leaves
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "11,2,o").unwrap();
        assert_eq!(read_rpcs(&path), vec![r]);
        let spath = dir.join(samples_file(1));
        let mut log = Log::create(&spath).unwrap();
        let s = Sample {
            recv_ns: 5,
            vehicle: 1,
            seq: 3,
            sent_ns: 4,
        };
        log.sample(&s);
        log.flush();
        assert_eq!(read_samples(&spath), vec![s]);
        assert!(read_samples(&dir.join("missing.csv")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
