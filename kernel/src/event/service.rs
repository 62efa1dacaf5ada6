//! The event service, its publishers and its subscribers.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use rtpm_rt::exec::{Job, TaskOptions, TaskSpec};
use rtpm_rt::time::{Clock, Instant, MonotonicClock, Nanos};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::notice::{Notice, PublisherId};
use super::remote::{Head, Kind, RemoteEvents};
use super::topic::{PublisherQos, PublisherState, SubscriberSlot, Topic, TopicQos};
use crate::error::{Error, Result};
use crate::id::{NodeId, ServiceId};
use crate::rpc::{Codec, Postcard};
use crate::security::Permission;
use crate::service::{Service, UserApi, UserContext, UserService};
use crate::session::Session;

/// How the event service is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventConfig {
    /// Period of the monitor task that checks DEADLINE and liveliness: the granularity
    /// of those notices.
    pub monitor_period: Nanos,
    /// The monitor's declared worst-case execution time (admission charges it).
    pub monitor_wcet: Nanos,
    /// The largest encoded sample; subscriber buffers are this big.
    pub max_sample: usize,
    /// Period of the network thread (topics across nodes): subscriptions are looked up
    /// and renewed, and this node's publishers assert their liveliness, this often.
    pub remote_period: Nanos,
    /// The liveliness lease given to a publisher of another node that declared none:
    /// subscribers are told it is lost when nothing (samples, its node's liveliness
    /// assertions) came from it for this long — how a crashed or departed node shows.
    pub remote_lease: Nanos,
}

impl Default for EventConfig {
    /// A 1 ms monitor budgeted at 50 µs; samples up to 1 KiB; the network thread every
    /// 50 ms; remote publishers' default lease 500 ms.
    fn default() -> EventConfig {
        EventConfig {
            monitor_period: Nanos::ms(1),
            monitor_wcet: Nanos::us(50),
            max_sample: 1024,
            remote_period: Nanos::ms(50),
            remote_lease: Nanos::ms(500),
        }
    }
}

/// What the service tells about a topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// Its id (`topic:NAME`).
    pub id: ServiceId,
    /// Its QoS.
    pub qos: TopicQos,
    /// Publishers now.
    pub publishers: usize,
    /// Subscribers now (in this runtime).
    pub subscribers: usize,
    /// Of the publishers, those of other nodes whose samples arrive here.
    pub remote_publishers: usize,
    /// Other nodes subscribed to this node's publishers.
    pub remote_subscribers: usize,
}

pub(crate) type Topics = HashMap<ServiceId, Arc<Topic>>;

/// The event service. See the [module documentation](super).
pub struct EventService {
    config: EventConfig,
    topics: Arc<ArcSwap<Topics>>,
    edit: Mutex<()>,
    api: OnceLock<UserApi>,
    next_publisher: Arc<AtomicU64>,
    remote: OnceLock<Arc<RemoteEvents>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EventService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventService")
            .field("config", &self.config)
            .field("topics", &self.topics.load().len())
            .finish()
    }
}

impl Default for EventService {
    fn default() -> EventService {
        EventService::new(EventConfig::default())
    }
}

impl EventService {
    /// Its service name.
    pub const NAME: &'static str = "rtpm.events";

    /// An event service set up by `config`.
    pub fn new(config: EventConfig) -> EventService {
        EventService {
            config,
            topics: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            edit: Mutex::new(()),
            api: OnceLock::new(),
            next_publisher: Arc::new(AtomicU64::new(1)),
            remote: OnceLock::new(),
            thread: Mutex::new(None),
        }
    }

    /// Its id.
    pub fn uuid() -> ServiceId {
        ServiceId::from_name(EventService::NAME)
    }

    fn api(&self) -> Result<&UserApi> {
        self.api
            .get()
            .ok_or_else(|| Error::Invalid("the event service is not inserted in a runtime".into()))
    }

    /// Topic `name`, created with `qos` if new; an error if it exists with another QoS.
    fn topic(&self, name: &str, qos: TopicQos) -> Result<Arc<Topic>> {
        if name.is_empty() {
            return Err(Error::Invalid("a topic needs a name".into()));
        }
        let id = ServiceId::topic(name);
        let _g = self
            .edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.topics.load();
        if let Some(t) = now.get(&id) {
            if t.qos != qos {
                return Err(Error::Invalid(format!(
                    "topic `{name}` exists with QoS {:?}; use the same QoS (asked for {qos:?})",
                    t.qos
                )));
            }
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(Topic::new(name, qos));
        let mut map = HashMap::clone(&now);
        map.insert(id, Arc::clone(&t));
        self.topics.store(Arc::new(map));
        if let Some(r) = self.remote.get() {
            r.topic_created(&t);
        }
        Ok(t)
    }

    /// A publisher of `T` on topic `name` for `session` (needs `publish` on
    /// `topic:NAME`), promising `promise` (DEADLINE, liveliness lease).
    pub fn publisher<T: Serialize>(
        &self,
        session: &Session,
        name: &str,
        qos: TopicQos,
        promise: PublisherQos,
    ) -> Result<Publisher<T>> {
        self.publisher_with::<T, Postcard>(session, name, qos, promise)
    }

    /// [`EventService::publisher`] encoding with `C`.
    pub fn publisher_with<T: Serialize, C: Codec>(
        &self,
        session: &Session,
        name: &str,
        qos: TopicQos,
        promise: PublisherQos,
    ) -> Result<Publisher<T, C>> {
        let api = self.api()?.clone();
        let id = ServiceId::topic(name);
        let allowed_at = api.security_generation();
        api.check(session, id, Permission::Publish, &format!("topic:{name}"))?;
        let topic = self.topic(name, qos)?;
        let clock = api.clock();
        let state = Arc::new(PublisherState::new(
            PublisherId(self.next_publisher.fetch_add(1, Ordering::Relaxed)),
            promise,
            clock.now(),
        ));
        topic.add_publisher(Arc::clone(&state));
        if topic.local_publishers.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(r) = self.remote.get()
        {
            r.publishing(&topic);
        }
        Ok(Publisher {
            topic,
            state,
            api,
            clock,
            session: session.clone(),
            allowed_at,
            scratch: Vec::with_capacity(self.config.max_sample),
            max: self.config.max_sample,
            kind: PhantomData,
        })
    }

    /// A subscriber of `T` on topic `name` for `session` (needs `subscribe` on
    /// `topic:NAME`).
    pub fn subscriber<T: DeserializeOwned>(
        &self,
        session: &Session,
        name: &str,
        qos: TopicQos,
    ) -> Result<Subscriber<T>> {
        self.subscriber_with::<T, Postcard>(session, name, qos)
    }

    /// [`EventService::subscriber`] decoding with `C`.
    pub fn subscriber_with<T: DeserializeOwned, C: Codec>(
        &self,
        session: &Session,
        name: &str,
        qos: TopicQos,
    ) -> Result<Subscriber<T, C>> {
        let api = self.api()?;
        api.check(
            session,
            ServiceId::topic(name),
            Permission::Subscribe,
            &format!("topic:{name}"),
        )?;
        let topic = self.topic(name, qos)?;
        let slot = Arc::new(SubscriberSlot::new(qos.depth, self.config.max_sample));
        topic.add_subscriber(Arc::clone(&slot));
        Ok(Subscriber {
            topic,
            slot,
            kind: PhantomData,
        })
    }

    /// The topics.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let mut v: Vec<TopicInfo> = self
            .topics
            .load()
            .values()
            .map(|t| TopicInfo {
                name: t.name.clone(),
                id: t.id,
                qos: t.qos,
                publishers: t.publisher_count(),
                subscribers: t.subscriber_count(),
                remote_publishers: t.remote_pubs.load().len(),
                remote_subscribers: t.remote_subs.load().len(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

impl Service for EventService {
    fn name(&self) -> &str {
        EventService::NAME
    }
}

impl UserService for EventService {
    fn start(&mut self, ctx: &mut UserContext<'_>) -> Result<()> {
        let api = ctx.api();
        let clock = api.clock();
        let remote = Arc::new(RemoteEvents {
            topics: Arc::clone(&self.topics),
            ids: Arc::clone(&self.next_publisher),
            clock: Arc::clone(&clock),
            kernel: api.handle(),
            default_lease: self.config.remote_lease,
            running: AtomicBool::new(true),
        });
        let weak = Arc::downgrade(&remote);
        let watcher: std::sync::Weak<dyn crate::network::NetworkWatch> = weak;
        if let Ok(k) = api.handle().get() {
            k.networks.watch(watcher);
        }
        let period = self.config.remote_period;
        let r = Arc::clone(&remote);
        let thread = std::thread::Builder::new()
            .name("rtpm-events-net".into())
            .spawn(move || {
                while r.running.load(Ordering::Acquire) {
                    r.round(period.min(Nanos::ms(100)));
                    std::thread::park_timeout(period.to_duration());
                }
            })
            .map_err(|e| {
                Error::Invalid(format!(
                    "the event service could not start its network thread: {e}"
                ))
            })?;
        *self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(thread);
        let _ = self.remote.set(remote);
        let _ = self.api.set(api);
        let topics = Arc::clone(&self.topics);
        let spec = TaskSpec::periodic(
            "monitor",
            self.config.monitor_period,
            self.config.monitor_wcet,
        );
        ctx.periodic(spec, TaskOptions::default(), move |_: &Job| {
            let now = clock.now();
            for t in topics.load().values() {
                t.check(now);
            }
        })?;
        Ok(())
    }

    fn stop(&self) {
        if let Some(r) = self.remote.get() {
            r.running.store(false, Ordering::Release);
        }
        let t = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = t {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A publisher. Dropping it tells the subscribers it is gone.
pub struct Publisher<T, C: Codec = Postcard> {
    topic: Arc<Topic>,
    state: Arc<PublisherState>,
    api: UserApi,
    clock: Arc<dyn Clock>,
    session: Session,
    allowed_at: u64,
    scratch: Vec<u8>,
    max: usize,
    kind: PhantomData<fn(&T) -> C>,
}

impl<T, C: Codec> std::fmt::Debug for Publisher<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic.name)
            .field("id", &self.state.id)
            .finish()
    }
}

impl<T: Serialize, C: Codec> Publisher<T, C> {
    /// Its id.
    pub fn id(&self) -> PublisherId {
        self.state.id
    }

    /// Publishes `value` to every subscriber; how many took it (a full subscriber drops
    /// it and counts). Checks the session and the `publish` permission (cached until
    /// users or grants change). Allocates nothing and takes no lock.
    pub fn publish(&mut self, value: &T) -> Result<usize> {
        self.api.session_active(&self.session)?;
        let g = self.api.security_generation();
        if g != self.allowed_at {
            self.api.check(
                &self.session,
                self.topic.id,
                Permission::Publish,
                &format!("topic:{}", self.topic.name),
            )?;
            self.allowed_at = g;
        }
        self.scratch.clear();
        C::encode(value, &mut self.scratch).map_err(|message| Error::Encoding {
            service: format!("topic:{}", self.topic.name),
            action: "encoded",
            message,
        })?;
        if self.scratch.len() > self.max {
            return Err(Error::Encoding {
                service: format!("topic:{}", self.topic.name),
                action: "encoded",
                message: format!(
                    "{} bytes is more than the event service's max_sample of {}",
                    self.scratch.len(),
                    self.max
                ),
            });
        }
        let now = self.clock.now();
        let seq = self.state.seq.fetch_add(1, Ordering::Relaxed);
        let n = self.topic.deliver(self.state.id, seq, now, &self.scratch);
        self.topic.send_remote(
            &Head::of(Kind::Sample, &self.state, seq, now),
            &self.scratch,
            now,
        );
        self.topic.renew(&self.state, now, true);
        Ok(n)
    }

    /// Asserts liveliness without publishing (renews the lease; not a DEADLINE sample),
    /// here and on the subscribed nodes.
    pub fn assert_liveliness(&self) {
        let now = self.clock.now();
        self.topic.renew(&self.state, now, false);
        self.topic
            .send_remote(&Head::of(Kind::Alive, &self.state, 0, now), &[], now);
    }
}

impl<T, C: Codec> Drop for Publisher<T, C> {
    fn drop(&mut self) {
        let now = self.clock.now();
        self.topic.local_publishers.fetch_sub(1, Ordering::AcqRel);
        self.topic
            .send_remote(&Head::of(Kind::Gone, &self.state, 0, now), &[], now);
        self.topic.remove_publisher(&self.state, now);
    }
}

/// A received sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Received<T> {
    /// The value.
    pub value: T,
    /// Who published it.
    pub publisher: PublisherId,
    /// Its sequence number at that publisher.
    pub seq: u64,
    /// When it was published (the runtime's clock).
    pub published: Instant,
}

/// A subscriber. Dropping it unsubscribes.
pub struct Subscriber<T, C: Codec = Postcard> {
    topic: Arc<Topic>,
    slot: Arc<SubscriberSlot>,
    kind: PhantomData<fn() -> (T, C)>,
}

impl<T, C: Codec> std::fmt::Debug for Subscriber<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic.name)
            .field("queued", &self.slot.samples.len())
            .finish()
    }
}

impl<T: DeserializeOwned, C: Codec> Subscriber<T, C> {
    /// The next sample, if one is queued.
    pub fn try_take(&mut self) -> Result<Option<Received<T>>> {
        let Some(s) = self.slot.samples.pop() else {
            return Ok(None);
        };
        let value = C::decode::<T>(&s.bytes);
        let _ = self.slot.free.push(s.bytes);
        let value = value.map_err(|message| Error::Encoding {
            service: format!("topic:{}", self.topic.name),
            action: "decoded",
            message,
        })?;
        Ok(Some(Received {
            value,
            publisher: s.publisher,
            seq: s.seq,
            published: s.at,
        }))
    }

    /// The next notice, if one is queued.
    pub fn try_notice(&self) -> Option<Notice> {
        self.slot.notices.pop()
    }

    /// Waits up to `timeout` for a sample or a notice to be queued; whether one is.
    pub fn wait(&self, timeout: Nanos) -> bool {
        let deadline = MonotonicClock.now().add(timeout);
        loop {
            let seen = self.slot.wake.seq();
            if !self.slot.samples.is_empty() || !self.slot.notices.is_empty() {
                return true;
            }
            if MonotonicClock.now() >= deadline {
                return false;
            }
            self.slot.wake.wait(seen, Some(deadline));
        }
    }

    /// The node publisher `id` publishes from, when it is a publisher of another node
    /// (`None` for one of this runtime, or one not known).
    pub fn publisher_node(&self, id: PublisherId) -> Option<NodeId> {
        self.topic
            .remote_pubs
            .load()
            .iter()
            .find(|p| p.state.id == id)
            .map(|p| p.node)
    }

    /// Samples this subscriber dropped because it was full.
    pub fn dropped(&self) -> u64 {
        self.slot.dropped.load(Ordering::Relaxed)
    }
}

impl<T, C: Codec> Drop for Subscriber<T, C> {
    fn drop(&mut self) {
        self.topic.remove_subscriber(&self.slot);
    }
}
