//! Services: what the kernel holds, and what each kind may touch.
//!
//! A service has a name and a UUID (v5 from the name), and declares its real-time tasks
//! when it is inserted: [`UserService::start`] and [`KernelService::start`] receive a
//! context through which they spawn their periodic and sporadic tasks. Each task goes
//! through admission on the runtime's executor; if one is refused, the tasks already
//! spawned are removed and the insertion fails with admission's reason. No task body of
//! the service runs before every one of its tasks is admitted.
//!
//! The two kinds differ in what their context gives them, and the types enforce it:
//! - a **user service** gets a [`UserContext`]: its own tasks (on any RT core admission
//!   picks, at the priority admission assigns) and the [`UserApi`] (permission checks,
//!   the clock). It cannot reach the executor, the network manager or the security
//!   module's administration, and it cannot pin a task to a core or choose its priority;
//! - a **kernel service** gets a [`KernelContext`]: the same, plus pinning and explicit
//!   priorities, and a [`KernelHandle`] it may keep, which reaches the executor's
//!   accounting, the network manager, the security module and the service registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtpm_rt::exec::{Activator, Job, TaskId, TaskOptions, TaskReport, TaskSpec};
use rtpm_rt::time::Clock;

use crate::error::{Error, Result};
use crate::id::{NodeId, ServiceId};
use crate::kernel::Kernel;
use crate::network::NetworkMgr;
use crate::security::{KernelSecurity, Permission};
use crate::session::Session;

/// What every service is.
pub trait Service: Send + Sync + 'static {
    /// Its name, unique in the runtime; its id derives from it.
    fn name(&self) -> &str;

    /// Its id: UUID v5 of the name.
    fn id(&self) -> ServiceId {
        ServiceId::from_name(self.name())
    }
}

/// A user service: runs with the user API only. See the [module documentation](self).
pub trait UserService: Service {
    /// Called once at insertion, before the service is shared: spawn its tasks here
    /// (each is admitted; a refusal fails the insertion and undoes the others).
    fn start(&mut self, ctx: &mut UserContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called at removal, before its tasks are removed: stop taking work.
    fn stop(&self) {}
}

/// A kernel service: privileged. See the [module documentation](self).
pub trait KernelService: Service {
    /// Called once at insertion, before the service is shared: spawn its tasks and keep
    /// the [`KernelHandle`] if it needs the kernel later.
    fn start(&mut self, ctx: &mut KernelContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called at removal, before its tasks are removed.
    fn stop(&self) {}
}

/// What a user service's tasks and code may use of the runtime.
#[derive(Clone)]
pub struct UserApi {
    kernel: Arc<Kernel>,
}

impl std::fmt::Debug for UserApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserApi")
            .field("node", &self.kernel.node.name)
            .finish()
    }
}

impl UserApi {
    pub(crate) fn new(kernel: Arc<Kernel>) -> UserApi {
        UserApi { kernel }
    }

    /// `Ok` when `session` is open in this runtime and its user holds `permission` on
    /// `service`; `target` names it in the error.
    pub fn check(
        &self,
        session: &Session,
        service: ServiceId,
        permission: Permission,
        target: &str,
    ) -> Result<()> {
        self.kernel
            .security
            .check(session, service, permission, target)
    }

    /// The security module's generation: a cached permission decision is still valid
    /// while this has not changed.
    #[inline]
    pub fn security_generation(&self) -> u64 {
        self.kernel.security.generation()
    }

    /// `Ok` when `session` is still open in this runtime (one atomic load).
    #[inline]
    pub fn session_active(&self, session: &Session) -> Result<()> {
        self.kernel.security.active(session)
    }

    /// The runtime's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.kernel.clock)
    }

    /// This node's name and id.
    pub fn node(&self) -> (&str, NodeId) {
        (&self.kernel.node.name, self.kernel.node.id)
    }

    /// A weak handle on the kernel, for the event service's networking (it must not keep
    /// the runtime alive).
    pub(crate) fn handle(&self) -> KernelHandle {
        KernelHandle {
            kernel: Arc::downgrade(&self.kernel),
        }
    }
}

/// How a service's tasks are spawned: shared by both contexts.
pub(crate) struct Spawner<'a> {
    pub(crate) kernel: &'a Arc<Kernel>,
    pub(crate) service: ServiceId,
    pub(crate) name: &'a str,
    pub(crate) tasks: &'a mut Vec<TaskId>,
    /// Opened once every task of the service is admitted; bodies do nothing before.
    pub(crate) armed: &'a Arc<AtomicBool>,
    pub(crate) privileged: bool,
}

impl Spawner<'_> {
    fn check_spec(&self, spec: &mut TaskSpec) -> Result<()> {
        if !self.privileged && (spec.core.is_some() || spec.priority.is_some()) {
            return Err(Error::Invalid(format!(
                "service `{}`, task `{}`: a user service cannot pin a task to a core or choose its priority (admission places it); only kernel services can",
                self.name, spec.name
            )));
        }
        spec.name = format!("{}/{}", self.name, spec.name);
        Ok(())
    }

    fn refused(&self, e: rtpm_rt::Error) -> Error {
        match e {
            rtpm_rt::Error::Refused(rejection) => Error::Refused {
                service: self.name.to_string(),
                rejection,
            },
            other => Error::Rt(other),
        }
    }

    pub(crate) fn periodic<F>(
        &mut self,
        mut spec: TaskSpec,
        options: TaskOptions,
        mut body: F,
    ) -> Result<TaskId>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        self.check_spec(&mut spec)?;
        let armed = Arc::clone(self.armed);
        let id = self
            .kernel
            .with_executor(self.name, &spec.name.clone(), |exec| {
                exec.spawn_periodic(spec, options, move |j: &Job| {
                    if armed.load(Ordering::Acquire) {
                        body(j);
                    }
                })
            })?
            .map_err(|e| self.refused(e))?;
        self.tasks.push(id);
        Ok(id)
    }

    pub(crate) fn sporadic<P, F>(
        &mut self,
        mut spec: TaskSpec,
        options: TaskOptions,
        mut body: F,
    ) -> Result<(TaskId, Activator<P>)>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        self.check_spec(&mut spec)?;
        let armed = Arc::clone(self.armed);
        let (id, act) = self
            .kernel
            .with_executor(self.name, &spec.name.clone(), |exec| {
                exec.spawn_sporadic(spec, options, move |j: &Job, p: P| {
                    if armed.load(Ordering::Acquire) {
                        body(j, p);
                    }
                })
            })?
            .map_err(|e| self.refused(e))?;
        self.tasks.push(id);
        Ok((id, act))
    }
}

/// A user service's view of its insertion. See the [module documentation](self).
pub struct UserContext<'a> {
    pub(crate) spawner: Spawner<'a>,
}

impl UserContext<'_> {
    /// The service's id.
    pub fn service_id(&self) -> ServiceId {
        self.spawner.service
    }

    /// Spawns a periodic task of the service (named `SERVICE/TASK` in the executor),
    /// after admission. `spec.core` and `spec.priority` must be unset.
    pub fn periodic<F>(&mut self, spec: TaskSpec, options: TaskOptions, body: F) -> Result<TaskId>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        self.spawner.periodic(spec, options, body)
    }

    /// Spawns a sporadic task of the service, after admission, and returns its activator.
    pub fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>)>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        self.spawner.sporadic(spec, options, body)
    }

    /// The user API, to keep for later.
    pub fn api(&self) -> UserApi {
        UserApi::new(Arc::clone(self.spawner.kernel))
    }
}

/// A kernel service's view of its insertion. See the [module documentation](self).
pub struct KernelContext<'a> {
    pub(crate) spawner: Spawner<'a>,
}

impl KernelContext<'_> {
    /// The service's id.
    pub fn service_id(&self) -> ServiceId {
        self.spawner.service
    }

    /// Spawns a periodic task (it may be pinned and given an explicit priority).
    pub fn periodic<F>(&mut self, spec: TaskSpec, options: TaskOptions, body: F) -> Result<TaskId>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        self.spawner.periodic(spec, options, body)
    }

    /// Spawns a sporadic task and returns its activator.
    pub fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>)>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        self.spawner.sporadic(spec, options, body)
    }

    /// The user API.
    pub fn api(&self) -> UserApi {
        UserApi::new(Arc::clone(self.spawner.kernel))
    }

    /// The privileged handle on the kernel, to keep.
    pub fn kernel(&self) -> KernelHandle {
        KernelHandle {
            kernel: Arc::downgrade(self.spawner.kernel),
        }
    }
}

/// A kernel service's privileged handle on the kernel (weak: it does not keep the
/// runtime alive). Only a [`KernelContext`] gives one out.
#[derive(Clone)]
pub struct KernelHandle {
    pub(crate) kernel: std::sync::Weak<Kernel>,
}

impl std::fmt::Debug for KernelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelHandle")
            .field("alive", &(self.kernel.strong_count() > 0))
            .finish()
    }
}

impl KernelHandle {
    pub(crate) fn get(&self) -> Result<Arc<Kernel>> {
        self.kernel
            .upgrade()
            .ok_or_else(|| Error::Invalid("the runtime has stopped".into()))
    }

    /// The user API.
    pub fn api(&self) -> Result<UserApi> {
        Ok(UserApi::new(self.get()?))
    }

    /// Runs `f` on the security module.
    pub fn with_security<T>(&self, f: impl FnOnce(&KernelSecurity) -> T) -> Result<T> {
        Ok(f(&self.get()?.security))
    }

    /// Runs `f` on the network manager (no session needed: kernel services are trusted).
    pub fn with_network_mgr<T>(&self, f: impl FnOnce(&NetworkMgr) -> T) -> Result<T> {
        Ok(f(&self.get()?.networks))
    }

    /// Every task's accounting on the executor.
    pub fn task_reports(&self) -> Result<Vec<TaskReport>> {
        let k = self.get()?;
        k.with_executor("the kernel", "reports", |e| e.report())?
            .map_err(Error::Rt)
    }

    /// Inserts a user service on behalf of `session` (admin on the service needed), as
    /// [`Runtime::insert_user_service`](crate::Runtime::insert_user_service) does.
    pub fn insert_user_service<S: UserService>(
        &self,
        session: &Session,
        service: S,
    ) -> Result<Arc<S>> {
        Kernel::insert_user_service(&self.get()?, session, service)
    }

    /// Removes a user service on behalf of `session` (admin on it needed).
    pub fn remove_user_service(&self, session: &Session, id: ServiceId) -> Result<()> {
        self.get()?.remove_service(session, id, false)
    }
}
