//! Identities: every service, topic, network and node is a UUID, v5 from its name.
//!
//! Name-based UUIDs (RFC 9562, SHA-1) make the id of `"example.ping"` the same on every
//! node without coordination, which is what discovery needs: a client looks a service up
//! by the id it computes from the name it knows. Topics live in the service namespace as
//! `"topic:NAME"`, so one permission table covers both.

use std::fmt;

use uuid::Uuid;

/// The namespace of service and topic ids: `uuid5(NAMESPACE_URL, "urn:rtpm:service")`.
pub const SERVICE_NAMESPACE: Uuid = Uuid::from_u128(0x785aa0cc_9853_5a6c_a21d_7ec7dc35cea0);
/// The namespace of network ids: `uuid5(NAMESPACE_URL, "urn:rtpm:network")`.
pub const NETWORK_NAMESPACE: Uuid = Uuid::from_u128(0xf497714f_7e0a_5487_86ee_18b082914b9e);
/// The namespace of node ids: `uuid5(NAMESPACE_URL, "urn:rtpm:node")`.
pub const NODE_NAMESPACE: Uuid = Uuid::from_u128(0xa12de8e5_6ff1_5d18_808f_76fb120fec03);

/// A service's (or topic's) id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ServiceId(pub Uuid);

impl ServiceId {
    /// The kernel itself: `admin` on it is administration of the runtime (kernel
    /// services, networks, users).
    pub fn kernel() -> ServiceId {
        ServiceId::from_name("rtpm.kernel")
    }

    /// The id of the service named `name` (UUID v5 in [`SERVICE_NAMESPACE`]).
    pub fn from_name(name: &str) -> ServiceId {
        ServiceId(Uuid::new_v5(&SERVICE_NAMESPACE, name.as_bytes()))
    }

    /// The id of topic `name`: the service id of `"topic:NAME"`.
    pub fn topic(name: &str) -> ServiceId {
        ServiceId::from_name(&format!("topic:{name}"))
    }

    /// The UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }

    /// The 128 bits (the overlay's discovery key).
    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A network's (overlay's) id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NetworkId(pub Uuid);

impl NetworkId {
    /// The id of the network named `name` (UUID v5 in [`NETWORK_NAMESPACE`]).
    pub fn from_name(name: &str) -> NetworkId {
        NetworkId(Uuid::new_v5(&NETWORK_NAMESPACE, name.as_bytes()))
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A node's id; on an overlay it is the peer id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub Uuid);

impl NodeId {
    /// The id of the node named `name` (UUID v5 in [`NODE_NAMESPACE`]), the default when
    /// `node.toml` gives none.
    pub fn from_name(name: &str) -> NodeId {
        NodeId(Uuid::new_v5(&NODE_NAMESPACE, name.as_bytes()))
    }

    /// The 128 bits (the overlay's peer id).
    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_the_documented_v5_ids() {
        let url = Uuid::NAMESPACE_URL;
        assert_eq!(SERVICE_NAMESPACE, Uuid::new_v5(&url, b"urn:rtpm:service"));
        assert_eq!(NETWORK_NAMESPACE, Uuid::new_v5(&url, b"urn:rtpm:network"));
        assert_eq!(NODE_NAMESPACE, Uuid::new_v5(&url, b"urn:rtpm:node"));
    }

    #[test]
    fn ids_are_v5_and_depend_only_on_the_name() {
        let a = ServiceId::from_name("example.ping");
        assert_eq!(a.uuid().get_version_num(), 5);
        assert_eq!(a, ServiceId::from_name("example.ping"));
        assert_ne!(a, ServiceId::from_name("example.pong"));
        assert_eq!(ServiceId::topic("pos"), ServiceId::from_name("topic:pos"));
        assert_ne!(NetworkId::from_name("x").0, ServiceId::from_name("x").0);
    }
}
