//! The overlay's SAPs: one per QoS class, plus the bootstrap group; binding, addressing
//! and sending.
//!
//! **Addressing.** The protocol knows a peer by one address, its control SAP (class 0).
//! A class-`c` SAP listens on the same IP at the control port + `c` and sends from there,
//! so a datagram of class `c` goes to the destination's control port + `c`, and on
//! arrival its source port − `c` is the sender's control address again (what the
//! protocol learns routes from). Datagrams to the overlay's group leave through the
//! control SAP (its multicast interface is set), so answers come back to it; they also go
//! to every seed, for networks without multicast. The group SAP (bound to the group
//! address itself) only receives.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use rtpm_net::{
    Consumer, CoreClass, Cores, DropPolicy, QosClass, Sap, SapConfig, SapStats, Transport,
};
use rtpm_rt::config::Partition;

use super::config::{OverlayConfig, SapEntry};
use crate::error::Error;
use crate::proto::Transmit;

/// Offset of the class byte in a sealed datagram (see [`crate::proto::wire`]).
const CLASS_OFFSET: usize = 5;
/// Attempts at finding a free block of ports when the control port is 0.
const PORT_BLOCK_ATTEMPTS: usize = 32;

/// One bound class SAP.
pub(crate) struct ClassSap {
    pub(crate) entry: SapEntry,
    pub(crate) sap: Sap,
    pub(crate) addr: SocketAddr,
}

/// Every socket of one overlay. See the [module documentation](self).
pub(crate) struct Links {
    /// Class SAPs, the control SAP (class 0) first.
    pub(crate) classes: Vec<ClassSap>,
    /// Index into `classes` by class number.
    by_class: [Option<usize>; 8],
    /// The bootstrap group's receiving SAP.
    pub(crate) group_sap: Sap,
    pub(crate) group: SocketAddrV4,
    pub(crate) interface: Ipv4Addr,
    seeds: Vec<SocketAddr>,
}

/// The receiving ends, handed to the engine (a consumer is single-owner).
pub(crate) struct Consumers {
    /// Per class SAP, in `Links::classes` order.
    pub(crate) classes: Vec<Consumer>,
    /// The group SAP's.
    pub(crate) group: Consumer,
}

fn sap_config(
    cfg: &OverlayConfig,
    name: String,
    transport: Transport,
    entry: &SapEntry,
    partition: Option<&Partition>,
) -> SapConfig {
    let mut s = SapConfig::new(name, transport);
    s.backend = cfg.backend;
    s.qos = QosClass {
        priority: entry.priority,
        reliability: entry.reliability,
        queue_depth: entry.queue_depth,
        drop_policy: DropPolicy::DropNewest,
        mode: entry.mode,
        threads: 1,
        cores: if partition.is_some_and(|p| !p.general_cores().is_empty()) {
            Cores::Class(CoreClass::General)
        } else {
            Cores::Unset
        },
        ..QosClass::default()
    };
    // every queued handle holds a buffer: room for a full queue and the reactor's own
    s.buffers = (entry.queue_depth + 64)
        .next_power_of_two()
        .clamp(64, 32768);
    s.send_slots = 1024;
    s
}

fn bind(cfg: SapConfig, partition: Option<&Partition>) -> Result<Sap, rtpm_net::Error> {
    let mut b = Sap::builder(cfg).queue();
    if let Some(p) = partition {
        b = b.partition(p.clone());
    }
    b.bind()
}

impl Links {
    /// Binds the class SAPs and the group SAP of `cfg` (validated). On error nothing
    /// stays bound.
    pub(crate) fn bind(
        cfg: &OverlayConfig,
        partition: Option<&Partition>,
    ) -> Result<(Links, Consumers), Error> {
        let setup = |what: String, e: rtpm_net::Error| Error::Setup {
            overlay: cfg.name.clone(),
            what,
            message: e.to_string(),
        };
        let mut order: Vec<&SapEntry> = cfg.saps.iter().collect();
        order.sort_by_key(|s| s.class);
        let interface = cfg.multicast_interface();
        let control = order
            .first()
            .map(|s| s.address)
            .ok_or_else(|| Error::OverlayConfig {
                overlay: cfg.name.clone(),
                key: "sap".into(),
                message: "has no class 0 SAP".into(),
            })?;
        let attempts = if control.port() == 0 {
            PORT_BLOCK_ATTEMPTS
        } else {
            1
        };
        let mut classes: Vec<ClassSap> = Vec::new();
        let mut last_err = None;
        for _ in 0..attempts {
            classes.clear();
            let mut base: Option<u16> = None;
            let mut failed = None;
            for entry in &order {
                let mut addr = entry.address;
                if let Some(b) = base {
                    match b.checked_add(entry.class as u16) {
                        Some(p) => addr.set_port(p),
                        None => {
                            failed = Some((
                                format!("SAP of class {}", entry.class),
                                rtpm_net::Error::Internal("port block past 65535".into()),
                            ));
                            break;
                        }
                    }
                }
                let name = format!("{}/c{}", cfg.name, entry.class);
                let transport = if entry.class == 0 {
                    // a multicast transport sets the interface the group's datagrams
                    // leave through; bound to the unicast address, it receives unicast
                    match addr.ip() {
                        IpAddr::V4(_) => Transport::UdpMulticast {
                            bind: addr,
                            group: *cfg.multicast.ip(),
                            interface,
                            loopback: true,
                            ttl: cfg.multicast_ttl,
                        },
                        IpAddr::V6(_) => Transport::Udp { bind: addr },
                    }
                } else {
                    Transport::Udp { bind: addr }
                };
                let sc = sap_config(cfg, name, transport, entry, partition);
                match bind(sc, partition) {
                    Ok(sap) => {
                        let local = sap.local_addr().unwrap_or(addr);
                        if base.is_none() {
                            base = Some(local.port());
                        }
                        classes.push(ClassSap {
                            entry: (*entry).clone(),
                            sap,
                            addr: local,
                        });
                    }
                    Err(e) => {
                        failed = Some((format!("SAP of class {} on {addr}", entry.class), e));
                        break;
                    }
                }
            }
            match failed {
                None => {
                    last_err = None;
                    break;
                }
                Some(f) => {
                    // release what this attempt bound before trying another block
                    classes.clear();
                    last_err = Some(f);
                }
            }
        }
        if let Some((what, e)) = last_err {
            return Err(setup(what, e));
        }
        let group_entry = SapEntry {
            address: SocketAddr::V4(cfg.multicast),
            ..order[0].clone()
        };
        let group_cfg = sap_config(
            cfg,
            format!("{}/group", cfg.name),
            Transport::UdpMulticast {
                bind: SocketAddr::V4(cfg.multicast),
                group: *cfg.multicast.ip(),
                interface,
                loopback: true,
                ttl: cfg.multicast_ttl,
            },
            &group_entry,
            partition,
        );
        let group_sap = bind(group_cfg, partition)
            .map_err(|e| setup(format!("group SAP on {}", cfg.multicast), e))?;
        let mut by_class = [None; 8];
        for (i, c) in classes.iter().enumerate() {
            by_class[c.entry.class as usize & 7] = Some(i);
        }
        let consumers = Consumers {
            classes: classes
                .iter()
                .map(|c| c.sap.consumer(0))
                .collect::<Result<_, _>>()
                .map_err(|e| setup("SAP consumer".into(), e))?,
            group: group_sap
                .consumer(0)
                .map_err(|e| setup("group consumer".into(), e))?,
        };
        let me = classes.first().map(|c| c.addr);
        Ok((
            Links {
                classes,
                by_class,
                group_sap,
                group: cfg.multicast,
                interface,
                seeds: cfg
                    .seeds
                    .iter()
                    .copied()
                    .filter(|s| Some(*s) != me)
                    .collect(),
            },
            consumers,
        ))
    }

    /// The control SAP's address: this peer's address in the overlay.
    pub(crate) fn control_addr(&self) -> SocketAddr {
        self.classes
            .first()
            .map(|c| c.addr)
            .unwrap_or(SocketAddr::V4(self.group))
    }

    /// Sends a transmit of the protocol: with `direct`, a unicast datagram leaves from
    /// the calling thread at once when its SAP has nothing queued
    /// ([`Sap::send_to_now`](rtpm_net::Sap::send_to_now)); otherwise it queues for the
    /// SAP's reactor. Returns the datagrams the SAPs refused (send queue full or a socket
    /// error).
    pub(crate) fn send(&self, t: &Transmit, direct: bool) -> u64 {
        let Some(control) = self.classes.first() else {
            return 1;
        };
        let mut refused = 0;
        if t.dest.0 == SocketAddr::V4(self.group) {
            if control.sap.send_to(t.dest.0, &t.bytes).is_err() {
                refused += 1;
            }
            for s in &self.seeds {
                if control.sap.send_to(*s, &t.bytes).is_err() {
                    refused += 1;
                }
            }
            return refused;
        }
        let class = t.bytes.get(CLASS_OFFSET).copied().unwrap_or(0);
        let (sap, to) = match self.by_class.get(class as usize).copied().flatten() {
            Some(i) if class > 0 => {
                let mut to = t.dest.0;
                match to.port().checked_add(class as u16) {
                    Some(p) => {
                        to.set_port(p);
                        (&self.classes[i].sap, to)
                    }
                    None => (&control.sap, t.dest.0),
                }
            }
            _ => (&control.sap, t.dest.0),
        };
        let sent = if direct {
            sap.send_to_now(to, &t.bytes)
        } else {
            sap.send_to(to, &t.bytes)
        };
        if sent.is_err() {
            refused += 1;
        }
        refused
    }

    /// The sender's control address of a datagram that arrived on class SAP `i`.
    pub(crate) fn normalize(&self, i: usize, from: SocketAddr) -> SocketAddr {
        let class = self.classes.get(i).map_or(0, |c| c.entry.class);
        let mut a = from;
        if class > 0 {
            a.set_port(from.port().wrapping_sub(class as u16));
        }
        a
    }

    /// Starts (true) or stops receiving the group's datagrams.
    pub(crate) fn listen(&self, on: bool) -> Result<(), rtpm_net::Error> {
        if on {
            self.group_sap.join(*self.group.ip(), self.interface)
        } else {
            self.group_sap.leave(*self.group.ip(), self.interface)
        }
    }

    /// Counters of class SAP `i`'s socket and queue.
    pub(crate) fn stats(&self, i: usize) -> Option<(SapStats, rtpm_net::DestStats)> {
        let c = self.classes.get(i)?;
        Some((c.sap.stats(), c.sap.dest_stats(0).unwrap_or_default()))
    }
}
