//! A topic's shared state: its subscribers' queues and its publishers' liveliness, read
//! without a lock by publishers and by the monitor task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use rtpm_rt::exec::WakeWord;
use rtpm_rt::time::{Instant, Nanos};

use super::notice::{Notice, NoticeKind, PublisherId};
use super::remote::{RemotePub, RemoteSub};
use crate::id::{NodeId, ServiceId};
use crate::qos::QosClass;

/// A topic's QoS, fixed by whoever creates it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicQos {
    /// The class samples travel on across the network.
    pub class: QosClass,
    /// Samples each subscriber can hold; a full subscriber drops the newest, counted.
    pub depth: usize,
}

impl Default for TopicQos {
    /// Best effort, 64 samples per subscriber.
    fn default() -> TopicQos {
        TopicQos {
            class: QosClass::BEST_EFFORT,
            depth: 64,
        }
    }
}

/// What a publisher promises (DDS-style).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherQos {
    /// DEADLINE: the longest gap between two samples. Subscribers get a
    /// [`NoticeKind::DeadlineMissed`] for every such period without a sample.
    pub deadline: Option<Nanos>,
    /// Liveliness lease: subscribers get [`NoticeKind::LivelinessLost`] when the publisher
    /// has neither published nor asserted liveliness for this long, and
    /// [`NoticeKind::LivelinessRegained`] when it does again.
    pub lease: Option<Nanos>,
}

/// One sample in a subscriber's queue.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) publisher: PublisherId,
    pub(crate) seq: u64,
    pub(crate) at: Instant,
    pub(crate) bytes: Vec<u8>,
}

/// A subscriber's queues (preallocated at subscription).
#[derive(Debug)]
pub(crate) struct SubscriberSlot {
    pub(crate) samples: ArrayQueue<Sample>,
    pub(crate) free: ArrayQueue<Vec<u8>>,
    pub(crate) notices: ArrayQueue<Notice>,
    pub(crate) wake: WakeWord,
    pub(crate) dropped: AtomicU64,
}

impl SubscriberSlot {
    pub(crate) fn new(depth: usize, sample_size: usize) -> SubscriberSlot {
        let depth = depth.max(1);
        let free = ArrayQueue::new(depth);
        for _ in 0..depth {
            let _ = free.push(Vec::with_capacity(sample_size));
        }
        SubscriberSlot {
            samples: ArrayQueue::new(depth),
            free,
            notices: ArrayQueue::new(64),
            wake: WakeWord::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Copies a sample in; counted as dropped when the subscriber is full.
    #[inline]
    fn offer(&self, publisher: PublisherId, seq: u64, at: Instant, bytes: &[u8]) -> bool {
        let Some(mut buf) = self.free.pop() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        buf.clear();
        buf.extend_from_slice(bytes);
        let s = Sample {
            publisher,
            seq,
            at,
            bytes: buf,
        };
        // `free` and `samples` together hold `depth` buffers: there is room.
        if let Err(s) = self.samples.push(s) {
            let _ = self.free.push(s.bytes);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.wake.wake();
        true
    }

    /// Queues a notice (the oldest is evicted when 64 wait) and wakes the subscriber.
    #[inline]
    pub(crate) fn notify(&self, n: Notice) {
        let _ = self.notices.force_push(n);
        self.wake.wake();
    }
}

/// A publisher's liveliness, shared with the monitor.
#[derive(Debug)]
pub(crate) struct PublisherState {
    pub(crate) id: PublisherId,
    pub(crate) qos: PublisherQos,
    /// The last sample or liveliness assertion (clock ns).
    pub(crate) last: AtomicU64,
    /// When the next DEADLINE check falls due (clock ns).
    pub(crate) next_due: AtomicU64,
    pub(crate) alive: AtomicBool,
    pub(crate) seq: AtomicU64,
    /// It publishes from another node (its samples come over a network).
    pub(crate) remote: bool,
}

impl PublisherState {
    pub(crate) fn new(id: PublisherId, qos: PublisherQos, now: Instant) -> PublisherState {
        PublisherState {
            id,
            qos,
            last: AtomicU64::new(now.as_nanos()),
            next_due: AtomicU64::new(now.add(qos.deadline.unwrap_or(Nanos::MAX)).as_nanos()),
            alive: AtomicBool::new(true),
            seq: AtomicU64::new(0),
            remote: false,
        }
    }

    /// The state of a publisher of another node.
    pub(crate) fn remote(id: PublisherId, qos: PublisherQos, now: Instant) -> PublisherState {
        PublisherState {
            remote: true,
            ..PublisherState::new(id, qos, now)
        }
    }
}

/// A topic.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) id: ServiceId,
    pub(crate) name: String,
    pub(crate) qos: TopicQos,
    subscribers: ArcSwap<Vec<Arc<SubscriberSlot>>>,
    publishers: ArcSwap<Vec<Arc<PublisherState>>>,
    /// Nodes subscribed to this node's publishers, with their lease.
    pub(crate) remote_subs: ArcSwap<Vec<Arc<RemoteSub>>>,
    /// Other nodes publishing this topic that announced themselves to this node (the
    /// discovery owner), with their lease: subscriptions are forwarded to them.
    pub(crate) copublishers: ArcSwap<Vec<Arc<RemoteSub>>>,
    /// Publishers of other nodes whose samples arrive here.
    pub(crate) remote_pubs: ArcSwap<Vec<Arc<RemotePub>>>,
    /// Publishers in this runtime.
    pub(crate) local_publishers: AtomicU64,
    edit: Mutex<()>,
}

impl Topic {
    pub(crate) fn new(name: &str, qos: TopicQos) -> Topic {
        Topic {
            id: ServiceId::topic(name),
            name: name.to_string(),
            qos,
            subscribers: ArcSwap::from_pointee(Vec::new()),
            publishers: ArcSwap::from_pointee(Vec::new()),
            remote_subs: ArcSwap::from_pointee(Vec::new()),
            copublishers: ArcSwap::from_pointee(Vec::new()),
            remote_pubs: ArcSwap::from_pointee(Vec::new()),
            local_publishers: AtomicU64::new(0),
            edit: Mutex::new(()),
        }
    }

    fn edit(&self) -> MutexGuard<'_, ()> {
        self.edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn add_subscriber(&self, s: Arc<SubscriberSlot>) {
        let _g = self.edit();
        let mut v = Vec::clone(&self.subscribers.load());
        v.push(s);
        self.subscribers.store(Arc::new(v));
    }

    pub(crate) fn remove_subscriber(&self, s: &Arc<SubscriberSlot>) {
        let _g = self.edit();
        let mut v = Vec::clone(&self.subscribers.load());
        v.retain(|x| !Arc::ptr_eq(x, s));
        self.subscribers.store(Arc::new(v));
    }

    pub(crate) fn add_publisher(&self, p: Arc<PublisherState>) {
        let _g = self.edit();
        let mut v = Vec::clone(&self.publishers.load());
        v.push(p);
        self.publishers.store(Arc::new(v));
    }

    /// Node `node`'s subscription (through `net`) renewed until `until` (clock ns);
    /// added when new.
    pub(crate) fn subscribed(
        &self,
        net: &std::sync::Weak<dyn crate::network::Network>,
        node: NodeId,
        until: u64,
    ) {
        self.lease(&self.remote_subs, net, node, until);
    }

    /// Node `node` (through `net`) publishes this topic too, until `until` (clock ns).
    pub(crate) fn copublisher(
        &self,
        net: &std::sync::Weak<dyn crate::network::Network>,
        node: NodeId,
        until: u64,
    ) {
        self.lease(&self.copublishers, net, node, until);
    }

    /// Renews `node`'s lease in `list` until `until`, adding it when new.
    fn lease(
        &self,
        list: &ArcSwap<Vec<Arc<RemoteSub>>>,
        net: &std::sync::Weak<dyn crate::network::Network>,
        node: NodeId,
        until: u64,
    ) {
        if let Some(s) = list.load().iter().find(|s| s.node == node) {
            s.expires.store(until, Ordering::Release);
            return;
        }
        let _g = self.edit();
        let mut v = Vec::clone(&list.load());
        if let Some(s) = v.iter().find(|s| s.node == node) {
            s.expires.store(until, Ordering::Release);
            return;
        }
        v.push(Arc::new(RemoteSub {
            net: net.clone(),
            node,
            expires: AtomicU64::new(until),
        }));
        list.store(Arc::new(v));
    }

    /// Drops the remote subscriptions that expired by `now` (clock ns).
    pub(crate) fn expire_subscriptions(&self, now: u64) {
        for list in [&self.remote_subs, &self.copublishers] {
            if list
                .load()
                .iter()
                .all(|s| s.expires.load(Ordering::Acquire) > now)
            {
                continue;
            }
            let _g = self.edit();
            let mut v = Vec::clone(&list.load());
            v.retain(|s| s.expires.load(Ordering::Acquire) > now);
            list.store(Arc::new(v));
        }
    }

    /// The publisher `id` of node `node`, made known here (with `qos`, and a local id
    /// from `ids`) when it is new.
    pub(crate) fn remote_pub(
        &self,
        node: NodeId,
        id: u64,
        qos: PublisherQos,
        ids: &AtomicU64,
        now: Instant,
    ) -> Arc<RemotePub> {
        if let Some(p) = self
            .remote_pubs
            .load()
            .iter()
            .find(|p| p.node == node && p.id == id)
        {
            return Arc::clone(p);
        }
        let state = Arc::new(PublisherState::remote(
            PublisherId(ids.fetch_add(1, Ordering::Relaxed)),
            qos,
            now,
        ));
        let p = Arc::new(RemotePub {
            node,
            id,
            state: Arc::clone(&state),
        });
        {
            let _g = self.edit();
            let mut v = Vec::clone(&self.remote_pubs.load());
            v.push(Arc::clone(&p));
            self.remote_pubs.store(Arc::new(v));
        }
        self.add_publisher(state);
        p
    }

    /// Publisher `id` of node `node` is gone (closed there): forgotten, subscribers told.
    pub(crate) fn remote_gone(&self, node: NodeId, id: u64, now: Instant) {
        let gone = {
            let _g = self.edit();
            let mut v = Vec::clone(&self.remote_pubs.load());
            let Some(i) = v.iter().position(|p| p.node == node && p.id == id) else {
                return;
            };
            let p = v.remove(i);
            self.remote_pubs.store(Arc::new(v));
            p
        };
        self.remove_publisher(&gone.state, now);
    }

    /// A sample (or, with `sample == false`, a liveliness assertion) of `p` at `now`:
    /// renews its lease, moves its next DEADLINE on, and tells the subscribers when its
    /// liveliness was lost and is back.
    #[inline]
    pub(crate) fn renew(&self, p: &PublisherState, now: Instant, sample: bool) {
        p.last.store(now.as_nanos(), Ordering::Release);
        if sample && let Some(d) = p.qos.deadline {
            p.next_due.store(now.add(d).as_nanos(), Ordering::Release);
        }
        if p.alive
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify(NoticeKind::LivelinessRegained, p.id, now);
        }
    }

    /// The local publishers' states.
    pub(crate) fn local_publisher_states(&self) -> Vec<Arc<PublisherState>> {
        self.publishers
            .load()
            .iter()
            .filter(|p| !p.remote)
            .cloned()
            .collect()
    }

    /// Removes publisher `p` and tells every subscriber it is gone.
    pub(crate) fn remove_publisher(&self, p: &Arc<PublisherState>, now: Instant) {
        {
            let _g = self.edit();
            let mut v = Vec::clone(&self.publishers.load());
            v.retain(|x| !Arc::ptr_eq(x, p));
            self.publishers.store(Arc::new(v));
        }
        self.notify(NoticeKind::PublisherGone, p.id, now);
    }

    /// Delivers a sample to every subscriber; how many took it.
    #[inline]
    pub(crate) fn deliver(
        &self,
        publisher: PublisherId,
        seq: u64,
        at: Instant,
        bytes: &[u8],
    ) -> usize {
        self.subscribers
            .load()
            .iter()
            .filter(|s| s.offer(publisher, seq, at, bytes))
            .count()
    }

    /// Tells every subscriber.
    pub(crate) fn notify(&self, kind: NoticeKind, publisher: PublisherId, at: Instant) {
        let n = Notice {
            kind,
            topic: self.id,
            publisher,
            at,
        };
        for s in self.subscribers.load().iter() {
            s.notify(n);
        }
    }

    /// The monitor's check at `now`: a DEADLINE notice for each publisher period without
    /// a sample, a liveliness notice for each lease run out.
    pub(crate) fn check(&self, now: Instant) {
        for p in self.publishers.load().iter() {
            if let Some(d) = p.qos.deadline {
                let due = p.next_due.load(Ordering::Acquire);
                if now.as_nanos() >= due
                    && p.next_due
                        .compare_exchange(
                            due,
                            due.saturating_add(d.get()),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                {
                    self.notify(NoticeKind::DeadlineMissed, p.id, now);
                }
            }
            if let Some(lease) = p.qos.lease {
                let last = p.last.load(Ordering::Acquire);
                if now.as_nanos() > last.saturating_add(lease.get())
                    && p.alive
                        .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.notify(NoticeKind::LivelinessLost, p.id, now);
                }
            }
        }
    }

    /// Subscribers now.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.load().len()
    }

    /// Publishers now.
    pub(crate) fn publisher_count(&self) -> usize {
        self.publishers.load().len()
    }
}
