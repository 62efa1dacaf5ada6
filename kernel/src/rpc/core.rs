//! What the RPC service and its servers share: the endpoint table, read without a lock
//! on every call, and the preallocated buffers and reply cells.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use arc_swap::ArcSwap;
use rtpm_rt::time::Nanos;

use super::remote;
use super::reply::{BufferPool, ReplyPool};
use super::server::Endpoint;
use crate::id::ServiceId;
use crate::service::KernelHandle;

/// How the RPC service is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcConfig {
    /// Payload buffers shared by all requests in flight.
    pub buffers: usize,
    /// Each buffer's capacity: the largest argument or reply payload.
    pub max_payload: usize,
    /// Two-way calls in flight at most.
    pub reply_cells: usize,
    /// How long a two-way caller spins for its reply before it sleeps (on a VM a wake-up
    /// costs tens of microseconds; spinning briefly saves it for fast servers).
    pub spin: Nanos,
    /// How long resolving a client waits for each network's discovery to answer before
    /// the service is reported as not found.
    pub lookup: Nanos,
}

impl Default for RpcConfig {
    /// 256 buffers of 4 KiB, 256 reply cells, 20 µs of spinning, 500 ms of lookup.
    fn default() -> RpcConfig {
        RpcConfig {
            buffers: 256,
            max_payload: 4096,
            reply_cells: 256,
            spin: Nanos::us(20),
            lookup: Nanos::ms(500),
        }
    }
}

/// Shared state of one RPC service.
#[derive(Debug)]
pub(crate) struct RpcCore {
    pub(crate) config: RpcConfig,
    pub(crate) buffers: Arc<BufferPool>,
    pub(crate) replies: ReplyPool,
    endpoints: ArcSwap<HashMap<ServiceId, Arc<Endpoint>>>,
    edit: Mutex<()>,
    pub(crate) open: AtomicBool,
    /// The runtime, once the service is inserted: servers are served on its networks.
    pub(crate) kernel: OnceLock<KernelHandle>,
}

impl RpcCore {
    pub(crate) fn new(config: RpcConfig) -> RpcCore {
        RpcCore {
            config,
            buffers: Arc::new(BufferPool::new(config.buffers, config.max_payload)),
            replies: ReplyPool::new(config.reply_cells),
            endpoints: ArcSwap::from_pointee(HashMap::new()),
            edit: Mutex::new(()),
            open: AtomicBool::new(true),
            kernel: OnceLock::new(),
        }
    }

    fn edit(&self) -> MutexGuard<'_, ()> {
        self.edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The runtime's networks (none before insertion or after the runtime stopped).
    fn networks(&self) -> Vec<Arc<dyn crate::network::Network>> {
        self.kernel
            .get()
            .and_then(|k| k.get().ok())
            .map(|k| k.networks.networks().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes `ep` reachable: here, and on every network of the runtime.
    pub(crate) fn publish(&self, ep: Arc<Endpoint>) {
        let _g = self.edit();
        let mut map = HashMap::clone(&self.endpoints.load());
        map.insert(ep.id, Arc::clone(&ep));
        self.endpoints.store(Arc::new(map));
        if let Some(k) = self.kernel.get() {
            for net in self.networks() {
                remote::serve_on(&net, &ep, k);
            }
        }
    }

    /// Makes endpoint `id` unreachable.
    pub(crate) fn unpublish(&self, id: ServiceId) {
        let _g = self.edit();
        let mut map = HashMap::clone(&self.endpoints.load());
        map.remove(&id);
        self.endpoints.store(Arc::new(map));
        for net in self.networks() {
            remote::withdraw_from(&net, id);
        }
    }

    /// The local endpoints.
    pub(crate) fn endpoints(&self) -> Arc<HashMap<ServiceId, Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// The local endpoint of `id` (lock-free).
    #[inline]
    pub(crate) fn local(&self, id: ServiceId) -> Option<Arc<Endpoint>> {
        self.endpoints.load().get(&id).cloned()
    }

    /// Closes every endpoint (the RPC service is being removed).
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
        let all = self.endpoints.swap(Arc::new(HashMap::new()));
        let nets = self.networks();
        for ep in all.values() {
            for net in &nets {
                remote::withdraw_from(net, ep.id);
            }
            ep.close();
        }
        for net in &nets {
            net.messaging().detach(remote::reply_port());
        }
    }
}
