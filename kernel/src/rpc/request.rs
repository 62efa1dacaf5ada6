//! What travels in a request and its reply, and what a server sees of them.

use std::sync::Arc;

use rtpm_rt::time::{Instant, Nanos};
use serde::{Deserialize, Serialize};

use super::codec::{Codec, Postcard};
use crate::id::{NodeId, ServiceId};
use crate::qos::QosClass;

/// An operation number (listing 8's `PING_OP = 1`).
pub type OpId = u32;

/// Who issued a request: the user of the session and the node it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's name.
    pub user: Arc<str>,
    /// The node the request came from.
    pub node: NodeId,
}

/// A request's header: every request carries the caller's identity, its deadline and
/// its QoS class.
#[derive(Clone, Debug)]
pub struct Header {
    /// The service addressed.
    pub service: ServiceId,
    /// The operation.
    pub operation: OpId,
    /// Who asked.
    pub caller: Caller,
    /// When it was issued (`CLOCK_MONOTONIC`).
    pub issued: Instant,
    /// Its relative deadline.
    pub budget: Nanos,
    /// Its absolute deadline: `issued + budget`.
    pub deadline: Instant,
    /// Its QoS class.
    pub qos: QosClass,
    /// One-way: no reply is expected.
    pub one_way: bool,
}

/// A request as its server sees it.
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) header: &'a Header,
    pub(crate) payload: &'a [u8],
}

impl<'a> Request<'a> {
    /// The operation asked for.
    pub fn operation(&self) -> OpId {
        self.header.operation
    }
    /// Who asked.
    pub fn caller(&self) -> &Caller {
        &self.header.caller
    }
    /// The absolute deadline (`CLOCK_MONOTONIC`).
    pub fn deadline(&self) -> Instant {
        self.header.deadline
    }
    /// The QoS class it came on.
    pub fn qos(&self) -> QosClass {
        self.header.qos
    }
    /// Whether it is one-way.
    pub fn is_one_way(&self) -> bool {
        self.header.one_way
    }
    /// The encoded arguments.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// The arguments, decoded with postcard.
    pub fn decode<T: Deserialize<'a>>(&self) -> Result<T, OpError> {
        self.decode_with::<Postcard, T>()
    }
    /// The arguments, decoded with codec `C`.
    pub fn decode_with<C: Codec, T: Deserialize<'a>>(&self) -> Result<T, OpError> {
        C::decode(self.payload).map_err(|e| OpError::Failed(format!("bad arguments: {e}")))
    }
}

/// Where a server writes its reply.
#[derive(Debug)]
pub struct ReplyBuf<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
}

impl ReplyBuf<'_> {
    /// Encodes `value` as the reply, with postcard.
    pub fn encode<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), OpError> {
        self.encode_with::<Postcard, T>(value)
    }
    /// Encodes `value` as the reply, with codec `C`.
    pub fn encode_with<C: Codec, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), OpError> {
        self.buf.clear();
        C::encode(value, self.buf).map_err(|e| OpError::Failed(format!("reply not encodable: {e}")))
    }
    /// The raw reply bytes.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        self.buf
    }
}

/// What a server's operation can fail with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// The operation is not implemented (listing 8's `OPERATION_NOT_IMPLEMENTED`).
    NotImplemented,
    /// It ran and failed; the message goes back to the caller.
    Failed(String),
}

/// How a request ended, as carried by its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    NotImplemented,
    /// The payload holds the message (UTF-8).
    Failed,
    /// Its deadline had passed when the server took it; it did not run.
    Expired,
    /// The server went away before running it (or could not queue it).
    Unavailable,
    /// The serving node does not let the caller's user execute the service.
    NotAllowed,
}

impl Status {
    /// Its byte on the wire.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::NotImplemented => 1,
            Status::Failed => 2,
            Status::Expired => 3,
            Status::Unavailable => 4,
            Status::NotAllowed => 5,
        }
    }

    /// The status a wire byte stands for (`None`: not one).
    pub(crate) fn from_byte(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::NotImplemented,
            2 => Status::Failed,
            3 => Status::Expired,
            4 => Status::Unavailable,
            5 => Status::NotAllowed,
            _ => return None,
        })
    }
}
