//! The event service, its publishers and its subscribers.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rtpm_rt::exec::{Job, TaskOptions, TaskSpec};
use rtpm_rt::time::{Clock, Instant, MonotonicClock, Nanos};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::notice::{Notice, NoticeKind, PublisherId};
use super::topic::{PublisherQos, PublisherState, SubscriberSlot, Topic, TopicQos};
use crate::error::{Error, Result};
use crate::id::ServiceId;
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
}

impl Default for EventConfig {
    /// A 1 ms monitor budgeted at 50 µs; samples up to 1 KiB.
    fn default() -> EventConfig {
        EventConfig {
            monitor_period: Nanos::ms(1),
            monitor_wcet: Nanos::us(50),
            max_sample: 1024,
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
    /// Subscribers now.
    pub subscribers: usize,
}

type Topics = HashMap<ServiceId, Arc<Topic>>;

/// The event service. See the [module documentation](super).
pub struct EventService {
    config: EventConfig,
    topics: Arc<ArcSwap<Topics>>,
    edit: Mutex<()>,
    api: OnceLock<UserApi>,
    next_publisher: AtomicU64,
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
            next_publisher: AtomicU64::new(1),
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

    fn alive_now(&self, now: Instant) {
        self.state.last.store(now.as_nanos(), Ordering::Release);
        if let Some(d) = self.state.qos.deadline {
            self.state
                .next_due
                .store(now.add(d).as_nanos(), Ordering::Release);
        }
        if self
            .state
            .alive
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.topic
                .notify(NoticeKind::LivelinessRegained, self.state.id, now);
        }
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
        self.alive_now(now);
        Ok(n)
    }

    /// Asserts liveliness without publishing (renews the lease; not a DEADLINE sample).
    pub fn assert_liveliness(&self) {
        let now = self.clock.now();
        self.state.last.store(now.as_nanos(), Ordering::Release);
        if self
            .state
            .alive
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.topic
                .notify(NoticeKind::LivelinessRegained, self.state.id, now);
        }
    }
}

impl<T, C: Codec> Drop for Publisher<T, C> {
    fn drop(&mut self) {
        self.topic.remove_publisher(&self.state, self.clock.now());
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
