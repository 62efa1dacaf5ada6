//! The server side: an [`RpcServer`] (listing 8) registered with the RPC service becomes
//! a user service whose one sporadic task runs its requests.
//!
//! Each registered server gets an endpoint: a bounded lock-free mailbox of requests and
//! the activator of its request task. A request is pushed into the mailbox, then the task
//! is activated; each job pops one request and runs it, within the task's admitted
//! budget, measured by the executor like every job. Because a request is pushed before
//! its activation and each job takes one, the activation queue never holds more entries
//! than the mailbox, so a request accepted into the mailbox always gets its job.
//!
//! The mailbox never makes a job wait for a push ([`rtpm_rt::mpmc::Queue`]): a caller
//! of lower priority on the same RT core may be preempted by the request task in the
//! middle of its push, which under SCHED_FIFO would never finish while the job waited.
//! A job that finds the oldest request still being pushed takes nothing and, if
//! requests are queued, activates the task again, so the activation it used is given
//! back and every accepted request still gets its job.
//!
//! [`LocalCalls`] says how requests from the same runtime are run: as jobs of the
//! request task (the default: isolated on the RT core, admitted and budgeted), or on the
//! caller's thread (collocated: no hand-off at all, the caller's own task pays for the
//! operation; the executor does not see it, so the endpoint counts its overruns against
//! the declared wcet). Requests from other nodes always run as jobs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rtpm_rt::exec::{Activator, Job, OverrunPolicy, TaskOptions, TaskSpec};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

use super::core::RpcCore;
use super::remote::{RemoteGrants, RemoteReply};
use super::reply::{BufferPool, ReplyTo};
use super::request::{Header, OpError, ReplyBuf, Request, Status};
use crate::error::Result;
use crate::id::ServiceId;
use crate::service::{Service, UserContext, UserService};

/// A user-level RPC server (listing 8). Its operations are numbered; `invoke` runs one.
pub trait RpcServer: Send + Sync + 'static {
    /// Its service name (the id is v5 of it).
    fn name(&self) -> &str;

    /// Runs the operation `request` asks for and writes the reply (ignored for one-way
    /// requests). Runs as a job of the server's request task (or, with
    /// [`LocalCalls::OnCaller`], on a local caller's thread): keep it within the declared
    /// wcet, do not block.
    fn invoke(&self, request: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError>;
}

/// How requests from the same runtime are run: as jobs of the server's request task (isolated on the RT core), or on the caller's thread (collocated). See [`crate::rpc`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalCalls {
    /// As sporadic jobs of the request task, like remote ones.
    #[default]
    AsJobs,
    /// On the caller's thread (collocated fast path).
    OnCaller,
}

/// What a server declares when it registers: its request task and its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// Minimum time between two requests' releases (the sporadic task's period).
    pub min_interarrival: Nanos,
    /// Worst-case execution time of one request, including sending a remote caller's
    /// reply: the request's job hands the reply to the overlay itself (one overlay turn,
    /// about [`PER_DATAGRAM_NS`](rtpm_overlay::proto::tasks::PER_DATAGRAM_NS) per
    /// datagram; when another job holds the overlay's node at that moment, that job
    /// sends it).
    pub wcet: Nanos,
    /// Relative deadline of a request's job (≤ `min_interarrival`); `None`: equal to it.
    pub deadline: Option<Nanos>,
    /// How local requests run.
    pub local: LocalCalls,
    /// Requests waiting at most (the mailbox and activation queue capacity; at least 2).
    pub queue: usize,
    /// What an overrunning request does to the task.
    pub overrun: OverrunPolicy,
    /// Requests that may be released together: at most `burst` in any window of
    /// `min_interarrival` (1: one per `min_interarrival`). Admission charges the window
    /// `burst × wcet`.
    pub burst: u32,
}

impl ServerSpec {
    /// A server taking a request at most every `min_interarrival`, each running at most
    /// `wcet`; local calls as jobs, 64 queued requests, overruns reported.
    pub fn new(min_interarrival: Nanos, wcet: Nanos) -> ServerSpec {
        ServerSpec {
            min_interarrival,
            wcet,
            deadline: None,
            local: LocalCalls::AsJobs,
            queue: 64,
            overrun: OverrunPolicy::Report,
            burst: 1,
        }
    }

    /// Taking up to `burst` requests in any window of `min_interarrival`: a request that
    /// arrives soon after the last one runs at once unless `burst` already ran in the
    /// window.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> ServerSpec {
        self.burst = burst;
        self
    }

    /// With local calls run per `local`.
    #[must_use]
    pub fn local_calls(mut self, local: LocalCalls) -> ServerSpec {
        self.local = local;
        self
    }

    /// With a relative deadline shorter than the minimum inter-arrival time.
    #[must_use]
    pub fn deadline(mut self, deadline: Nanos) -> ServerSpec {
        self.deadline = Some(deadline);
        self
    }

    /// With room for `n` queued requests (at least 2: a lock-free queue that never
    /// waits needs two slots).
    #[must_use]
    pub fn queue(mut self, n: usize) -> ServerSpec {
        self.queue = n;
        self
    }

    fn task(&self) -> TaskSpec {
        let t =
            TaskSpec::sporadic("requests", self.min_interarrival, self.wcet).with_burst(self.burst);
        match self.deadline {
            Some(d) => t.with_deadline(d),
            None => t,
        }
    }
}

/// A request on its way to a server.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) header: Header,
    pub(crate) payload: Vec<u8>,
    pub(crate) reply: Option<ReplyTo>,
    /// Where the reply of a two-way request from another node goes.
    pub(crate) remote: Option<RemoteReply>,
}

/// An endpoint's counters.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_full: AtomicU64,
    served: AtomicU64,
    not_implemented: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    caller_overruns: AtomicU64,
    remote: AtomicU64,
    not_allowed: AtomicU64,
    malformed: AtomicU64,
    unsent: AtomicU64,
    retried: AtomicU64,
}

/// A snapshot of a server's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// Requests taken into the mailbox (or run on the caller).
    pub accepted: u64,
    /// Requests refused because the mailbox was full.
    pub refused_full: u64,
    /// Requests whose operation ran and succeeded.
    pub served: u64,
    /// Requests for an operation the server does not implement.
    pub not_implemented: u64,
    /// Requests whose operation failed.
    pub failed: u64,
    /// Requests whose deadline had passed when the server took them (not run).
    pub expired: u64,
    /// Requests run on a caller's thread that took longer than the declared wcet.
    pub caller_overruns: u64,
    /// Requests that came from other nodes (and were let in).
    pub remote: u64,
    /// Requests from other nodes refused because their user may not execute the server
    /// on this node.
    pub not_allowed: u64,
    /// Messages on the server's port that were not requests.
    pub malformed: u64,
    /// Replies to other nodes the network refused to send (their callers time out).
    pub replies_unsent: u64,
    /// Jobs that found the oldest request still being pushed and activated the task
    /// again (see the module documentation).
    pub retried: u64,
}

/// A registered server's endpoint. See the [module documentation](self).
pub(crate) struct Endpoint {
    pub(crate) id: ServiceId,
    pub(crate) name: String,
    server: Arc<dyn RpcServer>,
    pub(crate) local: LocalCalls,
    pub(crate) wcet: Nanos,
    mailbox: rtpm_rt::mpmc::Queue<Envelope>,
    activator: OnceLock<Activator<()>>,
    open: AtomicBool,
    counters: Counters,
    pub(crate) buffers: Arc<BufferPool>,
    /// Remote callers' permission decisions.
    pub(crate) grants: RemoteGrants,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("local", &self.local)
            .field("queued", &self.mailbox.len())
            .finish()
    }
}

impl Endpoint {
    /// Whether it takes requests.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Queues a request and activates the request task; the envelope back when the
    /// mailbox is full or the endpoint closed.
    #[inline]
    #[allow(clippy::result_large_err)] // given back by value: boxing would allocate per request
    pub(crate) fn submit(&self, env: Envelope) -> std::result::Result<(), Envelope> {
        let Some(act) = self.activator.get() else {
            return Err(env);
        };
        if !self.is_open() {
            return Err(env);
        }
        match self.mailbox.push(env) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                // The activation queue holds no more entries than the mailbox (see the
                // module documentation), so this push finds room.
                let _ = act.activate(());
                Ok(())
            }
            Err(env) => {
                self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                Err(env)
            }
        }
    }

    pub(crate) fn count_remote(&self) {
        self.counters.remote.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_not_allowed(&self) {
        self.counters.not_allowed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_unsent(&self) {
        self.counters.unsent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_malformed(&self) {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `request` and counts how it ended.
    #[inline]
    pub(crate) fn run(&self, header: &Header, args: &[u8], reply: &mut Vec<u8>) -> Status {
        reply.clear();
        let request = Request {
            header,
            payload: args,
        };
        let mut out = ReplyBuf { buf: reply };
        match self.server.invoke(&request, &mut out) {
            Ok(()) => {
                self.counters.served.fetch_add(1, Ordering::Relaxed);
                Status::Ok
            }
            Err(OpError::NotImplemented) => {
                self.counters
                    .not_implemented
                    .fetch_add(1, Ordering::Relaxed);
                Status::NotImplemented
            }
            Err(OpError::Failed(message)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                reply.clear();
                reply.extend_from_slice(message.as_bytes());
                Status::Failed
            }
        }
    }

    /// Runs a local request on the caller's thread, checking the declared wcet.
    #[inline]
    pub(crate) fn run_on_caller(
        &self,
        header: &Header,
        args: &[u8],
        reply: &mut Vec<u8>,
    ) -> Status {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let start = MonotonicClock.now();
        let status = self.run(header, args, reply);
        if MonotonicClock.now().since(start) > self.wcet {
            self.counters
                .caller_overruns
                .fetch_add(1, Ordering::Relaxed);
        }
        status
    }

    /// The request task's job: takes one request and runs it (unless its deadline has
    /// passed), and sends the reply of a two-way request.
    fn serve_one(&self) {
        let Some(env) = self.mailbox.pop() else {
            // The oldest request's push has not finished (see the module documentation):
            // hand the activation back for a later job.
            if self.is_open()
                && !self.mailbox.is_empty()
                && let Some(act) = self.activator.get()
            {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                let _ = act.activate(());
            }
            return;
        };
        let Envelope {
            header,
            payload,
            reply,
            remote,
        } = env;
        if let Some(remote) = remote {
            return self.serve_remote(&header, payload, &remote);
        }
        if MonotonicClock.now() > header.deadline {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            match reply {
                Some(to) => to.send(Status::Expired, payload, &self.buffers),
                None => self.buffers.give(payload),
            }
            return;
        }
        match reply {
            None => {
                let mut scratch = self.buffers.take().unwrap_or_default();
                let _ = self.run(&header, &payload, &mut scratch);
                self.buffers.give(scratch);
                self.buffers.give(payload);
            }
            Some(to) => match self.buffers.take() {
                Some(mut out) => {
                    let status = self.run(&header, &payload, &mut out);
                    self.buffers.give(payload);
                    to.send(status, out, &self.buffers);
                }
                None => {
                    // No buffer for the reply: reply in the request's own buffer.
                    let mut out = payload;
                    let args = std::mem::take(&mut out);
                    let status = self.run(&header, &args, &mut out);
                    self.buffers.give(args);
                    to.send(status, out, &self.buffers);
                }
            },
        }
    }

    /// Runs a two-way request from another node and sends its reply over the network.
    fn serve_remote(&self, header: &Header, payload: Vec<u8>, remote: &RemoteReply) {
        if MonotonicClock.now() > header.deadline {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            self.buffers.give(payload);
            if !remote.send(Status::Expired, &[]) {
                self.count_unsent();
            }
            return;
        }
        let mut out = self.buffers.take().unwrap_or_default();
        let status = self.run(header, &payload, &mut out);
        if !remote.send(status, &out) {
            self.count_unsent();
        }
        self.buffers.give(out);
        self.buffers.give(payload);
    }

    /// Stops taking requests and tells the waiting two-way callers.
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
        while let Some(env) = self.mailbox.pop() {
            if let Some(r) = &env.remote
                && !r.send(Status::Unavailable, &[])
            {
                self.count_unsent();
            }
            match env.reply {
                Some(to) => to.send(Status::Unavailable, env.payload, &self.buffers),
                None => self.buffers.give(env.payload),
            }
        }
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> ServerStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            accepted: l(&c.accepted),
            refused_full: l(&c.refused_full),
            served: l(&c.served),
            not_implemented: l(&c.not_implemented),
            failed: l(&c.failed),
            expired: l(&c.expired),
            caller_overruns: l(&c.caller_overruns),
            remote: l(&c.remote),
            not_allowed: l(&c.not_allowed),
            malformed: l(&c.malformed),
            replies_unsent: l(&c.unsent),
            retried: l(&c.retried),
        }
    }
}

/// The user service a registered [`RpcServer`] runs as.
pub struct RpcUserService<S: RpcServer> {
    server: Arc<S>,
    spec: ServerSpec,
    pub(crate) endpoint: Arc<Endpoint>,
    core: Arc<RpcCore>,
}

impl<S: RpcServer> std::fmt::Debug for RpcUserService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcUserService")
            .field("endpoint", &self.endpoint)
            .field("spec", &self.spec)
            .finish()
    }
}

impl<S: RpcServer> RpcUserService<S> {
    pub(crate) fn new(server: S, spec: ServerSpec, core: Arc<RpcCore>) -> RpcUserService<S> {
        let server = Arc::new(server);
        let endpoint = Arc::new(Endpoint {
            id: ServiceId::from_name(server.name()),
            name: server.name().to_string(),
            server: Arc::clone(&server) as Arc<dyn RpcServer>,
            local: spec.local,
            wcet: spec.wcet,
            mailbox: rtpm_rt::mpmc::Queue::new(spec.queue.max(1)),
            activator: OnceLock::new(),
            open: AtomicBool::new(true),
            counters: Counters::default(),
            buffers: Arc::clone(&core.buffers),
            grants: RemoteGrants::default(),
        });
        RpcUserService {
            server,
            spec,
            endpoint,
            core,
        }
    }

    /// The server.
    pub fn server(&self) -> &Arc<S> {
        &self.server
    }

    /// What it declared.
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// Its counters.
    pub fn stats(&self) -> ServerStats {
        self.endpoint.stats()
    }
}

impl<S: RpcServer> Service for RpcUserService<S> {
    fn name(&self) -> &str {
        self.server.name()
    }
}

impl<S: RpcServer> UserService for RpcUserService<S> {
    fn start(&mut self, ctx: &mut UserContext<'_>) -> Result<()> {
        let ep = Arc::clone(&self.endpoint);
        let options = TaskOptions::default()
            .queue_capacity(self.spec.queue.max(1))
            .overrun(self.spec.overrun);
        let (_, act) = ctx.sporadic(self.spec.task(), options, move |_: &Job, (): ()| {
            ep.serve_one();
        })?;
        let _ = self.endpoint.activator.set(act);
        Ok(())
    }

    fn stop(&self) {
        self.core.unpublish(self.endpoint.id);
        self.endpoint.close();
    }
}
