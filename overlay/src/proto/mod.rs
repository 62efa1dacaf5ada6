//! The protocol: pure, sans-IO state machines (no sockets, no clock, no threads, no
//! global randomness). Everything it needs arrives as an argument; everything it wants
//! done leaves through `poll_*`.

pub mod frame;
pub mod id;
pub mod messaging;
pub mod security;
pub mod time;
pub mod wire;
