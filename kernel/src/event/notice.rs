//! What a subscriber is told besides samples.

use rtpm_rt::time::Instant;

use crate::id::ServiceId;

/// A publisher's id, unique in its event service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PublisherId(pub u64);

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// A publisher let one of its declared DEADLINE periods pass without a sample (one
    /// notice per period missed).
    DeadlineMissed,
    /// A publisher neither published nor asserted liveliness within its lease.
    LivelinessLost,
    /// A publisher whose liveliness was lost published (or asserted) again.
    LivelinessRegained,
    /// A publisher was closed (dropped): it is gone for good.
    PublisherGone,
}

/// A notice to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub kind: NoticeKind,
    /// On which topic.
    pub topic: ServiceId,
    /// To which publisher.
    pub publisher: PublisherId,
    /// When it was noticed (the runtime's clock).
    pub at: Instant,
}
