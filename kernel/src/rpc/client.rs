//! The client side: a handle on one service, resolved once, that issues requests without
//! allocating or locking.
//!
//! Each call checks the session (one atomic load) and the permission decision cached at
//! the security module's generation (one more; the lock is taken again only after users
//! or grants changed). The request carries the caller's identity, its deadline and its
//! QoS class. A local request goes to the server's endpoint (as a job, or on this thread
//! for [`LocalCalls::OnCaller`](super::LocalCalls::OnCaller) servers); a two-way call
//! waits for its reply until its deadline and no longer.

use std::marker::PhantomData;
use std::sync::Arc;

use rtpm_rt::hist::{AtomicHistogram, Percentiles};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{Codec, Postcard};
use super::core::RpcCore;
use super::remote::{REQUEST_FIXED, RequestHead};
use super::reply::Waited;
use super::request::{Caller, Header, OpId, Status};
use super::server::{Endpoint, Envelope, LocalCalls};
use crate::error::{Error, Result};
use crate::id::{NodeId, ServiceId};
use crate::network::Network;
use crate::qos::QosClass;
use crate::security::Permission;
use crate::service::UserApi;
use crate::session::Session;

/// A request's deadline and QoS class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOptions {
    /// Relative deadline: a two-way call returns [`Error::DeadlineExceeded`] when no
    /// reply came by then; a server does not start a request whose deadline has passed.
    pub deadline: Nanos,
    /// The QoS class it travels on.
    pub qos: QosClass,
}

impl CallOptions {
    /// Deadline `deadline`, reliable class.
    pub fn within(deadline: Nanos) -> CallOptions {
        CallOptions {
            deadline,
            qos: QosClass::RELIABLE,
        }
    }

    /// On class `qos`.
    #[must_use]
    pub fn qos(mut self, qos: QosClass) -> CallOptions {
        self.qos = qos;
        self
    }
}

impl Default for CallOptions {
    /// 100 ms, reliable.
    fn default() -> CallOptions {
        CallOptions::within(Nanos::ms(100))
    }
}

/// Where a client's requests go.
enum Target {
    /// The server's endpoint in this runtime.
    Local(Arc<Endpoint>),
    /// A node that serves it, found through a network's discovery.
    Remote { net: Arc<dyn Network>, node: NodeId },
}

/// A client of one service, encoding with `C`: see [`crate::rpc`].
pub struct RpcClient<C: Codec = Postcard> {
    core: Arc<RpcCore>,
    api: UserApi,
    session: Session,
    caller: Caller,
    id: ServiceId,
    name: String,
    target: Target,
    /// The security generation at which execution was last allowed.
    allowed_at: u64,
    args: Vec<u8>,
    reply: Vec<u8>,
    round_trips: Option<AtomicHistogram>,
    codec: PhantomData<C>,
}

impl<C: Codec> std::fmt::Debug for RpcClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("service", &self.name)
            .field("remote", &self.remote_node())
            .field("user", &self.session.user())
            .finish()
    }
}

impl<C: Codec> RpcClient<C> {
    pub(crate) fn new(
        core: Arc<RpcCore>,
        api: UserApi,
        session: Session,
        endpoint: Arc<Endpoint>,
        measure: bool,
    ) -> Result<RpcClient<C>> {
        let (id, name) = (endpoint.id, endpoint.name.clone());
        RpcClient::with_target(
            core,
            api,
            session,
            id,
            name,
            Target::Local(endpoint),
            measure,
        )
    }

    /// A client of service `id`, served by `node` on `net`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote(
        core: Arc<RpcCore>,
        api: UserApi,
        session: Session,
        net: Arc<dyn Network>,
        node: NodeId,
        id: ServiceId,
        name: String,
        measure: bool,
    ) -> Result<RpcClient<C>> {
        if session.user().len() > usize::from(u8::MAX) {
            return Err(Error::Invalid(format!(
                "user name `{}` is longer than the 255 bytes a remote request carries",
                session.user()
            )));
        }
        RpcClient::with_target(
            core,
            api,
            session,
            id,
            name,
            Target::Remote { net, node },
            measure,
        )
    }

    fn with_target(
        core: Arc<RpcCore>,
        api: UserApi,
        session: Session,
        id: ServiceId,
        name: String,
        target: Target,
        measure: bool,
    ) -> Result<RpcClient<C>> {
        let allowed_at = api.security_generation();
        api.check(&session, id, Permission::Execute, &name)?;
        let node = api.node().1;
        let size = core.config.max_payload;
        Ok(RpcClient {
            caller: Caller {
                user: Arc::clone(session.user_arc()),
                node,
            },
            core,
            api,
            session,
            id,
            name,
            target,
            allowed_at,
            args: Vec::with_capacity(size),
            reply: Vec::with_capacity(size),
            round_trips: measure.then(AtomicHistogram::new),
            codec: PhantomData,
        })
    }

    /// The service's id.
    pub fn service(&self) -> ServiceId {
        self.id
    }

    /// Whether requests from this runtime run as jobs or on this thread (a remote
    /// server runs them as jobs).
    pub fn local_calls(&self) -> LocalCalls {
        match &self.target {
            Target::Local(ep) => ep.local,
            Target::Remote { .. } => LocalCalls::AsJobs,
        }
    }

    /// Whether the service is served by another node (found through discovery).
    pub fn is_remote(&self) -> bool {
        matches!(self.target, Target::Remote { .. })
    }

    /// The node serving the service when it is remote.
    pub fn remote_node(&self) -> Option<NodeId> {
        match &self.target {
            Target::Local(_) => None,
            Target::Remote { node, .. } => Some(*node),
        }
    }

    /// The network a remote service is reached on, by name.
    pub fn network(&self) -> Option<&str> {
        match &self.target {
            Target::Local(_) => None,
            Target::Remote { net, .. } => Some(net.name()),
        }
    }

    /// Percentiles of this client's completed two-way round trips.
    pub fn round_trips(&self) -> Result<Percentiles> {
        match &self.round_trips {
            Some(h) => Ok(Percentiles::of(&h.snapshot()?)),
            None => Ok(Percentiles::default()),
        }
    }

    #[inline]
    fn record(&self, ns: u64) {
        if let Some(h) = &self.round_trips {
            h.record(ns);
        }
    }

    #[inline]
    fn authorize(&mut self) -> Result<()> {
        self.api.session_active(&self.session)?;
        let g = self.api.security_generation();
        if g != self.allowed_at {
            self.api
                .check(&self.session, self.id, Permission::Execute, &self.name)?;
            self.allowed_at = g;
        }
        let open = match &self.target {
            Target::Local(ep) => ep.is_open(),
            Target::Remote { .. } => true,
        };
        if !open || !self.core.open.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::ServiceNotFound { id: self.id });
        }
        Ok(())
    }

    fn encode<A: Serialize + ?Sized>(&mut self, args: &A) -> Result<()> {
        self.args.clear();
        C::encode(args, &mut self.args).map_err(|message| Error::Encoding {
            service: self.name.clone(),
            action: "encoded",
            message,
        })?;
        if self.args.len() > self.core.config.max_payload {
            return Err(Error::Encoding {
                service: self.name.clone(),
                action: "encoded",
                message: format!(
                    "{} bytes is more than the RPC service's max_payload of {}",
                    self.args.len(),
                    self.core.config.max_payload
                ),
            });
        }
        Ok(())
    }

    /// Invokes `op` one-way: returns once the request is queued (or, for a server run on
    /// the caller, once it ran). Errors: [`Error::NotAllowed`], [`Error::ServiceNotFound`]
    /// (removed), [`Error::ServiceNotAvailable`] (queue full).
    pub fn one_way<A: Serialize + ?Sized>(
        &mut self,
        op: OpId,
        args: &A,
        opts: CallOptions,
    ) -> Result<()> {
        self.authorize()?;
        self.encode(args)?;
        self.issue(op, opts, true).map(|_| ())
    }

    /// Invokes `op` and waits for its reply until the deadline: the decoded result, or
    /// [`Error::DeadlineExceeded`], [`Error::OperationNotImplemented`],
    /// [`Error::OperationFailed`], [`Error::NotAllowed`], [`Error::ServiceNotFound`],
    /// [`Error::ServiceNotAvailable`].
    pub fn two_way<A: Serialize + ?Sized, R: DeserializeOwned>(
        &mut self,
        op: OpId,
        args: &A,
        opts: CallOptions,
    ) -> Result<R> {
        self.authorize()?;
        self.encode(args)?;
        self.issue(op, opts, false)?;
        C::decode(&self.reply).map_err(|message| Error::Encoding {
            service: self.name.clone(),
            action: "decoded",
            message,
        })
    }

    /// [`RpcClient::one_way`] on raw payload bytes.
    pub fn one_way_bytes(&mut self, op: OpId, args: &[u8], opts: CallOptions) -> Result<()> {
        self.authorize()?;
        self.args.clear();
        self.args.extend_from_slice(args);
        self.issue(op, opts, true).map(|_| ())
    }

    /// [`RpcClient::two_way`] on raw payload bytes; the reply's bytes.
    pub fn two_way_raw(&mut self, op: OpId, args: &[u8], opts: CallOptions) -> Result<&[u8]> {
        self.authorize()?;
        self.args.clear();
        self.args.extend_from_slice(args);
        self.issue(op, opts, false)?;
        Ok(&self.reply)
    }

    fn status(&self, op: OpId, status: Status, opts: CallOptions) -> Result<()> {
        let name = || self.name.clone();
        match status {
            Status::Ok => Ok(()),
            Status::NotImplemented => Err(Error::OperationNotImplemented {
                service: name(),
                operation: op,
            }),
            Status::Failed => Err(Error::OperationFailed {
                service: name(),
                operation: op,
                message: String::from_utf8_lossy(&self.reply).into_owned(),
            }),
            Status::Expired => Err(Error::DeadlineExceeded {
                service: name(),
                operation: op,
                deadline: opts.deadline,
            }),
            Status::Unavailable => Err(Error::ServiceNotAvailable {
                service: name(),
                reason: "it was removed before it ran the request, or its request queue was full"
                    .into(),
            }),
            Status::NotAllowed => Err(Error::NotAllowed {
                user: self.session.user().to_string(),
                permission: Permission::Execute,
                target: match self.remote_node() {
                    Some(n) => format!("{} (refused by node {n})", self.name),
                    None => name(),
                },
            }),
        }
    }

    /// Sends the encoded `self.args`; for two-way, leaves the reply in `self.reply`.
    fn issue(&mut self, op: OpId, opts: CallOptions, one_way: bool) -> Result<()> {
        let clock = MonotonicClock;
        let issued = clock.now();
        let deadline = issued.add(opts.deadline);
        let endpoint = match &self.target {
            Target::Local(ep) => Arc::clone(ep),
            Target::Remote { .. } => return self.issue_remote(op, opts, one_way, issued),
        };
        let header = Header {
            service: self.id,
            operation: op,
            caller: self.caller.clone(),
            issued,
            budget: opts.deadline,
            deadline,
            qos: opts.qos,
            one_way,
        };
        if endpoint.local == LocalCalls::OnCaller {
            let status = endpoint.run_on_caller(&header, &self.args, &mut self.reply);
            let done = clock.now();
            if !one_way {
                self.record(done.since(issued).get());
                if done > deadline {
                    return Err(Error::DeadlineExceeded {
                        service: self.name.clone(),
                        operation: op,
                        deadline: opts.deadline,
                    });
                }
            }
            return self.status(op, status, opts);
        }
        let unavailable = |why: &str| Error::ServiceNotAvailable {
            service: self.name.clone(),
            reason: why.to_string(),
        };
        let Some(mut payload) = self.core.buffers.take() else {
            return Err(unavailable(
                "every RPC payload buffer is in use; raise RpcConfig::buffers",
            ));
        };
        payload.extend_from_slice(&self.args);
        let reply = if one_way {
            None
        } else {
            match self.core.replies.take() {
                Some(r) => Some(r),
                None => {
                    self.core.buffers.give(payload);
                    return Err(unavailable(
                        "too many two-way calls in flight; raise RpcConfig::reply_cells",
                    ));
                }
            }
        };
        let env = Envelope {
            header,
            payload,
            reply: reply.clone(),
            remote: None,
        };
        if let Err(env) = endpoint.submit(env) {
            self.core.buffers.give(env.payload);
            if let Some(r) = reply {
                self.core.replies.give(r);
            }
            return Err(if endpoint.is_open() {
                unavailable("its request queue is full")
            } else {
                Error::ServiceNotFound { id: self.id }
            });
        }
        let Some(to) = reply else {
            return Ok(());
        };
        let spin_until = issued.add(self.core.config.spin).min(deadline);
        let waited = to
            .cell
            .wait(to.generation, deadline, spin_until, &self.core.buffers);
        self.core.replies.give(to);
        match waited {
            Waited::Reply(r) => {
                self.record(clock.now().since(issued).get());
                self.reply.clear();
                self.reply.extend_from_slice(&r.payload);
                self.core.buffers.give(r.payload);
                self.status(op, r.status, opts)
            }
            Waited::TimedOut => Err(Error::DeadlineExceeded {
                service: self.name.clone(),
                operation: op,
                deadline: opts.deadline,
            }),
        }
    }

    /// Sends the encoded `self.args` to the remote node; for two-way, waits for the reply
    /// (until the deadline) and leaves it in `self.reply`.
    fn issue_remote(
        &mut self,
        op: OpId,
        opts: CallOptions,
        one_way: bool,
        issued: rtpm_rt::time::Instant,
    ) -> Result<()> {
        let Target::Remote { net, node } = &self.target else {
            return Ok(());
        };
        let deadline = issued.add(opts.deadline);
        let reply = if one_way {
            None
        } else {
            match self.core.replies.take() {
                Some(r) => Some(r),
                None => {
                    return Err(Error::ServiceNotAvailable {
                        service: self.name.clone(),
                        reason: "too many two-way calls in flight; raise RpcConfig::reply_cells"
                            .into(),
                    });
                }
            }
        };
        let user = self.caller.user.as_bytes();
        let head = RequestHead {
            one_way,
            qos: opts.qos,
            user_len: u8::try_from(user.len()).unwrap_or(u8::MAX),
            operation: op,
            index: reply.as_ref().map_or(0, |r| r.cell.index),
            generation: reply.as_ref().map_or(0, |r| r.generation),
            budget: deadline.since(MonotonicClock.now()),
        };
        let head: [u8; REQUEST_FIXED] = head.encode();
        let sent = net
            .messaging()
            .send_parts(*node, opts.qos, self.id, &[&head, user, &self.args]);
        if let Err(e) = sent {
            if let Some(r) = reply {
                self.core.replies.give(r);
            }
            return Err(Error::ServiceNotAvailable {
                service: self.name.clone(),
                reason: format!(
                    "it is served by node {node} on network `{}`, which did not take the request: {e}",
                    net.name()
                ),
            });
        }
        let Some(to) = reply else {
            return Ok(());
        };
        let spin_until = issued.add(self.core.config.spin).min(deadline);
        let waited = to
            .cell
            .wait(to.generation, deadline, spin_until, &self.core.buffers);
        self.core.replies.give(to);
        match waited {
            Waited::Reply(r) => {
                self.record(MonotonicClock.now().since(issued).get());
                self.reply.clear();
                self.reply.extend_from_slice(&r.payload);
                self.core.buffers.give(r.payload);
                self.status(op, r.status, opts)
            }
            Waited::TimedOut => Err(Error::DeadlineExceeded {
                service: self.name.clone(),
                operation: op,
                deadline: opts.deadline,
            }),
        }
    }
}
