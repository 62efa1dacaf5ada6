//! The network manager (listing 4): inserts, removes and finds networks at run time.
//!
//! Lookups ([`NetworkMgr::get`], [`NetworkMgr::find_uuid`], [`NetworkMgr::networks`])
//! read a copy-on-write snapshot without taking a lock; insertion and removal take the
//! manager's mutex. Removing a network makes it leave its overlay cleanly first, then
//! removes its tasks from the executor.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use rtpm_rt::exec::TaskId;
use rtpm_rt::time::Nanos;

use super::{Network, NetworkPolicy, NetworkSpec, NetworkStart};
use crate::error::{Error, Result};
use crate::id::{NetworkId, NodeId, ServiceId};
use crate::kernel::Kernel;
use crate::service::Spawner;

/// A network by id or by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkRef<'a> {
    /// By id.
    Id(NetworkId),
    /// By name.
    Name(&'a str),
}

impl From<NetworkId> for NetworkRef<'_> {
    fn from(id: NetworkId) -> Self {
        NetworkRef::Id(id)
    }
}

impl<'a> From<&'a str> for NetworkRef<'a> {
    fn from(name: &'a str) -> Self {
        NetworkRef::Name(name)
    }
}

/// Told about every network the manager holds, now and later: how kernel services that
/// serve ports on every network (RPC, events) follow networks inserted at run time.
pub(crate) trait NetworkWatch: Send + Sync {
    /// `net` was inserted (or was there when the watch began).
    fn inserted(&self, net: &Arc<dyn Network>);
}

struct Held {
    net: Arc<dyn Network>,
    tasks: Vec<TaskId>,
}

/// The network manager (listing 4): see [`crate::network`].
pub struct NetworkMgr {
    held: Mutex<Vec<Held>>,
    snapshot: ArcSwap<Vec<Arc<dyn Network>>>,
    policy: Mutex<NetworkPolicy>,
    watchers: Mutex<Vec<Weak<dyn NetworkWatch>>>,
}

impl std::fmt::Debug for NetworkMgr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .networks()
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        f.debug_struct("NetworkMgr")
            .field("networks", &names)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NetworkMgr {
    pub(crate) fn new() -> NetworkMgr {
        NetworkMgr {
            held: Mutex::new(Vec::new()),
            snapshot: ArcSwap::from_pointee(Vec::new()),
            policy: Mutex::new(NetworkPolicy::default()),
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// Tells `w` about every network held now and every one inserted later (until `w`
    /// is dropped).
    pub(crate) fn watch(&self, w: Weak<dyn NetworkWatch>) {
        let held = lock(&self.held);
        if let Some(s) = w.upgrade() {
            for h in held.iter() {
                s.inserted(&h.net);
            }
        }
        let mut ws = lock(&self.watchers);
        ws.retain(|x| x.strong_count() > 0);
        ws.push(w);
    }

    fn publish(&self, held: &[Held]) {
        self.snapshot
            .store(Arc::new(held.iter().map(|h| Arc::clone(&h.net)).collect()));
    }

    /// The policy new networks' security modules get.
    pub fn policy(&self) -> NetworkPolicy {
        lock(&self.policy).clone()
    }

    /// Sets the policy for new networks and applies it to the running ones.
    pub fn set_policy(&self, policy: NetworkPolicy) -> Result<()> {
        for n in self.networks().iter() {
            n.security().apply(&policy)?;
        }
        *lock(&self.policy) = policy;
        Ok(())
    }

    /// Starts the network `spec` describes and holds it. Refused if a network of that name
    /// is already held; on any error, its admitted tasks are removed again.
    pub(crate) fn insert(
        &self,
        kernel: &Arc<Kernel>,
        spec: Box<dyn NetworkSpec>,
    ) -> Result<NetworkId> {
        let name = spec.name().to_string();
        let id = NetworkId::from_name(&name);
        let mut held = lock(&self.held);
        if held.iter().any(|h| h.net.id() == id) {
            return Err(Error::AlreadyPresent {
                what: "network",
                name,
                id: id.0,
            });
        }
        let armed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let started = {
            let mut start = NetworkStart {
                spawner: Spawner {
                    kernel,
                    service: ServiceId(id.0),
                    name: &name,
                    tasks: &mut tasks,
                    armed: &armed,
                    privileged: true,
                },
                policy: self.policy(),
            };
            spec.start(&mut start)
        };
        let net = match started {
            Ok(n) if n.id() == id => n,
            Ok(n) => {
                let _ = n.leave();
                kernel.remove_task_ids(&tasks);
                return Err(Error::Network {
                    network: name,
                    message: format!(
                        "it started with id {} instead of {id} (v5 of its name)",
                        n.id()
                    ),
                });
            }
            Err(e) => {
                kernel.remove_task_ids(&tasks);
                return Err(e);
            }
        };
        armed.store(true, std::sync::atomic::Ordering::Release);
        let watchers: Vec<_> = lock(&self.watchers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for w in &watchers {
            w.inserted(&net);
        }
        held.push(Held { net, tasks });
        self.publish(&held);
        tracing::info!(network = %name, %id, "network inserted");
        Ok(id)
    }

    /// Makes network `id` leave its overlay, then removes its tasks.
    pub(crate) fn remove(&self, kernel: &Kernel, id: NetworkId) -> Result<()> {
        let h = {
            let mut held = lock(&self.held);
            let i = held
                .iter()
                .position(|h| h.net.id() == id)
                .ok_or_else(|| Error::NetworkNotFound(id.to_string()))?;
            let h = held.remove(i);
            self.publish(&held);
            h
        };
        let left = h.net.leave();
        kernel.remove_task_ids(&h.tasks);
        tracing::info!(network = h.net.name(), %id, "network removed");
        left
    }

    /// Every network leaves (shutdown).
    pub(crate) fn remove_all(&self, kernel: &Kernel) {
        let all: Vec<NetworkId> = self.networks().iter().map(|n| n.id()).collect();
        for id in all.into_iter().rev() {
            if let Err(e) = self.remove(kernel, id) {
                tracing::warn!(network = %id, error = %e, "network did not leave cleanly");
            }
        }
    }

    /// The networks, in insertion order.
    pub fn networks(&self) -> Arc<Vec<Arc<dyn Network>>> {
        self.snapshot.load_full()
    }

    /// Network `which`.
    pub fn get<'a>(&self, which: impl Into<NetworkRef<'a>>) -> Result<Arc<dyn Network>> {
        let which = which.into();
        let nets = self.snapshot.load();
        nets.iter()
            .find(|n| match which {
                NetworkRef::Id(id) => n.id() == id,
                NetworkRef::Name(name) => n.name() == name,
            })
            .cloned()
            .ok_or_else(|| {
                Error::NetworkNotFound(match which {
                    NetworkRef::Id(id) => id.to_string(),
                    NetworkRef::Name(n) => n.to_string(),
                })
            })
    }

    /// Searches every active network for `id` (listing 4's `findUUID`): first what each
    /// already knows, then a lookup on each in turn, each bounded by `timeout`. The
    /// network and the node that serves it, or `None` when no network finds it.
    pub fn find_uuid(&self, id: ServiceId, timeout: Nanos) -> Option<(Arc<dyn Network>, NodeId)> {
        let nets = self.networks();
        for n in nets.iter() {
            if let Some(node) = n.discovery().cached(id) {
                return Some((Arc::clone(n), node));
            }
        }
        for n in nets.iter() {
            if let Ok(Some(node)) = n.discovery().lookup(id, timeout) {
                return Some((Arc::clone(n), node));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    //! The manager's bookkeeping against a minimal in-memory `Network` written for these
    //! tests only (it is not an overlay, and nothing outside this module uses it).

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::network::{
        CellView, Discovery, Inbox, Membership, Messaging, NetworkSecurity, PeerRole, Route,
        Routing, SecurityCounters,
    };
    use crate::qos::QosClass;

    struct Table {
        id: NetworkId,
        name: String,
        owners: HashMap<ServiceId, NodeId>,
        left: Arc<AtomicUsize>,
    }

    impl Routing for Table {
        fn route(&self, _: NodeId) -> Route {
            Route::Unknown
        }
    }
    impl Messaging for Table {
        fn send(&self, _: NodeId, _: QosClass, _: ServiceId, _: &[u8]) -> Result<()> {
            Ok(())
        }
        fn attach(&self, _: ServiceId, _: Arc<dyn Inbox>) -> Result<()> {
            Ok(())
        }
        fn detach(&self, _: ServiceId) {}
    }
    impl Membership for Table {
        fn me(&self) -> NodeId {
            NodeId::from_name("me")
        }
        fn role(&self) -> PeerRole {
            PeerRole::Peer
        }
        fn cell(&self) -> Option<CellView> {
            None
        }
    }
    impl Discovery for Table {
        fn publish(&self, _: ServiceId, _: QosClass) -> Result<()> {
            Ok(())
        }
        fn unpublish(&self, _: ServiceId) -> Result<()> {
            Ok(())
        }
        fn lookup(&self, key: ServiceId, _: Nanos) -> Result<Option<NodeId>> {
            Ok(self.owners.get(&key).copied())
        }
        fn cached(&self, _: ServiceId) -> Option<NodeId> {
            None
        }
    }
    impl NetworkSecurity for Table {
        fn apply(&self, _: &NetworkPolicy) -> Result<()> {
            Ok(())
        }
        fn counters(&self) -> SecurityCounters {
            SecurityCounters::default()
        }
    }
    impl Network for Table {
        fn id(&self) -> NetworkId {
            self.id
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn routing(&self) -> &dyn Routing {
            self
        }
        fn messaging(&self) -> &dyn Messaging {
            self
        }
        fn membership(&self) -> &dyn Membership {
            self
        }
        fn discovery(&self) -> &dyn Discovery {
            self
        }
        fn security(&self) -> &dyn NetworkSecurity {
            self
        }
        fn leave(&self) -> Result<()> {
            self.left.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    struct Spec(&'static str, Vec<(ServiceId, NodeId)>, Arc<AtomicUsize>);
    impl NetworkSpec for Spec {
        fn name(&self) -> &str {
            self.0
        }
        fn start(self: Box<Self>, _: &mut NetworkStart<'_>) -> Result<Arc<dyn Network>> {
            Ok(Arc::new(Table {
                id: NetworkId::from_name(self.0),
                name: self.0.to_string(),
                owners: self.1.into_iter().collect(),
                left: self.2,
            }))
        }
    }

    #[test]
    fn networks_are_inserted_found_and_removed_cleanly() {
        let kernel = Arc::new(crate::kernel::tests::bare_kernel());
        let mgr = &kernel.networks;
        let left = Arc::new(AtomicUsize::new(0));
        let svc = ServiceId::from_name("far.service");
        let owner = NodeId::from_name("far");
        let a = mgr
            .insert(&kernel, Box::new(Spec("a", vec![], Arc::clone(&left))))
            .unwrap();
        let b = mgr
            .insert(
                &kernel,
                Box::new(Spec("b", vec![(svc, owner)], Arc::clone(&left))),
            )
            .unwrap();
        assert!(matches!(
            mgr.insert(&kernel, Box::new(Spec("a", vec![], Arc::clone(&left)))),
            Err(Error::AlreadyPresent {
                what: "network",
                ..
            })
        ));
        assert_eq!(mgr.get(a).unwrap().name(), "a");
        assert_eq!(mgr.get("b").unwrap().id(), b);
        let (net, node) = mgr.find_uuid(svc, Nanos::ms(1)).unwrap();
        assert_eq!((net.id(), node), (b, owner));
        assert!(
            mgr.find_uuid(ServiceId::from_name("nowhere"), Nanos::ms(1))
                .is_none()
        );
        mgr.remove(&kernel, b).unwrap();
        assert_eq!(
            left.load(Ordering::SeqCst),
            1,
            "removal must leave the overlay"
        );
        assert!(mgr.find_uuid(svc, Nanos::ms(1)).is_none());
        assert!(matches!(mgr.get("b"), Err(Error::NetworkNotFound(_))));
        assert!(mgr.remove(&kernel, b).is_err());
        mgr.remove_all(&kernel);
        assert_eq!(left.load(Ordering::SeqCst), 2);
        assert!(mgr.networks().is_empty());
    }
}
