//! The RPC kernel service itself (listings 6 and 7).

use std::sync::{Arc, OnceLock};

use rtpm_rt::time::Nanos;

use super::client::{CallOptions, RpcClient};
use super::codec::{Codec, Postcard};
use super::core::{RpcConfig, RpcCore};
use super::remote::RemoteRpc;
use super::request::OpId;
use super::server::{RpcServer, RpcUserService, ServerSpec};
use crate::error::{Error, Result};
use crate::id::ServiceId;
use crate::security::Permission;
use crate::service::{KernelContext, KernelHandle, KernelService, Service};
use crate::session::Session;

/// A request in the seed's style (listing 9's `RPCRequest`): service, operation,
/// encoded arguments, deadline and QoS class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcRequest {
    /// The service.
    pub service: ServiceId,
    /// The operation.
    pub operation: OpId,
    /// The encoded arguments.
    pub payload: Vec<u8>,
    /// Deadline and QoS class.
    pub options: CallOptions,
}

impl RpcRequest {
    /// Operation `operation` of `service` with no arguments and the default options.
    pub fn new(service: ServiceId, operation: OpId) -> RpcRequest {
        RpcRequest {
            service,
            operation,
            payload: Vec::new(),
            options: CallOptions::default(),
        }
    }
}

/// The RPC kernel service. See the [module documentation](super).
#[derive(Debug)]
pub struct RpcService {
    core: Arc<RpcCore>,
    kernel: OnceLock<KernelHandle>,
    /// Follows the runtime's networks (the network manager holds it weakly).
    remote: OnceLock<Arc<RemoteRpc>>,
}

impl Default for RpcService {
    fn default() -> RpcService {
        RpcService::new()
    }
}

impl RpcService {
    /// Its service name.
    pub const NAME: &'static str = "rtpm.rpc";

    /// An RPC service with the default sizing.
    pub fn new() -> RpcService {
        RpcService::with_config(RpcConfig::default())
    }

    /// An RPC service sized by `config`.
    pub fn with_config(config: RpcConfig) -> RpcService {
        RpcService {
            core: Arc::new(RpcCore::new(config)),
            kernel: OnceLock::new(),
            remote: OnceLock::new(),
        }
    }

    /// Its id (listing 9's `RPCService::getUUID()`).
    pub fn uuid() -> ServiceId {
        ServiceId::from_name(RpcService::NAME)
    }

    /// How long a client's resolution waits for each network's discovery to answer.
    fn lookup_timeout(&self) -> Nanos {
        self.core.config.lookup
    }

    fn kernel(&self) -> Result<&KernelHandle> {
        self.kernel
            .get()
            .ok_or_else(|| Error::Invalid("the RPC service is not inserted in a runtime".into()))
    }

    /// Registers `server` (listing 9's `registerRPCServer`): it becomes a user service
    /// whose request task is admitted with `spec`; refused with admission's reason when
    /// it does not fit. Needs `admin` on the server's id.
    pub fn register_server<S: RpcServer>(
        &self,
        session: &Session,
        server: S,
        spec: ServerSpec,
    ) -> Result<Arc<RpcUserService<S>>> {
        let svc = RpcUserService::new(server, spec, Arc::clone(&self.core));
        let svc = self.kernel()?.insert_user_service(session, svc)?;
        self.core.publish(Arc::clone(&svc.endpoint));
        Ok(svc)
    }

    /// Unregisters server `id`: it stops taking requests (waiting callers are told),
    /// and its task is removed. Needs `admin` on it.
    pub fn unregister_server(&self, session: &Session, id: ServiceId) -> Result<()> {
        self.kernel()?.remove_user_service(session, id)
    }

    /// The registered server `id`, as its type.
    pub fn server<S: RpcServer>(
        &self,
        session: &Session,
        id: ServiceId,
    ) -> Result<Arc<RpcUserService<S>>> {
        let k = self.kernel()?.get()?;
        k.get::<RpcUserService<S>>(session, id, false, "RPC server of the type asked for")
    }

    /// A postcard client of service `id` for `session`: checks `execute` on it, then
    /// finds it here (local fast path) or on a network.
    pub fn client(&self, session: &Session, id: ServiceId) -> Result<RpcClient<Postcard>> {
        self.client_with::<Postcard>(session, id)
    }

    /// A client of service `id` encoding with `C`.
    pub fn client_with<C: Codec>(&self, session: &Session, id: ServiceId) -> Result<RpcClient<C>> {
        self.resolve(session, id, true)
    }

    fn resolve<C: Codec>(
        &self,
        session: &Session,
        id: ServiceId,
        measure: bool,
    ) -> Result<RpcClient<C>> {
        let kernel = self.kernel()?;
        let api = kernel.api()?;
        let k = kernel.get()?;
        let name = k.service_name(id).unwrap_or_else(|| id.to_string());
        api.check(session, id, Permission::Execute, &name)?;
        if let Some(ep) = self.core.local(id) {
            return RpcClient::new(Arc::clone(&self.core), api, session.clone(), ep, measure);
        }
        match k.networks.find_uuid(id, self.lookup_timeout()) {
            Some((_, node)) if node == k.node.id => Err(Error::ServiceNotAvailable {
                service: name,
                reason: "the network's discovery names this node, but no server of that id is registered here any more (it was unregistered; its lease has not run out yet)".into(),
            }),
            Some((net, node)) => {
                RpcClient::remote(Arc::clone(&self.core), api, session.clone(), net, node, id, name, measure)
            }
            None => Err(Error::ServiceNotFound { id }),
        }
    }

    /// One-way invocation (listing 7's `oneWayInvocation`). Resolves the service on every
    /// call; keep an [`RpcClient`] for repeated calls.
    pub fn one_way_invocation(&self, session: &Session, request: &RpcRequest) -> Result<()> {
        let mut c: RpcClient<Postcard> = self.resolve(session, request.service, false)?;
        c.one_way_bytes(request.operation, &request.payload, request.options)
    }

    /// Two-way invocation: the reply's payload. Resolves the service on every call.
    pub fn two_way_invocation(&self, session: &Session, request: &RpcRequest) -> Result<Vec<u8>> {
        let mut c: RpcClient<Postcard> = self.resolve(session, request.service, false)?;
        c.two_way_raw(request.operation, &request.payload, request.options)
            .map(<[u8]>::to_vec)
    }
}

impl Service for RpcService {
    fn name(&self) -> &str {
        RpcService::NAME
    }
}

impl KernelService for RpcService {
    fn start(&mut self, ctx: &mut KernelContext<'_>) -> Result<()> {
        let kernel = ctx.kernel();
        let _ = self.kernel.set(kernel.clone());
        let _ = self.core.kernel.set(kernel.clone());
        let remote = Arc::new(RemoteRpc {
            core: Arc::clone(&self.core),
            kernel: kernel.clone(),
        });
        let weak = Arc::downgrade(&remote);
        let _ = self.remote.set(remote);
        kernel.with_network_mgr(|m| m.watch(weak))?;
        Ok(())
    }

    fn stop(&self) {
        self.core.close();
    }
}
