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
//! Topics are local to the runtime in this build; finding them through discovery and
//! carrying samples over the overlay on the topic's class comes with the overlay driver
//! (issue 7).

mod notice;
mod service;
mod topic;

pub use notice::{Notice, NoticeKind, PublisherId};
pub use service::{EventConfig, EventService, Publisher, Received, Subscriber, TopicInfo};
pub use topic::{PublisherQos, TopicQos};
