//! QoS classes: what a request or a topic asks of the path it travels.
//!
//! A class is a small number that every overlay maps to one of its SAPs (socket, reactor
//! and policy: reliability, priority, queue depth); classes are never multiplexed on one
//! reactor. Locally, the class travels with the request so that the server and the
//! statistics see it. The overlay's defaults are class 0 best-effort and class 1 reliable.

use std::fmt;

/// The QoS class of a request or topic.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct QosClass(pub u8);

impl QosClass {
    /// Best effort: no acknowledgement, no retransmission.
    pub const BEST_EFFORT: QosClass = QosClass(0);
    /// Reliable: sequence numbers, acknowledgements, retransmission, order per class.
    pub const RELIABLE: QosClass = QosClass(1);
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QosClass::BEST_EFFORT => f.write_str("best-effort (0)"),
            QosClass::RELIABLE => f.write_str("reliable (1)"),
            QosClass(n) => write!(f, "class {n}"),
        }
    }
}
