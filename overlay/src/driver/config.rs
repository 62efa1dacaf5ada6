//! `OverlayConfig`: one `[[overlay]]` section of a node's `node.toml`, and its checks.
//!
//! ```toml
//! [[overlay]]
//! name = "city"                       # the overlay's name; its wire id derives from it
//! multicast = "239.77.0.1:7600"       # bootstrap group and port (join advertisements, root beacons)
//! seeds = ["10.0.0.2:7000"]           # control SAPs to solicit too, for networks without multicast
//! key = "city.key"                    # 64 hex digits (32 bytes), relative to the config folder
//! cell_size = 3                       # super-peers per cell (k), 1..=6
//! heartbeat = "25ms"                  # heartbeat period; the protocol's timers scale with it
//! # peers_per_super_peer = 16         # a cell is full (and splits) beyond this, 1..=32
//! # lease = "30s"                     # discovery lease of a published SAP (>= 3 heartbeats)
//! # encrypt = false                   # XChaCha20-Poly1305 payloads as well as the MAC
//! # interface = "10.0.0.1"            # multicast interface (default: the control SAP's address)
//!
//! [[overlay.sap]]                     # class 0: the control SAP (protocol traffic and class 0 data)
//! address = "10.0.0.1:7000"
//! class = 0
//! reliability = "best-effort"
//! priority = 0                        # 0: SCHED_OTHER reactor; 1..=99: SCHED_FIFO
//! queue_depth = 1024
//!
//! [[overlay.sap]]
//! address = "10.0.0.1:7001"           # class c listens on the control port + c
//! class = 1
//! reliability = "reliable"
//! # min_interarrival = "1ms"          # the receive task's window (see Rates below)
//! # batch = 16                        # datagrams per window
//! # burst = 1                         # receive jobs per window, 1..=64, <= batch
//!
//! # [overlay.commands]                # the application's sends: the same three keys
//! # min_interarrival = "1ms"
//! # batch = 16
//! # burst = 1
//! # queue = 1024                      # commands queued at most
//! ```
//!
//! **Addresses.** A peer is known to the others by one address, its control SAP (class
//! 0). A class-`c` SAP listens on the same IP at the control port + `c`, and sends from
//! there, so a receiver knows the sender's control address from any class. With control
//! port 0 every SAP gives port 0 and the driver picks a free block of ports.
//!
//! **Rates.** Every SAP's receive work is a sporadic task with a burst: at most `burst`
//! jobs in any window of `min_interarrival`, sharing the window's `batch` datagrams (each
//! job handles at most ⌈`batch` / `burst`⌉, with a budget of that many ×
//! [`PER_DATAGRAM_NS`](crate::proto::tasks::PER_DATAGRAM_NS)). That is what admission
//! reserves, and what the SAP can take: about `batch / min_interarrival` datagrams a
//! second (the excess waits in the SAP's queue, then is dropped by its policy). The burst
//! is what keeps latency low: a datagram that arrives soon after the last job is handled
//! at once unless `burst` jobs already ran in the window, instead of waiting out the
//! minimum inter-arrival time (a ping-pong's answer and a reliable class's ack, say).
//! Each job is charged its own per-job overhead, so a burst asks more of the RT core than
//! one job with the same batch: the default burst is 1. The command task
//! (`[overlay.commands]`) has the same three keys.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use rtpm_net::{BackendChoice, Mode, Reliability};
use rtpm_rt::time::Nanos;
use serde::Deserialize;

use crate::error::Error;
use crate::proto::messaging::ClassPolicy;
use crate::proto::security::OverlayKey;
use crate::proto::{Addr, Config, PeerId};

/// One `[[overlay]]` section. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayConfig {
    /// The overlay's name (1..=32 characters: letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Bootstrap multicast group and port.
    pub multicast: SocketAddrV4,
    /// The interface multicast leaves and is joined on (default: the control SAP's IP).
    #[serde(default)]
    pub interface: Option<Ipv4Addr>,
    /// Multicast TTL (default 1: the local link).
    #[serde(default = "defaults::ttl")]
    pub multicast_ttl: u32,
    /// Control SAPs of other peers, solicited and beaconed to as well as the group.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// The overlay key file: 64 hex digits. Relative paths are relative to the config
    /// folder.
    pub key: PathBuf,
    /// Super-peers per cell (k).
    #[serde(default = "defaults::cell_size")]
    pub cell_size: usize,
    /// Heartbeat period.
    #[serde(default = "defaults::heartbeat")]
    pub heartbeat: Nanos,
    /// Peers one super-peer serves before its cell counts as full.
    #[serde(default)]
    pub peers_per_super_peer: Option<usize>,
    /// Discovery lease.
    #[serde(default)]
    pub lease: Option<Nanos>,
    /// Encrypt payloads as well as authenticating them.
    #[serde(default)]
    pub encrypt: bool,
    /// Publish each SAP of this node under [`sap_key`](super::sap_key) once joined.
    #[serde(default = "defaults::yes")]
    pub publish_saps: bool,
    /// The reactor backend of every SAP.
    #[serde(default)]
    pub backend: BackendChoice,
    /// Application commands (send, publish, lookup): the command task's rate.
    #[serde(default)]
    pub commands: CommandRate,
    /// The SAPs, one per QoS class; class 0 is required.
    #[serde(rename = "sap")]
    pub saps: Vec<SapEntry>,
}

/// One `[[overlay.sap]]`: a QoS class and the socket serving it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SapEntry {
    /// Where it listens (IPv4; the same IP for every SAP of the overlay).
    pub address: SocketAddr,
    /// The QoS class number (0..=7).
    pub class: u8,
    /// Best-effort or reliable (acks, retransmission, order).
    #[serde(default)]
    pub reliability: Reliability,
    /// 0: the reactor runs SCHED_OTHER; 1..=99: SCHED_FIFO at that priority. Also the
    /// class's priority in the overlay (higher is more urgent).
    #[serde(default)]
    pub priority: u8,
    /// Received datagrams queued for the receive task before the drop policy applies.
    #[serde(default = "defaults::queue_depth")]
    pub queue_depth: u32,
    /// Whether the reactor parks or busy-polls.
    #[serde(default)]
    pub mode: Mode,
    /// The receive task's minimum inter-arrival time.
    #[serde(default = "defaults::min_interarrival")]
    pub min_interarrival: Nanos,
    /// Datagrams the receive jobs of one `min_interarrival` window handle at most.
    #[serde(default = "defaults::batch")]
    pub batch: u32,
    /// Receive jobs one `min_interarrival` window may hold (1..=64, at most `batch`;
    /// default 1). See [`SapEntry::burst`].
    #[serde(default, rename = "burst")]
    pub burst_jobs: Option<u32>,
}

impl SapEntry {
    /// The burst in force: `burst` as given, or 1.
    pub fn burst(&self) -> u32 {
        self.burst_jobs
            .unwrap_or_else(|| defaults::burst(self.batch))
    }
}

/// The command task's rate (`[overlay.commands]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRate {
    /// Minimum inter-arrival time of command jobs.
    #[serde(default = "defaults::min_interarrival")]
    pub min_interarrival: Nanos,
    /// Commands the jobs of one `min_interarrival` window carry out at most.
    #[serde(default = "defaults::batch")]
    pub batch: u32,
    /// Command jobs one `min_interarrival` window may hold (1..=64, at most `batch`;
    /// default 1). See [`CommandRate::burst`].
    #[serde(default, rename = "burst")]
    pub burst_jobs: Option<u32>,
    /// Commands queued at most (sends beyond it are refused with an error).
    #[serde(default = "defaults::command_queue")]
    pub queue: u32,
}

impl Default for CommandRate {
    fn default() -> CommandRate {
        CommandRate {
            min_interarrival: defaults::min_interarrival(),
            batch: defaults::batch(),
            burst_jobs: None,
            queue: defaults::command_queue(),
        }
    }
}

impl CommandRate {
    /// The burst in force: `burst` as given, or 1.
    pub fn burst(&self) -> u32 {
        self.burst_jobs
            .unwrap_or_else(|| defaults::burst(self.batch))
    }
}

mod defaults {
    use rtpm_rt::time::Nanos;
    pub fn ttl() -> u32 {
        1
    }
    pub fn cell_size() -> usize {
        3
    }
    pub fn heartbeat() -> Nanos {
        Nanos::ms(25)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn queue_depth() -> u32 {
        1024
    }
    pub fn min_interarrival() -> Nanos {
        Nanos::ms(1)
    }
    pub fn batch() -> u32 {
        16
    }
    pub fn burst(_batch: u32) -> u32 {
        1
    }
    pub fn command_queue() -> u32 {
        1024
    }
}

/// The wire id of the overlay named `name` (carried in every header; datagrams of
/// another overlay are dropped and counted before their MAC is checked).
pub fn overlay_id(name: &str) -> u32 {
    let h = blake3::hash(format!("rtpm overlay id v1\0{name}").as_bytes());
    let b = h.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl OverlayConfig {
    fn bad(&self, key: impl Into<String>, message: impl Into<String>) -> Error {
        Error::OverlayConfig {
            overlay: self.name.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The control SAP (class 0), once [`OverlayConfig::validate`] passed.
    pub fn control(&self) -> Option<&SapEntry> {
        self.saps.iter().find(|s| s.class == 0)
    }

    /// Checks every value (no file is read, nothing is bound). The first bad one is
    /// reported with its key, relative to the section (`sap[1].address`).
    pub fn validate(&self) -> Result<(), Error> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 32
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.bad(
                "name",
                format!("is {n:?}: give 1..=32 characters of letters, digits, '-', '_' or '.'"),
            ));
        }
        if !self.multicast.ip().is_multicast() {
            return Err(self.bad(
                "multicast",
                format!(
                    "is {}: not a multicast group (224.0.0.0/4), e.g. \"239.77.0.1:7600\"",
                    self.multicast
                ),
            ));
        }
        if self.multicast.port() == 0 {
            return Err(self.bad("multicast", "has port 0: give the group's port"));
        }
        if !(1..=255).contains(&self.multicast_ttl) {
            return Err(self.bad("multicast_ttl", "must be in 1..=255"));
        }
        if !(1..=6).contains(&self.cell_size) {
            return Err(self.bad(
                "cell_size",
                format!("is {}: must be in 1..=6", self.cell_size),
            ));
        }
        if self.heartbeat < Nanos::ms(1) || self.heartbeat > Nanos::secs(10) {
            return Err(self.bad(
                "heartbeat",
                format!("is {}: must be in 1ms..=10s", self.heartbeat),
            ));
        }
        if let Some(p) = self.peers_per_super_peer
            && !(1..=32).contains(&p)
        {
            return Err(self.bad("peers_per_super_peer", format!("is {p}: must be in 1..=32")));
        }
        if let Some(l) = self.lease
            && l.get() < 3 * self.heartbeat.get()
        {
            return Err(self.bad(
                "lease",
                format!(
                    "is {l}: must be at least three heartbeats ({})",
                    Nanos(3 * self.heartbeat.get())
                ),
            ));
        }
        check_rate(
            self,
            "commands",
            self.commands.min_interarrival,
            self.commands.batch,
            self.commands.burst(),
        )?;
        if !(1..=65536).contains(&self.commands.queue) {
            return Err(self.bad("commands.queue", "must be in 1..=65536"));
        }
        if self.saps.is_empty() || self.saps.len() > 8 {
            return Err(self.bad(
                "sap",
                "lists no SAP or more than 8: give one [[overlay.sap]] per QoS class, class 0 first",
            ));
        }
        let Some(control) = self.control() else {
            return Err(self.bad(
                "sap",
                "has no class 0: the control SAP (class 0) carries the protocol; add it",
            ));
        };
        let ip = match control.address.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_multicast() => ip,
            other => {
                let i = self.saps.iter().position(|s| s.class == 0).unwrap_or(0);
                return Err(self.bad(
                    format!("sap[{i}].address"),
                    format!(
                        "has IP {other}: the control SAP needs a specific IPv4 unicast address, which the other peers reach it at"
                    ),
                ));
            }
        };
        let base = control.address.port();
        for (i, s) in self.saps.iter().enumerate() {
            if s.class > 7 {
                return Err(self.bad(
                    format!("sap[{i}].class"),
                    format!("is {}: classes are 0..=7", s.class),
                ));
            }
            if self.saps[..i].iter().any(|o| o.class == s.class) {
                return Err(self.bad(
                    format!("sap[{i}].class"),
                    format!("class {} is listed twice: one SAP per class", s.class),
                ));
            }
            if s.address.ip() != IpAddr::V4(ip) {
                return Err(self.bad(
                    format!("sap[{i}].address"),
                    format!(
                        "is {}: every SAP of an overlay listens on the control SAP's IP {ip}",
                        s.address
                    ),
                ));
            }
            let want = if base == 0 {
                0
            } else {
                base as u32 + s.class as u32
            };
            if want > 65535 || s.address.port() as u32 != want {
                return Err(self.bad(
                    format!("sap[{i}].address"),
                    if base == 0 {
                        format!(
                            "is {}: with control port 0 every SAP gives port 0 (the driver picks a block)",
                            s.address
                        )
                    } else {
                        format!(
                            "is {}: a class-{} SAP listens on the control port + {} = {ip}:{want}, which is how peers reach a class",
                            s.address, s.class, s.class
                        )
                    },
                ));
            }
            if s.priority > 99 {
                return Err(self.bad(
                    format!("sap[{i}].priority"),
                    format!("is {}: 0 (SCHED_OTHER) or 1..=99 (SCHED_FIFO)", s.priority),
                ));
            }
            if !(1..=1_048_576).contains(&s.queue_depth) {
                return Err(self.bad(
                    format!("sap[{i}].queue_depth"),
                    format!("is {}: must be in 1..=1048576", s.queue_depth),
                ));
            }
            check_rate(
                self,
                &format!("sap[{i}]"),
                s.min_interarrival,
                s.batch,
                s.burst(),
            )?;
        }
        if self.multicast.port() >= base
            && base != 0
            && (self.multicast.port() as u32) < base as u32 + 8
            && self
                .saps
                .iter()
                .any(|s| s.address.port() == self.multicast.port())
        {
            return Err(self.bad(
                "multicast",
                format!(
                    "uses port {}, which a SAP of this overlay listens on: give the group its own port",
                    self.multicast.port()
                ),
            ));
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if s.ip().is_unspecified() || s.port() == 0 || s.ip().is_multicast() {
                return Err(self.bad(
                    format!("seeds[{i}]"),
                    format!("is {s}: give a peer's control SAP, IP and port"),
                ));
            }
        }
        Ok(())
    }

    /// The multicast interface: `interface`, else the control SAP's IP.
    pub fn multicast_interface(&self) -> Ipv4Addr {
        self.interface
            .or_else(|| match self.control().map(|c| c.address.ip()) {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// The key file's path, relative paths resolved against `dir`.
    pub fn key_path(&self, dir: Option<&Path>) -> PathBuf {
        match dir {
            Some(d) if self.key.is_relative() => d.join(&self.key),
            _ => self.key.clone(),
        }
    }

    /// Reads the key file (64 hex digits, surrounding whitespace allowed).
    pub fn load_key(&self, dir: Option<&Path>) -> Result<OverlayKey, Error> {
        let path = self.key_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.bad(
                "key",
                format!(
                    "{} cannot be read ({e}); create one with `openssl rand -hex 32 > {}` and share it with every peer of the overlay",
                    path.display(),
                    path.display()
                ),
            )
        })?;
        OverlayKey::from_hex(&text).map_err(|e| self.bad("key", format!("{}: {e}", path.display())))
    }

    /// Checks that every fixed SAP address can be bound now (each is bound and released
    /// at once), so a node whose address is taken or not local fails before it binds
    /// anything for real.
    pub fn probe_addresses(&self) -> Result<(), Error> {
        for (i, s) in self.saps.iter().enumerate() {
            if s.address.port() == 0 {
                continue;
            }
            if let Err(e) = std::net::UdpSocket::bind(s.address) {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrInUse => {
                        "another process listens there: stop it or pick another port".to_string()
                    }
                    std::io::ErrorKind::AddrNotAvailable => format!(
                        "no interface of this host has IP {}: use one of its addresses",
                        s.address.ip()
                    ),
                    _ => "check the address".to_string(),
                };
                return Err(self.bad(
                    format!("sap[{i}].address"),
                    format!("{} cannot be bound ({e}): {hint}", s.address),
                ));
            }
        }
        Ok(())
    }

    /// The protocol configuration for peer `id` with key `key`, its control SAP bound at
    /// `addr`. `incarnation` must grow at every restart of the peer.
    pub fn protocol(
        &self,
        id: PeerId,
        addr: SocketAddr,
        key: OverlayKey,
        incarnation: u32,
    ) -> Result<Config, Error> {
        let mut c = Config::new(
            id,
            Addr(addr),
            Addr(SocketAddr::V4(self.multicast)),
            overlay_id(&self.name),
            key,
        )
        .with_heartbeat(self.heartbeat.get());
        c.cell_size = self.cell_size;
        if let Some(p) = self.peers_per_super_peer {
            c.max_bound = p;
        }
        if let Some(l) = self.lease {
            c.lease = l.get();
        }
        c.encrypt = self.encrypt;
        c.incarnation = incarnation;
        c.seed = (id.0 as u64) ^ ((id.0 >> 64) as u64) ^ ((incarnation as u64) << 20);
        let mut classes: Vec<ClassPolicy> = self
            .saps
            .iter()
            .map(|s| ClassPolicy {
                class: s.class,
                reliable: s.reliability == Reliability::Reliable,
                priority: s.priority,
            })
            .collect();
        classes.sort_by_key(|p| p.class);
        c.classes = classes;
        c.validate()?;
        Ok(c)
    }
}

fn check_rate(
    cfg: &OverlayConfig,
    at: &str,
    min_ia: Nanos,
    batch: u32,
    burst: u32,
) -> Result<(), Error> {
    if min_ia < Nanos::us(10) || min_ia > Nanos::secs(1) {
        return Err(cfg.bad(
            format!("{at}.min_interarrival"),
            format!("is {min_ia}: must be in 10us..=1s"),
        ));
    }
    if !(1..=1024).contains(&batch) {
        return Err(cfg.bad(
            format!("{at}.batch"),
            format!("is {batch}: must be in 1..=1024"),
        ));
    }
    if !(1..=64).contains(&burst) || burst > batch {
        return Err(cfg.bad(
            format!("{at}.burst"),
            format!("is {burst}: must be in 1..=64 and at most the batch ({batch})"),
        ));
    }
    let budget = u64::from(burst) * per_job(batch, burst) * crate::proto::tasks::PER_DATAGRAM_NS;
    if budget > min_ia.get() {
        return Err(cfg.bad(
            format!("{at}.batch"),
            format!(
                "is {batch}: its budget ({}) exceeds the minimum inter-arrival time ({min_ia}); lower the batch or raise min_interarrival",
                Nanos(budget)
            ),
        ));
    }
    Ok(())
}

/// What one job of a task with `batch` items per window shared by `burst` jobs takes at
/// most: ⌈batch / burst⌉.
pub(crate) fn per_job(batch: u32, burst: u32) -> u64 {
    u64::from(batch).div_ceil(u64::from(burst.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "city"
multicast = "239.77.0.1:7600"
key = "city.key"
[[sap]]
address = "127.0.0.1:7000"
class = 0
[[sap]]
address = "127.0.0.1:7001"
class = 1
reliability = "reliable"
"#;

    fn parse(text: &str) -> Result<OverlayConfig, String> {
        let c: OverlayConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_minimal_section_gets_the_defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.cell_size, 3);
        assert_eq!(c.heartbeat, Nanos::ms(25));
        assert_eq!(c.multicast_interface(), Ipv4Addr::LOCALHOST);
        assert_eq!(c.saps[1].reliability, Reliability::Reliable);
        let p = c
            .protocol(
                PeerId(5),
                "127.0.0.1:7000".parse().unwrap(),
                OverlayKey([1; 32]),
                3,
            )
            .unwrap();
        assert_eq!(p.classes.len(), 2);
        assert!(p.classes[1].reliable && !p.classes[0].reliable);
        assert_eq!(p.overlay, overlay_id("city"));
        assert_ne!(overlay_id("city"), overlay_id("town"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_key() {
        let e = parse(&format!("colour = 3\n{BASE}")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        for (from, to, key) in [
            ("239.77.0.1:7600", "10.0.0.1:7600", "multicast"),
            ("127.0.0.1:7001", "127.0.0.1:7005", "sap[1].address"),
            ("127.0.0.1:7001", "127.0.0.2:7001", "sap[1].address"),
            ("127.0.0.1:7000", "0.0.0.0:7000", "sap[0].address"),
            ("class = 1", "class = 0", "sap[1].class"),
            ("class = 1", "class = 9", "sap[1].class"),
        ] {
            let e = parse(&BASE.replace(from, to)).unwrap_err();
            assert!(e.contains(&format!("key `{key}`")), "{from}->{to}: {e}");
        }
        let e = parse(&BASE.replace("class = 0", "class = 2")).unwrap_err();
        assert!(e.contains("key `sap`") && e.contains("class 0"), "{e}");
        let e = parse(&format!("heartbeat = \"1 fortnight\"\n{BASE}")).unwrap_err();
        assert!(e.contains("heartbeat") || e.contains("unit"), "{e}");
        let e = parse(&BASE.replace(
            "reliability = \"reliable\"",
            "reliability = \"reliable\"\nbatch = 400\nmin_interarrival = \"1ms\"",
        ))
        .unwrap_err();
        assert!(e.contains("key `sap[1].batch`"), "{e}");
        for burst in ["burst = 0", "burst = 65", "batch = 2\nburst = 3"] {
            let e = parse(&BASE.replace(
                "reliability = \"reliable\"",
                &format!("reliability = \"reliable\"\n{burst}"),
            ))
            .unwrap_err();
            assert!(e.contains("key `sap[1].burst`"), "{burst}: {e}");
        }
        let e = parse(&format!("{BASE}[commands]\nburst = 0\n")).unwrap_err();
        assert!(e.contains("key `commands.burst`"), "{e}");
    }

    #[test]
    fn port_zero_means_a_block_chosen_at_bind() {
        let c = parse(&BASE.replace(":7000", ":0").replace(":7001", ":0")).unwrap();
        assert_eq!(c.control().unwrap().address.port(), 0);
        let e = parse(&BASE.replace(":7000", ":0")).unwrap_err();
        assert!(e.contains("port 0"), "{e}");
    }

    #[test]
    fn a_missing_key_file_says_how_to_make_one() {
        let c = parse(BASE).unwrap();
        let e = c
            .load_key(Some(Path::new("/nonexistent-rtpm")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `key`") && e.contains("openssl rand -hex 32"),
            "{e}"
        );
    }
}
