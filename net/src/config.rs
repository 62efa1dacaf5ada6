//! SAP configuration: the transport, the QoS class, and how the reactor runs.
//!
//! These structs are what a `node.toml` embeds for each SAP, so they deserialize with
//! `deny_unknown_fields` and spell durations as unit strings ([`Nanos`]). A config is
//! checked whole by [`SapConfig::validate`] before anything is bound; an error names the
//! key and what would be valid.
//!
//! ```toml
//! name = "control"
//! backend = "auto"            # auto | io-uring | epoll
//! [transport]
//! kind = "udp"                # udp | udp-multicast | tcp
//! bind = "127.0.0.1:7000"
//! [qos]
//! priority = 40               # 0: SCHED_OTHER; 1..=99: SCHED_FIFO at that priority
//! reliability = "reliable"    # carried for the overlay
//! queue_depth = 256
//! drop_policy = "drop-oldest" # drop-newest | drop-oldest | backpressure
//! mode = "busy-poll"          # park | busy-poll
//! spin = "100us"
//! threads = 1
//! cores = "general"           # any | general | rt | [cpu ids]
//! dscp = 46
//! ```

use std::net::{Ipv4Addr, SocketAddr};

use rtpm_rt::time::Nanos;
use serde::Deserialize;

use crate::error::Error;

/// One service access point: a socket (or a sharded set of them) with one QoS class.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SapConfig {
    /// Name, used in logs, errors and thread names (`rtpm-net/<name>/<i>`).
    pub name: String,
    /// What the SAP listens on.
    pub transport: Transport,
    /// The QoS class; never multiplexed with another class on one reactor.
    pub qos: QosClass,
    /// Which reactor backend runs.
    #[serde(default)]
    pub backend: BackendChoice,
    /// Whether the pool shares one event source or shards sockets over one per thread.
    #[serde(default)]
    pub layout: Layout,
    /// Receive buffers per reactor: a power of two, 2..=32768.
    #[serde(default = "defaults::buffers")]
    pub buffers: u32,
    /// Bytes per receive buffer (and per send slot): 256..=131072. A datagram or frame
    /// larger than what fits is dropped and counted.
    #[serde(default = "defaults::buffer_size")]
    pub buffer_size: u32,
    /// Send slots per reactor: how many outgoing messages may be queued or in flight.
    #[serde(default = "defaults::send_slots")]
    pub send_slots: u32,
    /// TCP connections per reactor (accepted and connected).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Submission queue entries of an io_uring reactor (the completion queue has 8x).
    #[serde(default = "defaults::ring_entries")]
    pub ring_entries: u32,
    /// UDP: send runs of equal-size datagrams to one destination as one system call or
    /// submission (UDP GSO, `UDP_SEGMENT`), where the kernel supports it; the kernel
    /// splits them back into ordinary datagrams. Nothing waits to form a run. A kernel or
    /// route that refuses it gets the datagrams one by one (counted in `gso_refused`).
    #[serde(default = "defaults::yes")]
    pub udp_gso: bool,
    /// UDP: let the kernel deliver consecutive datagrams of one flow coalesced in one
    /// buffer (UDP GRO); the reactor splits the buffer into one handle per datagram, in
    /// place. A coalesced burst is up to 64 KiB, so this needs `buffer_size` of at least
    /// [`SapConfig::GRO_MIN_BUFFER_SIZE`] (65664). For receivers of bulk traffic.
    #[serde(default)]
    pub udp_gro: bool,
    /// UDP unicast: connect the socket to this one peer (`connect(2)`). Datagrams to it
    /// then leave without a destination address — the kernel keeps the route cached on
    /// the socket instead of looking it up for every send — and only its datagrams are
    /// received. Sends to other addresses still work (with a lookup each). For a client
    /// that talks to one server. Needs one socket: with `qos.threads` > 1 use
    /// `layout = "shared"`.
    #[serde(default)]
    pub peer: Option<SocketAddr>,
}

/// What a SAP listens on.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Transport {
    /// UDP unicast on `bind` (port 0 picks a free port).
    Udp {
        /// Local address.
        bind: SocketAddr,
    },
    /// UDP multicast: bound on `bind`, joined to `group` on the interface whose IPv4
    /// address is `interface`; sends leave through that interface.
    UdpMulticast {
        /// Local address (usually `0.0.0.0:<port>`).
        bind: SocketAddr,
        /// The group joined at bind time.
        group: Ipv4Addr,
        /// The interface's IPv4 address (`127.0.0.1` for loopback).
        interface: Ipv4Addr,
        /// Whether own sends loop back to local members.
        #[serde(default = "defaults::yes")]
        loopback: bool,
        /// Multicast TTL of sends.
        #[serde(default = "defaults::ttl")]
        ttl: u32,
    },
    /// TCP with 4-byte big-endian length-prefixed frames. `bind` listens; without it the
    /// SAP only makes outgoing connections.
    Tcp {
        /// Listening address, if any.
        #[serde(default)]
        bind: Option<SocketAddr>,
    },
}

/// A QoS class: how a SAP's traffic is prioritised, queued and dropped.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QosClass {
    /// Scheduling of the pool threads: 0 runs them SCHED_OTHER, 1..=99 SCHED_FIFO at that
    /// priority. Also the default for `so_priority` (6 when > 0, else 0).
    #[serde(default)]
    pub priority: u8,
    /// Best-effort or reliable; the network layer carries it, the overlay acts on it.
    #[serde(default)]
    pub reliability: Reliability,
    /// Handles each destination queue holds before the drop policy applies.
    #[serde(default = "defaults::queue_depth")]
    pub queue_depth: u32,
    /// What a full destination queue does.
    #[serde(default)]
    pub drop_policy: DropPolicy,
    /// Whether pool threads park or busy-poll.
    #[serde(default)]
    pub mode: Mode,
    /// Busy-poll: the longest a thread spins with nothing to do before it parks.
    #[serde(default = "defaults::spin")]
    pub spin: Nanos,
    /// Busy-poll with `priority` > 0 (SCHED_FIFO): the largest share of each
    /// `sched_rt_period_us` a thread may spend spinning. It is further capped 5 points below
    /// `sched_rt_runtime_us / sched_rt_period_us`, so spinning never trips the kernel's RT
    /// throttling. (SCHED_OTHER threads are never throttled; only `spin` bounds them.)
    #[serde(default = "defaults::spin_share")]
    pub spin_share: f64,
    /// Pool threads per SAP (1..=64).
    #[serde(default = "defaults::threads")]
    pub threads: u32,
    /// Where the pool threads run.
    #[serde(default)]
    pub cores: Cores,
    /// DSCP code point (0..=63) for IP_TOS / IPV6_TCLASS.
    #[serde(default)]
    pub dscp: u8,
    /// SO_PRIORITY (0..=6 unprivileged; up to 255 with CAP_NET_ADMIN).
    #[serde(default)]
    pub so_priority: Option<u8>,
    /// SO_RCVBUF in bytes.
    #[serde(default)]
    pub recv_buffer: Option<u32>,
    /// SO_SNDBUF in bytes.
    #[serde(default)]
    pub send_buffer: Option<u32>,
    /// SO_BUSY_POLL: how long a blocking receive busy-polls the device queue. Applied
    /// where permitted (raising it above `net.core.busy_read` needs CAP_NET_ADMIN); a
    /// refusal is logged, not fatal.
    #[serde(default)]
    pub socket_busy_poll: Option<Nanos>,
}

/// Reliability of a class. The network layer only carries it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Reliability {
    /// No acknowledgements or retransmission.
    #[default]
    BestEffort,
    /// Sequence numbers, acks, retransmission (done by the overlay).
    Reliable,
}

/// What a full destination queue does with a new message. It never blocks the reactor.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DropPolicy {
    /// Drop the arriving message (counted).
    #[default]
    DropNewest,
    /// Drop the oldest queued message to make room (counted).
    DropOldest,
    /// Keep the message aside, in order, holding its buffer; when buffers run out the
    /// reactor stops receiving (ENOBUFS, counted), so TCP peers are flow-controlled and
    /// UDP excess is dropped by the kernel (counted through SO_RXQ_OVFL).
    Backpressure,
}

/// How pool threads wait.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Block in the kernel until an event arrives.
    #[default]
    Park,
    /// Spin on the event source for up to `spin`, then block.
    BusyPoll,
}

/// Where pool threads run.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Cores {
    /// A named class of cores.
    Class(CoreClass),
    /// Explicit CPU ids (each must be in the process's allowed set).
    List(Vec<usize>),
    /// Any allowed CPU (the default).
    #[default]
    #[serde(skip)]
    Unset,
}

/// A named class of cores.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CoreClass {
    /// Every CPU the process may use.
    Any,
    /// The node's general cores.
    General,
    /// The node's real-time cores.
    Rt,
}

/// Which backend a reactor uses.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// io_uring if the probe passes, else epoll (the reason is logged).
    #[default]
    Auto,
    /// io_uring, or an error explaining why it cannot run.
    IoUring,
    /// epoll.
    Epoll,
}

/// How a pool's threads share sockets.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One socket per thread (SO_REUSEPORT), each with its own event source; a thread is
    /// always its source's leader. The default: it measured better on the reference VM
    /// (bench/RESULTS.md, issue 5).
    #[default]
    Sharded,
    /// One socket and one event source shared by the pool, served leader/followers.
    Shared,
}

mod defaults {
    use rtpm_rt::time::Nanos;
    pub fn buffers() -> u32 {
        1024
    }
    pub fn buffer_size() -> u32 {
        2048
    }
    pub fn send_slots() -> u32 {
        256
    }
    pub fn max_connections() -> u32 {
        64
    }
    pub fn ring_entries() -> u32 {
        256
    }
    pub fn queue_depth() -> u32 {
        1024
    }
    pub fn spin() -> Nanos {
        Nanos::us(50)
    }
    pub fn spin_share() -> f64 {
        0.5
    }
    pub fn threads() -> u32 {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn ttl() -> u32 {
        1
    }
}

impl QosClass {
    /// The SO_PRIORITY to apply: explicit, or derived from `priority`.
    pub fn effective_so_priority(&self) -> u8 {
        self.so_priority
            .unwrap_or(if self.priority > 0 { 6 } else { 0 })
    }
}

impl Default for QosClass {
    fn default() -> QosClass {
        QosClass {
            priority: 0,
            reliability: Reliability::BestEffort,
            queue_depth: defaults::queue_depth(),
            drop_policy: DropPolicy::DropNewest,
            mode: Mode::Park,
            spin: defaults::spin(),
            spin_share: defaults::spin_share(),
            threads: defaults::threads(),
            cores: Cores::Unset,
            dscp: 0,
            so_priority: None,
            recv_buffer: None,
            send_buffer: None,
            socket_busy_poll: None,
        }
    }
}

impl SapConfig {
    /// A config with defaults for everything but the name and transport.
    pub fn new(name: impl Into<String>, transport: Transport) -> SapConfig {
        SapConfig {
            name: name.into(),
            transport,
            qos: QosClass::default(),
            backend: BackendChoice::Auto,
            layout: Layout::default(),
            buffers: defaults::buffers(),
            buffer_size: defaults::buffer_size(),
            send_slots: defaults::send_slots(),
            max_connections: defaults::max_connections(),
            ring_entries: defaults::ring_entries(),
            udp_gso: true,
            udp_gro: false,
            peer: None,
        }
    }

    /// The smallest `buffer_size` that takes UDP GRO: a 64 KiB coalesced burst plus the
    /// receive header (recvmsg header, source address, GRO control message), rounded up.
    pub const GRO_MIN_BUFFER_SIZE: u32 = 65536 + 128;

    /// Parses a config from TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<SapConfig, Error> {
        let cfg: SapConfig = toml::from_str(text).map_err(|e| Error::Config {
            sap: "<unparsed>".into(),
            field: "(toml)",
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value; the first bad one is reported with its key.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, reason: String| Error::Config {
            sap: self.name.clone(),
            field,
            reason,
        };
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(bad("name", "must be 1..=64 characters".into()));
        }
        if !(2..=32768).contains(&self.buffers) || !self.buffers.is_power_of_two() {
            return Err(bad(
                "buffers",
                format!("is {}: must be a power of two in 2..=32768", self.buffers),
            ));
        }
        if !(256..=131072).contains(&self.buffer_size) {
            return Err(bad(
                "buffer_size",
                format!("is {}: must be in 256..=131072 bytes", self.buffer_size),
            ));
        }
        if self.udp_gro {
            if matches!(self.transport, Transport::Tcp { .. }) {
                return Err(bad(
                    "udp_gro",
                    "is true on a TCP SAP: GRO applies to UDP only".into(),
                ));
            }
            if self.buffer_size < Self::GRO_MIN_BUFFER_SIZE {
                return Err(bad(
                    "buffer_size",
                    format!(
                        "is {} with udp_gro = true: a coalesced burst is up to 64 KiB, so use at least {} (or udp_gro = false)",
                        self.buffer_size,
                        Self::GRO_MIN_BUFFER_SIZE
                    ),
                ));
            }
        }
        if !(1..=32768).contains(&self.send_slots) {
            return Err(bad(
                "send_slots",
                format!("is {}: must be in 1..=32768", self.send_slots),
            ));
        }
        if !(1..=65536).contains(&self.max_connections) {
            return Err(bad(
                "max_connections",
                format!("is {}: must be in 1..=65536", self.max_connections),
            ));
        }
        if !(8..=4096).contains(&self.ring_entries) || !self.ring_entries.is_power_of_two() {
            return Err(bad(
                "ring_entries",
                format!(
                    "is {}: must be a power of two in 8..=4096",
                    self.ring_entries
                ),
            ));
        }
        let q = &self.qos;
        if q.priority > 99 {
            return Err(bad(
                "qos.priority",
                format!(
                    "is {}: use 0 for SCHED_OTHER or 1..=99 for SCHED_FIFO",
                    q.priority
                ),
            ));
        }
        if !(1..=1_048_576).contains(&q.queue_depth) {
            return Err(bad(
                "qos.queue_depth",
                format!("is {}: must be in 1..=1048576", q.queue_depth),
            ));
        }
        if !(1..=64).contains(&q.threads) {
            return Err(bad(
                "qos.threads",
                format!("is {}: must be in 1..=64", q.threads),
            ));
        }
        if !(q.spin_share > 0.0 && q.spin_share <= 1.0) {
            return Err(bad(
                "qos.spin_share",
                format!("is {}: must be in (0, 1]", q.spin_share),
            ));
        }
        if q.spin > Nanos::ms(100) {
            return Err(bad(
                "qos.spin",
                format!(
                    "is {}: must be at most 100ms (a thread parks after spinning this long)",
                    q.spin
                ),
            ));
        }
        if q.dscp > 63 {
            return Err(bad(
                "qos.dscp",
                format!("is {}: a DSCP code point is 0..=63", q.dscp),
            ));
        }
        if let Cores::List(ids) = &q.cores
            && ids.is_empty()
        {
            return Err(bad(
                "qos.cores",
                "is an empty list: give CPU ids, or \"any\", \"general\" or \"rt\"".into(),
            ));
        }
        if let Transport::UdpMulticast { group, .. } = &self.transport
            && !group.is_multicast()
        {
            return Err(bad(
                "transport.group",
                format!("is {group}: not a multicast address (224.0.0.0/4)"),
            ));
        }
        if let Some(peer) = self.peer {
            let Transport::Udp { bind } = &self.transport else {
                return Err(bad(
                    "peer",
                    "is set on a TCP or multicast SAP: only a UDP unicast socket connects to one peer (TCP: use `Sap::connect`)".into(),
                ));
            };
            if peer.is_ipv4() != bind.is_ipv4() {
                return Err(bad(
                    "peer",
                    format!("is {peer}, but the SAP binds {bind}: use the same address family"),
                ));
            }
            if peer.port() == 0 || peer.ip().is_unspecified() {
                return Err(bad(
                    "peer",
                    format!("is {peer}: give the peer's address and port"),
                ));
            }
            if q.threads > 1 && self.layout == Layout::Sharded {
                return Err(bad(
                    "peer",
                    format!(
                        "is set with qos.threads = {} and layout = \"sharded\": connected SO_REUSEPORT sockets would all take the peer's datagrams in one of them; use layout = \"shared\" (or one thread)",
                        q.threads
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Largest payload one message may carry on this SAP.
    pub fn max_payload(&self) -> usize {
        let b = self.buffer_size as usize;
        match self.transport {
            // The recvmsg header (16 B), a sockaddr_in6 (28 B) and, with GRO, its control
            // message (24 B) precede the payload in an io_uring receive buffer; and no
            // UDP datagram carries more than 65507 B.
            Transport::Udp { .. } | Transport::UdpMulticast { .. } => {
                (b - recv_prefix(self.udp_gro)).min(MAX_UDP_PAYLOAD)
            }
            Transport::Tcp { .. } => b - 4,
        }
    }
}

/// The largest UDP payload (IPv4).
const MAX_UDP_PAYLOAD: usize = 65507;

/// Bytes before a datagram's payload in a receive buffer (see [`SapConfig::max_payload`]).
pub(crate) fn recv_prefix(gro: bool) -> usize {
    16 + 28 + if gro { 24 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SapConfig, Error> {
        SapConfig::from_toml(text)
    }

    #[test]
    fn a_full_config_parses() {
        let cfg = parse(
            r#"
            name = "ctl"
            backend = "epoll"
            layout = "shared"
            [transport]
            kind = "udp-multicast"
            bind = "0.0.0.0:7000"
            group = "239.1.1.1"
            interface = "127.0.0.1"
            [qos]
            priority = 40
            reliability = "reliable"
            queue_depth = 16
            drop_policy = "backpressure"
            mode = "busy-poll"
            spin = "100us"
            threads = 2
            cores = [0, 1]
            dscp = 46
            "#,
        )
        .unwrap();
        assert_eq!(cfg.backend, BackendChoice::Epoll);
        assert_eq!(cfg.qos.spin, Nanos::us(100));
        assert_eq!(cfg.qos.cores, Cores::List(vec![0, 1]));
        assert_eq!(cfg.qos.drop_policy, DropPolicy::Backpressure);
        assert!(matches!(
            cfg.transport,
            Transport::UdpMulticast { ttl: 1, .. }
        ));
        assert_eq!(cfg.qos.effective_so_priority(), 6);
    }

    #[test]
    fn named_core_classes_parse() {
        let cfg =
            parse("name = \"a\"\n[transport]\nkind = \"tcp\"\n[qos]\ncores = \"rt\"\n").unwrap();
        assert_eq!(cfg.qos.cores, Cores::Class(CoreClass::Rt));
        assert_eq!(cfg.transport, Transport::Tcp { bind: None });
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(
            "name = \"a\"\n[transport]\nkind = \"udp\"\nbind = \"127.0.0.1:0\"\n[qos]\nprio = 3\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("prio"), "{e}");
        let e = parse(
            "name = \"a\"\n[transport]\nkind = \"udp\"\nbind = \"127.0.0.1:0\"\nport = 3\n[qos]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = "name = \"a\"\n[transport]\nkind = \"udp\"\nbind = \"127.0.0.1:0\"\n";
        for (extra, key) in [
            ("[qos]\nthreads = 0\n", "qos.threads"),
            ("[qos]\npriority = 120\n", "qos.priority"),
            ("[qos]\ndscp = 64\n", "qos.dscp"),
            ("[qos]\nspin_share = 0.0\n", "qos.spin_share"),
            ("[qos]\ncores = []\n", "qos.cores"),
            ("buffers = 1000\n[qos]\n", "buffers"),
        ] {
            let (pre, post) = extra.split_once("[qos]\n").unwrap();
            let text = format!("{pre}{base}[qos]\n{post}");
            let e = parse(&text).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn gro_needs_room_for_a_coalesced_burst() {
        let base = "name = \"a\"\n[transport]\nkind = \"udp\"\nbind = \"127.0.0.1:0\"\n[qos]\n";
        let e = parse(&format!("udp_gro = true\n{base}")).unwrap_err();
        assert!(e.to_string().contains("buffer_size"), "{e}");
        assert!(e.to_string().contains("65664"), "{e}");
        let ok = parse(&format!(
            "udp_gro = true\nbuffer_size = 65664\nbuffers = 64\n{base}"
        ))
        .unwrap();
        assert!(ok.udp_gro && ok.udp_gso);
        assert_eq!(ok.max_payload(), 65507);
        let tcp = "udp_gro = true\nbuffer_size = 65664\nname = \"a\"\n[transport]\nkind = \"tcp\"\n[qos]\n";
        let e = parse(tcp).unwrap_err();
        assert!(e.to_string().contains("udp_gro"), "{e}");
        let plain = parse(base).unwrap();
        assert_eq!(plain.max_payload(), 2048 - 44);
    }

    #[test]
    fn durations_are_unit_strings() {
        let e = parse(
            "name = \"a\"\n[transport]\nkind = \"udp\"\nbind = \"127.0.0.1:0\"\n[qos]\nspin = \"5 parsecs\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unit"), "{e}");
    }
    #[test]
    fn a_peer_is_checked_against_the_transport_and_layout() {
        let udp = "name = \"a\"\n[transport]\nkind = \"udp\"\nbind = \"127.0.0.1:0\"\n";
        let ok = parse(&format!("peer = \"127.0.0.1:9000\"\n{udp}[qos]\n")).unwrap();
        assert_eq!(ok.peer, Some("127.0.0.1:9000".parse().unwrap()));
        let shared = parse(&format!(
            "peer = \"127.0.0.1:9000\"\nlayout = \"shared\"\n{udp}[qos]\nthreads = 2\n"
        ))
        .unwrap();
        assert_eq!(shared.qos.threads, 2);
        for (text, says) in [
            (
                format!("peer = \"127.0.0.1:9000\"\n{udp}[qos]\nthreads = 2\n"),
                "layout",
            ),
            (format!("peer = \"[::1]:9000\"\n{udp}[qos]\n"), "family"),
            (format!("peer = \"127.0.0.1:0\"\n{udp}[qos]\n"), "port"),
            (
                "peer = \"127.0.0.1:9000\"\nname = \"a\"\n[transport]\nkind = \"tcp\"\n[qos]\n"
                    .to_string(),
                "TCP",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.to_string().contains("peer"), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
