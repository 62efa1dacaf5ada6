//! A session: the proof that a user logged in to one runtime.
//!
//! Only [`Runtime::login`](crate::Runtime::login) makes one. It is cheap to clone and
//! to share between threads; [`Runtime::logout`](crate::Runtime::logout) (or removing
//! the user) closes it for every clone at once. Checking it is one atomic load, so the
//! hot path can afford it on every request.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct SessionInner {
    pub(crate) id: u64,
    pub(crate) user: Arc<str>,
    /// The runtime that issued it.
    pub(crate) runtime: u64,
    pub(crate) active: AtomicBool,
}

/// A logged-in user of one runtime: made only by [`Runtime::login`](crate::Runtime::login), closed for every clone by [`Runtime::logout`](crate::Runtime::logout).
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

impl Session {
    pub(crate) fn new(id: u64, user: Arc<str>, runtime: u64) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                id,
                user,
                runtime,
                active: AtomicBool::new(true),
            }),
        }
    }

    /// The user's name.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The user's name, shared (requests carry it as the caller's identity).
    pub(crate) fn user_arc(&self) -> &Arc<str> {
        &self.inner.user
    }

    /// Whether the session is still open.
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Whether it was issued by runtime `runtime` and is still open.
    #[inline]
    pub(crate) fn valid_for(&self, runtime: u64) -> bool {
        self.inner.runtime == runtime && self.inner.active.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.inner.active.store(false, Ordering::Release);
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user())
            .field("id", &self.inner.id)
            .field("active", &self.is_active())
            .finish()
    }
}
