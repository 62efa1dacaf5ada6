//! Remote requests: what travels on a network, and the inboxes that take it.
//!
//! A server is served on every network of the runtime: its id is its port, and it is
//! published in the network's discovery (so that [`NetworkMgr::find_uuid`] finds it).
//! A request goes to the server's port on the request's QoS class; the server's
//! [`RequestInbox`] (called by the job holding the overlay's node) checks the caller's
//! `execute` permission on this node, copies the request into a pooled buffer and queues
//! it for the server's request task, whose job runs it like a local one — admitted,
//! budgeted, measured — and sends the reply to the caller's node, on the same class, at
//! port `rtpm.rpc`, where its [`ReplyInbox`] hands it to the waiting caller's reply cell.
//!
//! **Request** (after the port): version, flags (bit 0: one-way), QoS class, user name
//! length, operation (u32), reply cell index (u32) and generation (u64), the deadline
//! left when it was sent (ns, u64), then the user name and the payload. Integers are
//! little-endian. The caller's node is the network's authenticated sender id, not a field.
//!
//! **Reply**: version, status, reply cell index (u32) and generation (u64), then the
//! payload (the message for a failed operation).
//!
//! The deadline travels relative (what was left at sending), so nodes need not share a
//! clock: the server's absolute deadline is its arrival time plus that.
//!
//! **Hot path.** Nothing here allocates or locks per request: buffers come from the RPC
//! service's pool, the caller's user is matched against a cache of permission decisions
//! (rebuilt, allocating, only for a user not seen since users or grants last changed),
//! and messages are gathered from their parts by the network.
//!
//! [`NetworkMgr::find_uuid`]: crate::network::NetworkMgr::find_uuid

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

use super::core::RpcCore;
use super::request::{Caller, Header, Status};
use super::server::{Endpoint, Envelope};
use crate::id::{NodeId, ServiceId};
use crate::network::{Inbox, Network, NetworkWatch};
use crate::qos::QosClass;
use crate::security::{KernelSecurity, Permission};
use crate::service::KernelHandle;

/// The wire format's version.
const VERSION: u8 = 1;
/// Bytes of a request before the user name.
pub(crate) const REQUEST_FIXED: usize = 28;
/// Bytes of a reply before the payload.
pub(crate) const REPLY_FIXED: usize = 14;

/// The port replies come back to.
pub(crate) fn reply_port() -> ServiceId {
    ServiceId::from_name(super::RpcService::NAME)
}

/// A request's fixed header, as the client writes it.
pub(crate) struct RequestHead {
    pub(crate) one_way: bool,
    pub(crate) qos: QosClass,
    pub(crate) user_len: u8,
    pub(crate) operation: u32,
    pub(crate) index: u32,
    pub(crate) generation: u64,
    pub(crate) budget: Nanos,
}

impl RequestHead {
    pub(crate) fn encode(&self) -> [u8; REQUEST_FIXED] {
        let mut h = [0u8; REQUEST_FIXED];
        h[0] = VERSION;
        h[1] = u8::from(self.one_way);
        h[2] = self.qos.0;
        h[3] = self.user_len;
        h[4..8].copy_from_slice(&self.operation.to_le_bytes());
        h[8..12].copy_from_slice(&self.index.to_le_bytes());
        h[12..20].copy_from_slice(&self.generation.to_le_bytes());
        h[20..28].copy_from_slice(&self.budget.get().to_le_bytes());
        h
    }

    fn decode(b: &[u8]) -> Option<(RequestHead, &[u8], &[u8])> {
        let (h, rest) = b.split_first_chunk::<REQUEST_FIXED>()?;
        if h[0] != VERSION {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let head = RequestHead {
            one_way: h[1] & 1 == 1,
            qos: QosClass(h[2]),
            user_len: h[3],
            operation: u32_at(4),
            index: u32_at(8),
            generation: u64_at(12),
            budget: Nanos(u64_at(20)),
        };
        let (user, payload) = rest.split_at_checked(usize::from(head.user_len))?;
        Some((head, user, payload))
    }
}

fn reply_head(status: Status, index: u32, generation: u64) -> [u8; REPLY_FIXED] {
    let mut h = [0u8; REPLY_FIXED];
    h[0] = VERSION;
    h[1] = status.to_byte();
    h[2..6].copy_from_slice(&index.to_le_bytes());
    h[6..14].copy_from_slice(&generation.to_le_bytes());
    h
}

/// Where the reply of a remote two-way request goes.
pub(crate) struct RemoteReply {
    net: Arc<dyn Network>,
    to: NodeId,
    class: QosClass,
    index: u32,
    generation: u64,
}

impl std::fmt::Debug for RemoteReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReply")
            .field("network", &self.net.name())
            .field("to", &self.to)
            .field("class", &self.class)
            .finish()
    }
}

impl RemoteReply {
    /// Sends the reply; whether the network took it (if not, the caller times out).
    #[inline]
    pub(crate) fn send(&self, status: Status, payload: &[u8]) -> bool {
        let head = reply_head(status, self.index, self.generation);
        self.net
            .messaging()
            .send_parts(self.to, self.class, reply_port(), &[&head, payload])
            .is_ok()
    }
}

/// Cached `execute` decisions of remote callers on one server, valid for one generation
/// of the security module.
#[derive(Debug)]
pub(crate) struct RemoteGrants {
    cache: ArcSwap<Grants>,
}

#[derive(Debug, Default)]
struct Grants {
    generation: u64,
    users: Vec<(Arc<str>, bool)>,
}

impl Default for RemoteGrants {
    fn default() -> RemoteGrants {
        RemoteGrants {
            cache: ArcSwap::from_pointee(Grants {
                generation: u64::MAX,
                users: Vec::new(),
            }),
        }
    }
}

impl RemoteGrants {
    /// The caller's user name (shared) when `user` may execute `service` here, `None`
    /// when it may not.
    #[inline]
    pub(crate) fn allowed(
        &self,
        security: &KernelSecurity,
        service: ServiceId,
        user: &str,
    ) -> Option<Arc<str>> {
        let generation = security.generation();
        {
            let g = self.cache.load();
            if g.generation == generation
                && let Some((name, ok)) = g.users.iter().find(|(n, _)| &**n == user)
            {
                return ok.then(|| Arc::clone(name));
            }
        }
        // Not seen since users or grants last changed: decide, and remember.
        let ok = security
            .permissions(user, service)
            .contains(Permission::Execute);
        let name: Arc<str> = Arc::from(user);
        let old = self.cache.load();
        let mut users = if old.generation == generation {
            old.users.clone()
        } else {
            Vec::new()
        };
        users.push((Arc::clone(&name), ok));
        self.cache.store(Arc::new(Grants { generation, users }));
        ok.then_some(name)
    }
}

/// A server's port on one network: takes requests from other nodes.
pub(crate) struct RequestInbox {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) net: Weak<dyn Network>,
    pub(crate) kernel: KernelHandle,
}

impl Inbox for RequestInbox {
    fn deliver(&self, from: NodeId, class: QosClass, bytes: &[u8]) {
        let ep = &self.endpoint;
        let Some((head, user, args)) = RequestHead::decode(bytes) else {
            ep.count_malformed();
            return;
        };
        let Some(net) = self.net.upgrade() else {
            return;
        };
        let reply = (!head.one_way).then(|| RemoteReply {
            net,
            to: from,
            class,
            index: head.index,
            generation: head.generation,
        });
        let refuse = |status: Status| {
            if let Some(r) = &reply
                && !r.send(status, &[])
            {
                ep.count_unsent();
            }
        };
        let Ok(kernel) = self.kernel.get() else {
            return refuse(Status::Unavailable);
        };
        let Ok(user) = std::str::from_utf8(user) else {
            ep.count_malformed();
            return;
        };
        let Some(user) = ep.grants.allowed(&kernel.security, ep.id, user) else {
            ep.count_not_allowed();
            return refuse(Status::NotAllowed);
        };
        let Some(mut payload) = ep.buffers.take() else {
            return refuse(Status::Unavailable);
        };
        payload.extend_from_slice(args);
        let issued = MonotonicClock.now();
        let header = Header {
            service: ep.id,
            operation: head.operation,
            caller: Caller { user, node: from },
            issued,
            budget: head.budget,
            deadline: issued.add(head.budget),
            qos: head.qos,
            one_way: head.one_way,
        };
        let env = Envelope {
            header,
            payload,
            reply: None,
            remote: reply,
        };
        ep.count_remote();
        if let Err(env) = ep.submit(env) {
            ep.buffers.give(env.payload);
            if let Some(r) = &env.remote
                && !r.send(Status::Unavailable, &[])
            {
                ep.count_unsent();
            }
        }
    }
}

/// Port `rtpm.rpc` on one network: replies to this runtime's remote calls.
pub(crate) struct ReplyInbox {
    pub(crate) core: Arc<RpcCore>,
}

impl Inbox for ReplyInbox {
    fn deliver(&self, _from: NodeId, _class: QosClass, bytes: &[u8]) {
        let Some((h, payload)) = bytes.split_first_chunk::<REPLY_FIXED>() else {
            return;
        };
        let Some(status) = Status::from_byte(h[1]) else {
            return;
        };
        if h[0] != VERSION {
            return;
        }
        let index = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
        let mut g = [0u8; 8];
        g.copy_from_slice(&h[6..14]);
        let Some(to) = self.core.replies.address(index, u64::from_le_bytes(g)) else {
            return;
        };
        // a reply without a buffer is lost: its caller times out at its deadline
        let Some(mut buf) = self.core.buffers.take() else {
            return;
        };
        buf.extend_from_slice(payload);
        to.send(status, buf, &self.core.buffers);
    }
}

/// Serves `ep` on `net`: attaches its port and publishes it in discovery.
pub(crate) fn serve_on(net: &Arc<dyn Network>, ep: &Arc<Endpoint>, kernel: &KernelHandle) {
    let inbox = Arc::new(RequestInbox {
        endpoint: Arc::clone(ep),
        net: Arc::downgrade(net),
        kernel: kernel.clone(),
    });
    if let Err(e) = net.messaging().attach(ep.id, inbox) {
        tracing::warn!(network = net.name(), service = %ep.name, error = %e, "RPC server not attached");
        return;
    }
    let d = net.discovery();
    if d.publish(ep.id, QosClass::RELIABLE).is_err()
        && let Err(e) = d.publish(ep.id, QosClass::BEST_EFFORT)
    {
        tracing::warn!(network = net.name(), service = %ep.name, error = %e, "RPC server not published");
    }
}

/// Stops serving `id` on `net`.
pub(crate) fn withdraw_from(net: &Arc<dyn Network>, id: ServiceId) {
    net.messaging().detach(id);
    let _ = net.discovery().unpublish(id);
}

/// Follows the runtime's networks: on each, the reply port and every server's port.
#[derive(Debug)]
pub(crate) struct RemoteRpc {
    pub(crate) core: Arc<RpcCore>,
    pub(crate) kernel: KernelHandle,
}

impl NetworkWatch for RemoteRpc {
    fn inserted(&self, net: &Arc<dyn Network>) {
        if !self.core.open.load(Ordering::Acquire) {
            return;
        }
        let replies = Arc::new(ReplyInbox {
            core: Arc::clone(&self.core),
        });
        if let Err(e) = net.messaging().attach(reply_port(), replies) {
            tracing::warn!(network = net.name(), error = %e, "RPC reply port not attached");
        }
        for ep in self.core.endpoints().values() {
            serve_on(net, ep, &self.kernel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_reads_back_and_a_short_one_is_refused() {
        let h = RequestHead {
            one_way: false,
            qos: QosClass(3),
            user_len: 5,
            operation: 7,
            index: 9,
            generation: 11,
            budget: Nanos::ms(2),
        };
        let mut msg = h.encode().to_vec();
        msg.extend_from_slice(b"alice");
        msg.extend_from_slice(&[1, 2, 3]);
        let (back, user, payload) = RequestHead::decode(&msg).unwrap();
        assert_eq!(
            (back.one_way, back.qos, back.operation, back.index),
            (false, QosClass(3), 7, 9)
        );
        assert_eq!((back.generation, back.budget), (11, Nanos::ms(2)));
        assert_eq!((user, payload), (&b"alice"[..], &[1u8, 2, 3][..]));
        assert!(RequestHead::decode(&msg[..REQUEST_FIXED + 2]).is_none());
        msg[0] = 9;
        assert!(RequestHead::decode(&msg).is_none());
    }
}
