//! The event service: publish/subscribe on named topics, a user service.
//!
//! A topic (`topic:NAME`, one UUID v5 like a service's) has a QoS class and a depth per
//! subscriber, fixed by whoever creates it. Publishing needs `publish` on the topic,
//! subscribing `subscribe`. A publish encodes the value once (postcard by default) and
//! copies it into each subscriber's preallocated buffers, through lock-free queues: no
//! allocation, no lock; a full subscriber drops the newest sample and counts it.
//!
//! Like DDS, a publisher may promise a **DEADLINE** (the longest gap between two samples)
//! and a **liveliness lease**. The service's monitor, a periodic task admitted like any
//! other, checks every publisher each period against the runtime's clock and tells the
//! subscribers ([`Notice`]): one [`NoticeKind::DeadlineMissed`] per period missed,
//! [`NoticeKind::LivelinessLost`] when the lease runs out (and
//! [`NoticeKind::LivelinessRegained`] when it publishes again). A publisher that is
//! closed (dropped) is announced at once with [`NoticeKind::PublisherGone`].
//!
//! **Across nodes** (the `remote` module): a node that publishes a
//! topic advertises it in its networks' discovery; a node with subscribers finds it there
//! and subscribes; samples then travel over the overlay on the topic's QoS class. DEADLINE
//! and liveliness hold across nodes too: a publisher whose node crashes, leaves or loses
//! its network is reported [`NoticeKind::LivelinessLost`] when its lease (declared, or
//! [`EventConfig::remote_lease`]) runs out. [`Subscriber::publisher_node`] tells remote
//! publishers apart; [`TopicInfo`] counts remote publishers and subscribed nodes.

mod notice;
mod remote;
mod service;
mod topic;

pub use notice::{Notice, NoticeKind, PublisherId};
pub use remote::SUBSCRIPTION_LEASE;
pub use service::{EventConfig, EventService, Publisher, Received, Subscriber, TopicInfo};
pub use topic::{PublisherQos, TopicQos};
