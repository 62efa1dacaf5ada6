//! The protocol: pure, sans-IO state machines (no sockets, no clock, no threads, no
//! global randomness). Everything it needs arrives as an argument; everything it wants
//! done leaves through `poll_*`.

pub mod cell;
pub mod config;
pub mod detector;
pub mod discovery;
pub mod frame;
pub mod id;
pub mod membership;
pub mod messaging;
pub mod node;
pub mod routing;
pub mod security;
pub mod sync;
pub mod tasks;
pub mod time;
pub mod wire;

/// A hash map with a fixed hasher: iteration order depends only on the inserted keys,
/// never on a per-process random seed, so runs are reproducible bit for bit.
pub(crate) type DetMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;

pub use config::Config;
pub use id::{Addr, CellId, Member, PeerId};
pub use node::{Event, Node, Role, Transmit};
pub use time::Instant;
