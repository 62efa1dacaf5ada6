//! The RPC kernel service, after the seed's listings 6–9.
//!
//! **Servers** ([`RpcServer`], listing 8) number their operations and register with
//! [`RpcService::register_server`], declaring their request task ([`ServerSpec`]): a
//! sporadic task, admitted like any other, whose jobs run the requests. Registration
//! makes the server a user service of the runtime; unregistering removes it and frees
//! its capacity.
//!
//! **Clients** ([`RpcClient`], listing 9) are resolved once per service: the permission
//! to execute is checked (listing 7: `NotAllowed` first), then the service is looked up
//! locally (the fast path: no encoding beyond the arguments, no network), then on the
//! networks through discovery. They invoke one-way or two-way. Every request carries
//! the caller's identity, its deadline and its QoS class; a two-way call waits until its
//! deadline and no longer, and a server does not start a request whose deadline has
//! passed. Errors: [`Error::NotAllowed`](crate::Error::NotAllowed),
//! [`Error::ServiceNotFound`](crate::Error::ServiceNotFound),
//! [`Error::ServiceNotAvailable`](crate::Error::ServiceNotAvailable),
//! [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded),
//! [`Error::OperationNotImplemented`](crate::Error::OperationNotImplemented).
//!
//! **Payloads** are encoded with a pluggable [`Codec`]; the default is [`Postcard`].
//!
//! **Hot path.** Payload buffers and reply cells are allocated when the service starts
//! and move by value through lock-free queues; the endpoint table is read without a lock;
//! a permission decision is cached against the security module's generation. A request
//! allocates nothing and takes no lock.
//!
//! **Remote requests.** A service that is not in this runtime is looked up on its
//! networks ([`NetworkMgr::find_uuid`](crate::network::NetworkMgr::find_uuid): the
//! discovery of each overlay); the client then sends each request to the serving node
//! over that network, on the request's QoS class, with the same API as a local one
//! ([`RpcClient::is_remote`] tells them apart). The serving node checks the caller's
//! `execute` permission there too, runs the request as a sporadic job of the server's
//! request task and sends the reply back on the same class; a two-way call still waits
//! until its deadline and no longer. Every registered server is published on every
//! network of the runtime, including networks inserted later. See `remote` for the
//! wire format.

mod client;
mod codec;
mod core;
mod remote;
mod reply;
mod request;
mod server;
mod service;

pub use client::{CallOptions, RpcClient};
pub use codec::{Codec, Postcard};
pub use core::RpcConfig;
pub use request::{Caller, Header, OpError, OpId, ReplyBuf, Request};
pub use server::{LocalCalls, RpcServer, RpcUserService, ServerSpec, ServerStats};
pub use service::{RpcRequest, RpcService};
