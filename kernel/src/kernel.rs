//! The kernel (the seed's `Kernel`, listing 2): the registry of kernel and user
//! services, the security module, the network manager and the executor, behind the
//! [`Runtime`](crate::Runtime).
//!
//! Inserting a service checks the caller's `admin` permission (on the service for a user
//! service, on the kernel for a kernel service), runs its `start` with a context through
//! which its tasks are admitted, and only then makes it visible. Removing it calls its
//! `stop`, then removes its tasks from the executor, which frees their capacity.
//! The registry is control-path state behind a mutex; the hot paths (RPC, events) keep
//! their own lock-free tables.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use rtpm_rt::exec::{Executor, TaskId};
use rtpm_rt::time::Clock;

use crate::error::{Error, Result};
use crate::id::{NodeId, ServiceId};
use crate::network::NetworkMgr;
use crate::security::{KernelSecurity, Permission};
use crate::service::{KernelContext, KernelService, Spawner, UserContext, UserService};
use crate::session::Session;

/// This node's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Its name.
    pub name: String,
    /// Its id (the overlay peer id).
    pub id: NodeId,
}

/// The kind of a service in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A user service.
    User,
    /// A kernel service.
    Kernel,
}

/// What the registry tells about a service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: ServiceId,
    /// User or kernel.
    pub kind: ServiceKind,
    /// Its tasks' ids in the executor.
    pub tasks: Vec<u64>,
}

enum Held {
    User(Arc<dyn UserService>),
    Kernel(Arc<dyn KernelService>),
}

impl Held {
    fn stop(&self) {
        match self {
            Held::User(s) => s.stop(),
            Held::Kernel(s) => s.stop(),
        }
    }
}

struct Entry {
    name: String,
    held: Held,
    any: Arc<dyn Any + Send + Sync>,
    tasks: Vec<TaskId>,
}

#[derive(Default)]
struct Registry {
    entries: BTreeMap<ServiceId, Entry>,
    /// Insertion order, for removal in reverse at shutdown.
    order: Vec<ServiceId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Registry and executor calls leave their state consistent between statements.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The kernel. See the [module documentation](self).
pub(crate) struct Kernel {
    pub(crate) node: NodeIdentity,
    pub(crate) security: KernelSecurity,
    pub(crate) networks: NetworkMgr,
    pub(crate) clock: Arc<dyn Clock>,
    executor: Mutex<Option<Executor>>,
    /// Why there is no executor, when there is none.
    no_executor: Option<String>,
    registry: Mutex<Registry>,
}

impl Kernel {
    pub(crate) fn new(
        node: NodeIdentity,
        security: KernelSecurity,
        clock: Arc<dyn Clock>,
        executor: std::result::Result<Executor, String>,
    ) -> Kernel {
        let (executor, no_executor) = match executor {
            Ok(e) => (Some(e), None),
            Err(why) => (None, Some(why)),
        };
        Kernel {
            node,
            security,
            networks: NetworkMgr::new(),
            clock,
            executor: Mutex::new(executor),
            no_executor,
            registry: Mutex::new(Registry::default()),
        }
    }

    /// Runs `f` on the executor; an error naming `service` and `task` when there is none.
    pub(crate) fn with_executor<T>(
        &self,
        service: &str,
        task: &str,
        f: impl FnOnce(&mut Executor) -> T,
    ) -> Result<T> {
        let mut guard = lock(&self.executor);
        match guard.as_mut() {
            Some(e) => Ok(f(e)),
            None => Err(Error::Invalid(format!(
                "service `{service}`, task `{task}`: this runtime has no executor ({}), so it cannot run real-time tasks",
                self.no_executor.as_deref().unwrap_or("it has stopped")
            ))),
        }
    }

    /// Whether the runtime has an executor (an RT core).
    pub(crate) fn has_executor(&self) -> bool {
        lock(&self.executor).is_some()
    }

    /// Whether a service of id `id` is present.
    pub(crate) fn contains(&self, id: ServiceId) -> bool {
        lock(&self.registry).entries.contains_key(&id)
    }

    fn refuse_present(&self, id: ServiceId, name: &str) -> Result<()> {
        if self.contains(id) {
            return Err(Error::AlreadyPresent {
                what: "service",
                name: name.to_string(),
                id: id.uuid(),
            });
        }
        Ok(())
    }

    /// Removes tasks spawned for a service or network that is not (or no longer) held.
    pub(crate) fn remove_task_ids(&self, tasks: &[TaskId]) {
        for id in tasks.iter().rev() {
            match self.with_executor("the kernel", "removal", |e| e.remove(*id)) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(task = id.get(), error = %e, "task removal failed"),
                Err(e) => tracing::warn!(task = id.get(), error = %e, "task removal failed"),
            }
        }
    }

    fn register(&self, id: ServiceId, entry: Entry) -> Result<()> {
        let mut reg = lock(&self.registry);
        if reg.entries.contains_key(&id) {
            let name = entry.name.clone();
            drop(reg);
            entry.held.stop();
            self.remove_task_ids(&entry.tasks);
            return Err(Error::AlreadyPresent {
                what: "service",
                name,
                id: id.uuid(),
            });
        }
        reg.entries.insert(id, entry);
        reg.order.push(id);
        Ok(())
    }

    /// Inserts a user service for `session` (admin on the service).
    pub(crate) fn insert_user_service<S: UserService>(
        self: &Arc<Self>,
        session: &Session,
        service: S,
    ) -> Result<Arc<S>> {
        let id = service.id();
        self.security
            .check(session, id, Permission::Admin, service.name())?;
        self.insert_user(service)
    }

    pub(crate) fn insert_user<S: UserService>(self: &Arc<Self>, mut service: S) -> Result<Arc<S>> {
        let id = service.id();
        let name = service.name().to_string();
        self.refuse_present(id, &name)?;
        let armed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let started = {
            let mut ctx = UserContext {
                spawner: Spawner {
                    kernel: self,
                    service: id,
                    name: &name,
                    tasks: &mut tasks,
                    armed: &armed,
                    privileged: false,
                },
            };
            service.start(&mut ctx)
        };
        if let Err(e) = started {
            self.remove_task_ids(&tasks);
            return Err(e);
        }
        let arc = Arc::new(service);
        self.register(
            id,
            Entry {
                name: name.clone(),
                held: Held::User(Arc::clone(&arc) as Arc<dyn UserService>),
                any: Arc::clone(&arc) as Arc<dyn Any + Send + Sync>,
                tasks,
            },
        )?;
        armed.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(service = %name, %id, "user service inserted");
        Ok(arc)
    }

    /// Inserts a kernel service for `session` (admin on the kernel).
    pub(crate) fn insert_kernel_service<S: KernelService>(
        self: &Arc<Self>,
        session: &Session,
        service: S,
    ) -> Result<Arc<S>> {
        self.security.check(
            session,
            ServiceId::kernel(),
            Permission::Admin,
            "the kernel",
        )?;
        self.insert_kernel(service)
    }

    pub(crate) fn insert_kernel<S: KernelService>(
        self: &Arc<Self>,
        mut service: S,
    ) -> Result<Arc<S>> {
        let id = service.id();
        let name = service.name().to_string();
        self.refuse_present(id, &name)?;
        let armed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let started = {
            let mut ctx = KernelContext {
                spawner: Spawner {
                    kernel: self,
                    service: id,
                    name: &name,
                    tasks: &mut tasks,
                    armed: &armed,
                    privileged: true,
                },
            };
            service.start(&mut ctx)
        };
        if let Err(e) = started {
            self.remove_task_ids(&tasks);
            return Err(e);
        }
        let arc = Arc::new(service);
        self.register(
            id,
            Entry {
                name: name.clone(),
                held: Held::Kernel(Arc::clone(&arc) as Arc<dyn KernelService>),
                any: Arc::clone(&arc) as Arc<dyn Any + Send + Sync>,
                tasks,
            },
        )?;
        armed.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(service = %name, %id, "kernel service inserted");
        Ok(arc)
    }

    /// Removes service `id` for `session`: admin on the service (user) or on the kernel
    /// (kernel service). `kernel` says which kind the caller means.
    pub(crate) fn remove_service(
        &self,
        session: &Session,
        id: ServiceId,
        kernel: bool,
    ) -> Result<()> {
        let (name, kind) = {
            let reg = lock(&self.registry);
            let e = reg.entries.get(&id).ok_or(Error::ServiceNotFound { id })?;
            let kind = matches!(e.held, Held::Kernel(_));
            (e.name.clone(), kind)
        };
        if kind != kernel {
            return Err(Error::WrongType {
                name,
                expected: if kernel {
                    "kernel service"
                } else {
                    "user service"
                },
            });
        }
        if kind {
            self.security.check(
                session,
                ServiceId::kernel(),
                Permission::Admin,
                "the kernel",
            )?;
        } else {
            self.security.check(session, id, Permission::Admin, &name)?;
        }
        self.remove_unchecked(id)
    }

    /// Removes service `id` with no permission check (shutdown, rollback).
    pub(crate) fn remove_unchecked(&self, id: ServiceId) -> Result<()> {
        let entry = {
            let mut reg = lock(&self.registry);
            reg.order.retain(|x| *x != id);
            reg.entries
                .remove(&id)
                .ok_or(Error::ServiceNotFound { id })?
        };
        entry.held.stop();
        self.remove_task_ids(&entry.tasks);
        tracing::info!(service = %entry.name, %id, "service removed");
        Ok(())
    }

    /// Service `id` as an `S`, for an open session.
    pub(crate) fn get<S: Send + Sync + 'static>(
        &self,
        session: &Session,
        id: ServiceId,
        kernel: bool,
        expected: &'static str,
    ) -> Result<Arc<S>> {
        self.security.active(session)?;
        let (name, any, kind) = {
            let reg = lock(&self.registry);
            let e = reg.entries.get(&id).ok_or(Error::ServiceNotFound { id })?;
            (
                e.name.clone(),
                Arc::clone(&e.any),
                matches!(e.held, Held::Kernel(_)),
            )
        };
        if kind != kernel {
            return Err(Error::WrongType { name, expected });
        }
        any.downcast::<S>()
            .map_err(|_| Error::WrongType { name, expected })
    }

    /// What the registry holds, in insertion order.
    pub(crate) fn services(&self) -> Vec<ServiceInfo> {
        let reg = lock(&self.registry);
        reg.order
            .iter()
            .filter_map(|id| {
                let e = reg.entries.get(id)?;
                Some(ServiceInfo {
                    name: e.name.clone(),
                    id: *id,
                    kind: match e.held {
                        Held::User(_) => ServiceKind::User,
                        Held::Kernel(_) => ServiceKind::Kernel,
                    },
                    tasks: e.tasks.iter().map(|t| t.get()).collect(),
                })
            })
            .collect()
    }

    /// The name of service `id`, if present.
    pub(crate) fn service_name(&self, id: ServiceId) -> Option<String> {
        lock(&self.registry)
            .entries
            .get(&id)
            .map(|e| e.name.clone())
    }

    /// Stops everything: networks leave, services are removed in reverse order of
    /// insertion, the executor stops. Returns the executor's final report.
    pub(crate) fn shutdown(&self) -> Option<rtpm_rt::exec::ExecReport> {
        self.networks.remove_all(self);
        loop {
            let last = lock(&self.registry).order.last().copied();
            let Some(id) = last else { break };
            if self.remove_unchecked(id).is_err() {
                lock(&self.registry).order.retain(|x| *x != id);
            }
        }
        let exec = lock(&self.executor).take();
        exec.and_then(|e| e.stop().ok())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::security::{LoginPolicy, UsersFile};
    use rtpm_rt::time::MonotonicClock;

    /// A kernel with no executor and no users, for bookkeeping tests.
    pub(crate) fn bare_kernel() -> Kernel {
        let security = KernelSecurity::new(
            0,
            UsersFile::new(),
            None,
            LoginPolicy::default(),
            Arc::new(MonotonicClock),
        );
        Kernel::new(
            NodeIdentity {
                name: "test".into(),
                id: NodeId::from_name("test"),
            },
            security,
            Arc::new(MonotonicClock),
            Err("unit test".into()),
        )
    }
}
