//! Topics across nodes: subscriptions found through discovery, samples and liveliness
//! over the overlay on the topic's QoS class.
//!
//! A topic's id is its port on every network of the runtime. A node with a publisher on
//! a topic publishes the topic's id in each network's discovery. A node with subscribers
//! looks the topic up (the event service's network thread, every
//! [`EventConfig::remote_period`](super::EventConfig::remote_period)) and sends a
//! `SUBSCRIBE` to the publishing node, renewing it each period; the publishing node keeps
//! the subscription for [`SUBSCRIPTION_LEASE`] after the last renewal. Each sample a
//! publisher publishes is then sent to every subscribed node as well as to the local
//! subscribers, and the subscribed node hands it to its own subscribers.
//!
//! **DEADLINE and liveliness across nodes.** A remote publisher is known to the
//! subscribing node by its promise (carried in every message) and checked by the same
//! monitor as local ones: a DEADLINE period without a sample is a
//! [`NoticeKind::DeadlineMissed`](super::NoticeKind::DeadlineMissed). A publisher that
//! declared a liveliness lease asserts it itself (samples, and
//! [`Publisher::assert_liveliness`](super::Publisher::assert_liveliness), which sends an
//! `ALIVE`); one that did not is kept alive by its node (an `ALIVE` each period, like
//! DDS's automatic liveliness) and gets the lease
//! [`EventConfig::remote_lease`](super::EventConfig::remote_lease). When the publishing
//! node crashes, leaves or loses its network, the `ALIVE`s stop and subscribers get
//! [`NoticeKind::LivelinessLost`](super::NoticeKind::LivelinessLost) when the lease runs
//! out; a publisher closed there is announced with `GONE`
//! ([`NoticeKind::PublisherGone`](super::NoticeKind::PublisherGone)).
//!
//! **Messages** (after the port): version, kind, then five little-endian u64 — the
//! publisher's id at its node, the sample's sequence number, its publication time (the
//! publisher's clock, ns), the DEADLINE and the lease it promised (0: none) — and the
//! encoded sample. The sender's node is the network's authenticated sender id.
//!
//! Discovery holds one owner per key: when several nodes publish one topic, a
//! subscribing node subscribes to the one its lookup answers with, and the others tell
//! that owner they publish too (`ANNOUNCE`, each period, leased like subscriptions); the
//! owner forwards every subscription it gets to them (`SUBSCRIBE-FOR`), so each
//! publishing node sends its samples to every subscribed node directly.
//!
//! **Hot path.** A publish sends to each subscribed node from the publisher's preallocated
//! buffer through the overlay's command queue; an arriving sample is copied into the
//! subscribers' preallocated buffers by the job holding the overlay's node. Neither
//! allocates nor locks, except the first message from a publisher not seen before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use rtpm_rt::time::{Clock, Instant, Nanos};

use super::service::Topics;
use super::topic::{PublisherQos, PublisherState, Topic};
use crate::id::NodeId;
use crate::network::{Inbox, Network, NetworkWatch};
use crate::qos::QosClass;
use crate::service::KernelHandle;

/// How long a publishing node keeps a subscription after its last renewal.
pub const SUBSCRIPTION_LEASE: Nanos = Nanos::secs(1);

const VERSION: u8 = 1;
/// Bytes before the sample.
pub(crate) const HEAD: usize = 42;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Subscribe = 1,
    Sample = 2,
    Alive = 3,
    Gone = 4,
    /// A publishing node tells the topic's discovery owner it publishes too.
    Announce = 5,
    /// The owner forwards a subscription to a co-publisher (subscriber in `seq`/`at`).
    SubscribeFor = 6,
}

/// A message's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) kind: Kind,
    pub(crate) publisher: u64,
    pub(crate) seq: u64,
    pub(crate) at: u64,
    pub(crate) deadline: u64,
    pub(crate) lease: u64,
}

impl Head {
    /// A header of `kind` about publisher `p`.
    pub(crate) fn of(kind: Kind, p: &PublisherState, seq: u64, at: Instant) -> Head {
        Head {
            kind,
            publisher: p.id.0,
            seq,
            at: at.as_nanos(),
            deadline: p.qos.deadline.map_or(0, Nanos::get),
            lease: p.qos.lease.map_or(0, Nanos::get),
        }
    }

    /// A header of `kind` about no publisher (subscriptions, announcements).
    fn bare(kind: Kind) -> Head {
        Head {
            kind,
            publisher: 0,
            seq: 0,
            at: 0,
            deadline: 0,
            lease: 0,
        }
    }

    pub(crate) fn encode(&self) -> [u8; HEAD] {
        let mut h = [0u8; HEAD];
        h[0] = VERSION;
        h[1] = self.kind as u8;
        for (i, w) in [self.publisher, self.seq, self.at, self.deadline, self.lease]
            .iter()
            .enumerate()
        {
            h[2 + 8 * i..10 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        h
    }

    fn decode(b: &[u8]) -> Option<(Head, &[u8])> {
        let (h, rest) = b.split_first_chunk::<HEAD>()?;
        if h[0] != VERSION {
            return None;
        }
        let kind = match h[1] {
            1 => Kind::Subscribe,
            2 => Kind::Sample,
            3 => Kind::Alive,
            4 => Kind::Gone,
            5 => Kind::Announce,
            6 => Kind::SubscribeFor,
            _ => return None,
        };
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&h[2 + 8 * i..10 + 8 * i]);
            u64::from_le_bytes(x)
        };
        Some((
            Head {
                kind,
                publisher: w(0),
                seq: w(1),
                at: w(2),
                deadline: w(3),
                lease: w(4),
            },
            rest,
        ))
    }
}

/// A node subscribed to this node's publishers of a topic.
pub(crate) struct RemoteSub {
    pub(crate) net: Weak<dyn Network>,
    pub(crate) node: NodeId,
    /// When the subscription lapses without renewal (clock ns).
    pub(crate) expires: AtomicU64,
}

impl std::fmt::Debug for RemoteSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSub")
            .field("node", &self.node)
            .finish()
    }
}

/// A publisher of another node, as this node knows it.
#[derive(Debug)]
pub(crate) struct RemotePub {
    pub(crate) node: NodeId,
    /// Its id at its node.
    pub(crate) id: u64,
    /// Its state here (local publisher id, promise, liveliness).
    pub(crate) state: Arc<PublisherState>,
}

impl Topic {
    /// Sends `head` and `bytes` to every node subscribed, unexpired at `now`.
    #[inline]
    pub(crate) fn send_remote(&self, head: &Head, bytes: &[u8], now: Instant) {
        let subs = self.remote_subs.load();
        if subs.is_empty() {
            return;
        }
        let h = head.encode();
        for s in subs.iter() {
            if s.expires.load(Ordering::Acquire) <= now.as_nanos() {
                continue;
            }
            if let Some(net) = s.net.upgrade() {
                let _ = net
                    .messaging()
                    .send_parts(s.node, self.qos.class, self.id, &[&h, bytes]);
            }
        }
    }
}

/// A topic's port on one network.
pub(crate) struct TopicPort {
    pub(crate) topic: Arc<Topic>,
    pub(crate) net: Weak<dyn Network>,
    pub(crate) ids: Arc<AtomicU64>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The lease given to remote publishers that declared none.
    pub(crate) default_lease: Nanos,
}

impl Inbox for TopicPort {
    fn deliver(&self, from: NodeId, _class: QosClass, bytes: &[u8]) {
        let Some((head, sample)) = Head::decode(bytes) else {
            return;
        };
        let now = self.clock.now();
        let t = &self.topic;
        let promise = |h: &Head| PublisherQos {
            deadline: (h.deadline > 0).then_some(Nanos(h.deadline)),
            lease: Some(if h.lease > 0 {
                Nanos(h.lease)
            } else {
                self.default_lease
            }),
        };
        let until = now.add(SUBSCRIPTION_LEASE).as_nanos();
        match head.kind {
            Kind::Subscribe => {
                t.subscribed(&self.net, from, until);
                // the other publishing nodes of the topic get the subscription too
                let peers = t.copublishers.load();
                if !peers.is_empty() {
                    let s = from.as_u128();
                    let fwd = Head {
                        kind: Kind::SubscribeFor,
                        publisher: 0,
                        seq: (s >> 64) as u64,
                        at: s as u64,
                        deadline: 0,
                        lease: 0,
                    }
                    .encode();
                    for p in peers.iter() {
                        if p.expires.load(Ordering::Acquire) > now.as_nanos()
                            && let Some(net) = p.net.upgrade()
                        {
                            let _ = net
                                .messaging()
                                .send_parts(p.node, t.qos.class, t.id, &[&fwd]);
                        }
                    }
                }
            }
            Kind::SubscribeFor => {
                let node = NodeId(uuid::Uuid::from_u128(
                    (u128::from(head.seq) << 64) | u128::from(head.at),
                ));
                t.subscribed(&self.net, node, until);
            }
            Kind::Announce => t.copublisher(&self.net, from, until),
            Kind::Sample => {
                if t.subscriber_count() == 0 {
                    return;
                }
                let p = t.remote_pub(from, head.publisher, promise(&head), &self.ids, now);
                t.deliver(p.state.id, head.seq, Instant(head.at), sample);
                t.renew(&p.state, now, true);
            }
            Kind::Alive => {
                if t.subscriber_count() == 0 {
                    return;
                }
                let p = t.remote_pub(from, head.publisher, promise(&head), &self.ids, now);
                t.renew(&p.state, now, false);
            }
            Kind::Gone => t.remote_gone(from, head.publisher, now),
        }
    }
}

/// The event service's side of the networks: ports, discovery, subscriptions and the
/// automatic liveliness of its publishers. See the [module documentation](self).
pub(crate) struct RemoteEvents {
    pub(crate) topics: Arc<ArcSwap<Topics>>,
    pub(crate) ids: Arc<AtomicU64>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) kernel: KernelHandle,
    pub(crate) default_lease: Nanos,
    pub(crate) running: AtomicBool,
}

impl std::fmt::Debug for RemoteEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEvents").finish()
    }
}

impl RemoteEvents {
    fn networks(&self) -> Vec<Arc<dyn Network>> {
        self.kernel
            .get()
            .map(|k| k.networks.networks().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Attaches topic `t`'s port on `net`.
    pub(crate) fn attach(&self, net: &Arc<dyn Network>, t: &Arc<Topic>) {
        let port = Arc::new(TopicPort {
            topic: Arc::clone(t),
            net: Arc::downgrade(net),
            ids: Arc::clone(&self.ids),
            clock: Arc::clone(&self.clock),
            default_lease: self.default_lease,
        });
        if let Err(e) = net.messaging().attach(t.id, port) {
            tracing::warn!(network = net.name(), topic = %t.name, error = %e, "topic port not attached");
        }
    }

    /// Advertises that this node publishes `t` on `net`.
    fn advertise(net: &Arc<dyn Network>, t: &Topic) {
        let d = net.discovery();
        if d.publish(t.id, t.qos.class).is_err()
            && let Err(e) = d.publish(t.id, QosClass::BEST_EFFORT)
        {
            tracing::warn!(network = net.name(), topic = %t.name, error = %e, "topic not advertised");
        }
    }

    /// A new topic: its port on every network.
    pub(crate) fn topic_created(&self, t: &Arc<Topic>) {
        for net in self.networks() {
            self.attach(&net, t);
        }
    }

    /// This node publishes `t` now: advertised on every network.
    pub(crate) fn publishing(&self, t: &Topic) {
        for net in self.networks() {
            Self::advertise(&net, t);
        }
    }

    /// One round of the network thread at `now`: subscriptions sent or renewed,
    /// automatic liveliness asserted, lapsed subscriptions dropped.
    pub(crate) fn round(&self, lookup: Nanos) {
        let nets = self.networks();
        let topics = self.topics.load_full();
        for t in topics.values() {
            if t.subscriber_count() > 0 {
                for net in &nets {
                    let me = net.membership().me();
                    let owner = match net.discovery().cached(t.id) {
                        Some(n) if n != me => Some(n),
                        _ => net.discovery().lookup(t.id, lookup).ok().flatten(),
                    };
                    if let Some(node) = owner.filter(|n| *n != me) {
                        let _ = net.messaging().send_parts(
                            node,
                            t.qos.class,
                            t.id,
                            &[&Head::bare(Kind::Subscribe).encode()],
                        );
                    }
                }
            }
            if t.local_publishers.load(Ordering::Acquire) > 0 {
                // discovery holds one owner per key: the other publishing nodes tell it
                // they publish too, and it forwards the subscriptions it gets to them
                for net in &nets {
                    let me = net.membership().me();
                    if let Ok(Some(owner)) = net.discovery().lookup(t.id, lookup)
                        && owner != me
                    {
                        let _ = net.messaging().send_parts(
                            owner,
                            t.qos.class,
                            t.id,
                            &[&Head::bare(Kind::Announce).encode()],
                        );
                    }
                }
            }
            let now = self.clock.now();
            if t.local_publishers.load(Ordering::Acquire) > 0 {
                for p in t.local_publisher_states() {
                    if p.qos.lease.is_none() {
                        t.send_remote(&Head::of(Kind::Alive, &p, 0, now), &[], now);
                    }
                }
            }
            t.expire_subscriptions(now.as_nanos());
        }
    }
}

impl NetworkWatch for RemoteEvents {
    fn inserted(&self, net: &Arc<dyn Network>) {
        if !self.running.load(Ordering::Acquire) {
            return;
        }
        for t in self.topics.load().values() {
            self.attach(net, t);
            if t.local_publishers.load(Ordering::Acquire) > 0 {
                Self::advertise(net, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_reads_back_and_junk_is_refused() {
        let h = Head {
            kind: Kind::Sample,
            publisher: 3,
            seq: 4,
            at: 5,
            deadline: 6,
            lease: 0,
        };
        let mut m = h.encode().to_vec();
        m.extend_from_slice(b"abc");
        let (back, rest) = Head::decode(&m).unwrap();
        assert_eq!((back, rest), (h, &b"abc"[..]));
        assert!(Head::decode(&m[..HEAD - 1]).is_none());
        m[1] = 9;
        assert!(Head::decode(&m).is_none());
    }
}
