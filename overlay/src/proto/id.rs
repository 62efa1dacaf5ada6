//! Identities and addresses: who a peer is, which cell it belongs to, where it listens.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

/// A peer's 128-bit identity (a UUID's bits). `PeerId(0)` means "nobody" on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u128);

impl PeerId {
    /// The "nobody / everybody" id used as destination of multicast datagrams.
    pub const NONE: PeerId = PeerId(0);
}

/// A cell's identity. Ordered: the older cell (smaller `created`) is the smaller id, so
/// "the smallest root wins" keeps the oldest tree when two trees meet.
///
/// Invariant: `created` is the creator's `now` when the cell was founded, `founder` the
/// low 64 bits of the founding super-peer's id; two founders never share both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellId {
    /// When the cell was founded (founder's clock, nanoseconds).
    pub created: u64,
    /// Low 64 bits of the founder's id (tie-break).
    pub founder: u64,
}

impl CellId {
    /// No cell.
    pub const NONE: CellId = CellId {
        created: 0,
        founder: 0,
    };
    /// A new cell founded by `founder` at `now_ns`.
    pub fn new(now_ns: u64, founder: PeerId) -> CellId {
        CellId {
            created: now_ns,
            founder: founder.0 as u64 ^ (founder.0 >> 64) as u64,
        }
    }
    /// The id as one 128-bit number (wire form).
    pub fn to_u128(self) -> u128 {
        ((self.created as u128) << 64) | self.founder as u128
    }
    /// From the wire form.
    pub fn from_u128(v: u128) -> CellId {
        CellId {
            created: (v >> 64) as u64,
            founder: v as u64,
        }
    }
    /// Whether this is [`CellId::NONE`].
    pub fn is_none(self) -> bool {
        self == CellId::NONE
    }
}

/// Where a peer listens: a plain socket address value (the protocol never opens it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub SocketAddr);

impl Default for Addr {
    fn default() -> Self {
        Addr::from_wire([0; 16], 0)
    }
}

impl Addr {
    /// Wire length: 16 address bytes (IPv4 as v4-mapped IPv6) and a 2-byte port.
    pub const WIRE_LEN: usize = 18;

    /// The IPv6 (or v4-mapped) octets and the port.
    pub fn to_wire(self) -> ([u8; 16], u16) {
        match self.0 {
            SocketAddr::V4(a) => (a.ip().to_ipv6_mapped().octets(), a.port()),
            SocketAddr::V6(a) => (a.ip().octets(), a.port()),
        }
    }
    /// From octets and port; v4-mapped octets give an IPv4 address.
    pub fn from_wire(octets: [u8; 16], port: u16) -> Addr {
        let ip = Ipv6Addr::from(octets);
        match ip.to_ipv4_mapped() {
            Some(v4) => Addr(SocketAddr::new(v4.into(), port)),
            None => Addr(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))),
        }
    }
}

/// A peer as others know it: identity and address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// The peer's id.
    pub id: PeerId,
    /// Where it listens.
    pub addr: Addr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_round_trips_v4_and_v6() {
        for s in ["10.1.2.3:7000", "[fe80::1]:9", "0.0.0.0:0", "[::1]:65535"] {
            let a = Addr(s.parse().unwrap());
            let (o, p) = a.to_wire();
            assert_eq!(Addr::from_wire(o, p), a, "{s}");
        }
    }

    #[test]
    fn older_cell_orders_first() {
        let a = CellId::new(5, PeerId(9));
        let b = CellId::new(6, PeerId(1));
        assert!(a < b);
        assert_eq!(CellId::from_u128(a.to_u128()), a);
    }
}
