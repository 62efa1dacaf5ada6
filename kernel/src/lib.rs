//! # rtpm: the runtime that latency-critical processes embed
//!
//! After the seed paper's `RTPm` and `Kernel` classes, in idiomatic Rust: a
//! [`Runtime`] entered with a user and a passphrase, holding kernel and user services, a
//! security module and a network manager, with typed errors instead of exceptions.
//!
//! **Runtime.** [`Runtime::new`] (or [`Runtime::builder`]) validates the node's
//! configuration ([`config`]: `node.toml`, the per-core files, the users file; the
//! embedded default when there is none), starts the real-time partition's executor
//! ([`rt::exec`]) and the configured kernel services (RPC and events by default).
//! [`Runtime::login`] checks a passphrase against its argon2id hash and returns a
//! [`Session`]; every call that touches a service takes one and checks it.
//!
//! **Security** ([`security`]). Users and their grants come from the users file (argon2id
//! hashes only). Permissions are per (user, service id): execute, publish, subscribe,
//! admin. Failed logins are counted per user and throttled with an exponential back-off.
//!
//! **Services** ([`service`]). Every service is named and identified by a UUID v5 of its
//! name ([`id`]). Inserting one runs its `start`, in which it spawns its periodic and
//! sporadic tasks; each goes through admission on the executor, and a service whose tasks
//! do not fit is refused with admission's reason, leaving nothing behind. Removing it
//! removes its tasks and frees their capacity. **Kernel services** get a privileged
//! context (the executor's accounting, the network manager, the security module, pinning
//! and priorities); **user services** get the user API only. The types say which.
//!
//! **RPC** ([`rpc`]). The RPC kernel service: servers register numbered operations and
//! run each request as a sporadic job of their request task; clients invoke one-way or
//! two-way with a deadline and a QoS class; the local fast path skips the network, and a
//! service of another node is found through discovery and called over the overlay with
//! the same client API.
//!
//! **Events** ([`event`]). A user service for publish/subscribe on named topics, with a
//! DDS-style DEADLINE and liveliness, checked by an admitted periodic monitor; topics
//! reach across nodes through discovery and the overlay, on the topic's QoS class.
//!
//! **Networks** ([`network`]). The [`network::Network`] trait is the five P3 modules an
//! overlay provides; the [`network::NetworkMgr`] inserts, removes and finds networks at
//! run time. [`network::OverlaySpec`] starts the P3 overlay's driver as one
//! ([`network::overlay`]: ports are service ids carried in each message's first 16 bytes),
//! and the runtime starts one per `[[overlay]]` of `node.toml`. A running node answers
//! `rtpm status` on its [`control`] socket.
//!
//! **Hot path.** RPC requests and event samples move through preallocated buffers and
//! lock-free queues; the tables they consult are read without a lock; permission
//! decisions are cached against a generation number. Nothing there allocates or locks.
//!
//! ```no_run
//! use rtpm::rpc::{CallOptions, OpError, ReplyBuf, Request, RpcServer, ServerSpec};
//! use rtpm::{Permissions, Runtime, ServiceId};
//! use rtpm::rt::time::Nanos;
//!
//! struct Ping;
//! impl RpcServer for Ping {
//!     fn name(&self) -> &str { "example.ping" }
//!     fn invoke(&self, req: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
//!         match req.operation() {
//!             1 => reply.encode(&"pong"),
//!             _ => Err(OpError::NotImplemented),
//!         }
//!     }
//! }
//!
//! # fn main() -> rtpm::Result<()> {
//! let runtime = Runtime::builder().user("alice", "s3cret", &[("*", Permissions::ALL)]).build()?;
//! let session = runtime.login("alice", "s3cret")?;
//! let rpc = runtime.rpc(&session)?;
//! rpc.register_server(&session, Ping, ServerSpec::new(Nanos::ms(1), Nanos::us(100)))?;
//! let mut client = rpc.client(&session, ServiceId::from_name("example.ping"))?;
//! let answer: String = client.two_way(1, &(), CallOptions::within(Nanos::ms(10)))?;
//! assert_eq!(answer, "pong");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod error;
pub mod event;
pub mod id;
mod kernel;
pub mod network;
pub mod qos;
pub mod rpc;
mod runtime;
pub mod security;
pub mod service;
mod session;

pub use rtpm_net as net;
pub use rtpm_overlay as overlay;
pub use rtpm_rt as rt;

pub use error::{Error, Result};
pub use id::{NetworkId, NodeId, ServiceId};
pub use kernel::{NodeIdentity, ServiceInfo, ServiceKind};
pub use qos::QosClass;
pub use runtime::{Runtime, RuntimeBuilder};
pub use security::{KernelSecurity, LoginPolicy, Permission, Permissions};
pub use service::{
    KernelContext, KernelHandle, KernelService, Service, UserApi, UserContext, UserService,
};
pub use session::Session;

pub use rtpm_rt::exec::{Activator, Job, OverrunPolicy, TaskId, TaskOptions, TaskSpec};
pub use rtpm_rt::time::{Clock, Instant, MonotonicClock, Nanos, SimClock};
