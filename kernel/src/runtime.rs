//! The runtime (the seed's `RTPm`, listing 1): what an application creates, logs in to,
//! and inserts its services into.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rtpm_rt::config::{Partition, Role};
use rtpm_rt::exec::{ExecConfig, ExecReport, Executor, TaskReport};
use rtpm_rt::time::{Clock, MonotonicClock, Nanos};

use crate::config::{LoadedConfig, NodeConfig, ServiceEntry, ServiceKindName};
use crate::control::ControlServer;
use crate::error::{Error, Result};
use crate::event::{EventConfig, EventService};
use crate::id::{NetworkId, NodeId, ServiceId};
use crate::kernel::{Kernel, NodeIdentity, ServiceInfo};
use crate::network::{Network, NetworkRef, NetworkSpec, OverlaySpec};
use crate::rpc::{RpcConfig, RpcService};
use crate::security::{KernelSecurity, LoginPolicy, Permission, Permissions, UsersFile};
use crate::service::{KernelService, UserService};
use crate::session::Session;

static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);

/// The runtime. See the [crate documentation](crate).
///
/// Dropping it (or [`Runtime::stop`]) leaves every network, removes every service in
/// reverse order of insertion and stops the executor.
pub struct Runtime {
    kernel: Arc<Kernel>,
    warnings: Vec<String>,
    log: crate::config::LogLevel,
    control: Option<ControlServer>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("node", &self.kernel.node)
            .field("services", &self.kernel.services().len())
            .finish()
    }
}

/// A user added in memory: name, passphrase (hashed at build), grants.
type MemoryUser = (String, String, Vec<(String, Permissions)>);

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    config: Option<LoadedConfig>,
    dir: Option<PathBuf>,
    users_file: Option<PathBuf>,
    users: Vec<MemoryUser>,
    clock: Arc<dyn Clock>,
    policy: LoginPolicy,
    services: Option<Vec<ServiceEntry>>,
    node_name: Option<String>,
    partition: Option<Partition>,
    lock_memory: bool,
    confine_process: bool,
    rpc: RpcConfig,
    control: Option<PathBuf>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("dir", &self.dir)
            .finish()
    }
}

impl RuntimeBuilder {
    fn new() -> RuntimeBuilder {
        RuntimeBuilder {
            config: None,
            dir: None,
            users_file: None,
            users: Vec::new(),
            clock: Arc::new(MonotonicClock),
            policy: LoginPolicy::default(),
            services: None,
            node_name: None,
            partition: None,
            lock_memory: true,
            confine_process: true,
            rpc: RpcConfig::default(),
            control: None,
        }
    }

    /// Serves the control socket `rtpm status` asks at `path` (overrides `node.control`).
    #[must_use]
    pub fn control_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.control = Some(path.into());
        self
    }

    /// Starts from `DIR/node.toml` and `DIR/cores/*.toml` (validated before anything
    /// starts) instead of the embedded default.
    #[must_use]
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Starts from an already loaded configuration.
    #[must_use]
    pub fn config(mut self, config: LoadedConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Uses this users file (overrides `node.users`).
    #[must_use]
    pub fn users_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.users_file = Some(path.into());
        self
    }

    /// Adds a user in memory: the passphrase is hashed with argon2id at build time and
    /// not kept. For embedded use and tests; grants as in the users file.
    #[must_use]
    pub fn user(mut self, name: &str, passphrase: &str, grants: &[(&str, Permissions)]) -> Self {
        self.users.push((
            name.to_string(),
            passphrase.to_string(),
            grants.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        ));
        self
    }

    /// The clock for login throttling and the event service's monitor (a `SimClock` in
    /// tests). RPC deadlines always use `CLOCK_MONOTONIC`.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How failed logins are throttled.
    #[must_use]
    pub fn login_policy(mut self, policy: LoginPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The services to start instead of the config's (`[]` for none).
    #[must_use]
    pub fn services(mut self, services: &[ServiceKindName]) -> Self {
        self.services = Some(
            services
                .iter()
                .map(|k| ServiceEntry {
                    kind: *k,
                    monitor_period: None,
                })
                .collect(),
        );
        self
    }

    /// The node's name (overrides the config's).
    #[must_use]
    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_string());
        self
    }

    /// The cores (overrides the config's partition).
    #[must_use]
    pub fn partition(mut self, partition: Partition) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Whether the executor locks all memory at start (default: yes).
    #[must_use]
    pub fn lock_memory(mut self, yes: bool) -> Self {
        self.lock_memory = yes;
        self
    }

    /// Whether the executor moves the process's other threads off the RT cores (default:
    /// yes).
    #[must_use]
    pub fn confine_process(mut self, yes: bool) -> Self {
        self.confine_process = yes;
        self
    }

    /// How the default RPC service is sized.
    #[must_use]
    pub fn rpc_config(mut self, config: RpcConfig) -> Self {
        self.rpc = config;
        self
    }

    /// Validates everything, then starts the runtime. Nothing is left running on error.
    pub fn build(self) -> Result<Runtime> {
        let mut cfg = match (self.config, &self.dir) {
            (Some(c), _) => c,
            (None, Some(dir)) => LoadedConfig::load(dir)?,
            (None, None) => LoadedConfig::embedded()?,
        };
        if let Some(p) = self.users_file {
            cfg.users = UsersFile::load(&p)?;
            cfg.node.node.users = Some(p);
        }
        for (name, pass, grants) in self.users {
            cfg.users
                .add_user(&name, &pass, grants.into_iter().collect(), true)?;
        }
        if let Some(s) = self.services {
            cfg.node.services = s;
        }
        if let Some(n) = self.node_name {
            cfg.node.node.name = n;
            cfg.node.node.id = None;
        }
        if let Some(p) = self.partition {
            cfg.partition = p;
        }
        if let Some(c) = self.control {
            cfg.node.node.control = Some(c);
        }
        let mut exec = ExecConfig::new(cfg.partition.clone());
        exec.lock_memory = self.lock_memory;
        exec.confine_process = self.confine_process;
        Runtime::start(cfg, exec, self.clock, self.policy, self.rpc)
    }
}

impl Runtime {
    /// A builder, starting from the embedded default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    /// Starts a runtime from `config` with default settings.
    pub fn new(config: LoadedConfig) -> Result<Runtime> {
        Runtime::builder().config(config).build()
    }

    /// Starts a runtime from the embedded default.
    pub fn embedded() -> Result<Runtime> {
        Runtime::builder().build()
    }

    /// Starts a runtime from config directory `dir`.
    pub fn from_dir(dir: &Path) -> Result<Runtime> {
        Runtime::builder().config_dir(dir).build()
    }

    fn start(
        cfg: LoadedConfig,
        exec: ExecConfig,
        clock: Arc<dyn Clock>,
        policy: LoginPolicy,
        rpc: RpcConfig,
    ) -> Result<Runtime> {
        let id = NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed);
        let node_file = cfg.dir.as_ref().map_or_else(
            || PathBuf::from("<embedded node.toml>"),
            |d| d.join("node.toml"),
        );
        let NodeConfig {
            node,
            services,
            overlay,
            overlay_keys,
        } = cfg.node;
        let mut warnings = cfg.partition.warnings.clone();
        let executor = if cfg.partition.cores.iter().any(|c| c.role == Role::Rt) {
            Ok(Executor::start(exec)?)
        } else {
            let why = "the partition has no RT core (one CPU, or no `role = \"rt\"` core file)"
                .to_string();
            warnings.push(format!(
                "{why}: services that declare real-time tasks will be refused"
            ));
            Err(why)
        };
        let security = KernelSecurity::new(
            id,
            cfg.users,
            node.users.clone(),
            policy,
            Arc::clone(&clock),
        );
        let identity = NodeIdentity {
            name: node.name.clone(),
            id: node.node_id(),
        };
        let kernel = Arc::new(Kernel::new(identity, security, clock, executor));
        let rt = Runtime {
            kernel,
            warnings,
            log: node.log,
            control: None,
        };
        for w in &rt.warnings {
            tracing::warn!("{w}");
        }
        let mut warnings_after = Vec::new();
        let has_executor = rt.kernel.has_executor();
        for s in services {
            let inserted = match s.kind {
                ServiceKindName::Rpc => rt
                    .kernel
                    .insert_kernel(RpcService::with_config(rpc))
                    .map(|_| ()),
                ServiceKindName::Events => {
                    let mut c = EventConfig::default();
                    if let Some(p) = s.monitor_period {
                        c.monitor_period = p;
                        c.monitor_wcet = c.monitor_wcet.min(Nanos(p.get() / 2).max(Nanos::us(1)));
                    }
                    rt.kernel.insert_user(EventService::new(c)).map(|_| ())
                }
            };
            match inserted {
                Ok(()) => {}
                // Without an RT core a service with real-time tasks cannot start: the
                // runtime still does, and says so.
                Err(e) if !has_executor => {
                    let w = format!("service {:?} not started: {e}", s.kind);
                    tracing::warn!("{w}");
                    warnings_after.push(w);
                }
                Err(e) => return Err(e),
            }
        }
        let mut rt = rt;
        rt.warnings.append(&mut warnings_after);
        // the overlays of node.toml, in order; a failure (admission, a socket) names the
        // section, and the runtime stops again (dropping `rt`)
        for (i, (ov, key)) in overlay.into_iter().zip(overlay_keys).enumerate() {
            let spec = OverlaySpec::new(ov, cfg.dir.clone())
                .key(key)
                .partition(cfg.partition.clone());
            rt.kernel
                .networks
                .insert(&rt.kernel, Box::new(spec))
                .map_err(|e| Error::Config {
                    file: node_file.clone(),
                    key: Some(format!("overlay[{i}]")),
                    message: e.to_string(),
                })?;
        }
        if let Some(path) = &node.control {
            rt.control = Some(ControlServer::start(
                path,
                Arc::downgrade(&rt.kernel),
                rt.warnings.clone(),
            )?);
        }
        tracing::info!(node = %rt.kernel.node.name, id = %rt.kernel.node.id, "runtime started");
        Ok(rt)
    }

    /// Checks `passphrase` for `user` and opens a session (listing 1's `loginUser`).
    /// Failed attempts are counted per user and throttled: [`Error::Throttled`] says
    /// how long to wait.
    pub fn login(&self, user: &str, passphrase: &str) -> Result<Session> {
        self.kernel.security.login(user, passphrase)
    }

    /// Closes `session` for every clone of it (listing 1's `logoutUser`).
    pub fn logout(&self, session: &Session) -> Result<()> {
        self.kernel.security.logout(session)
    }

    /// The security module (administration needs an admin session).
    pub fn security(&self) -> &KernelSecurity {
        &self.kernel.security
    }

    /// This node's name and id.
    pub fn node(&self) -> (&str, NodeId) {
        (&self.kernel.node.name, self.kernel.node.id)
    }

    /// What the user should know about how the runtime started (e.g. no RT core).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The configured log level (the application installs the subscriber).
    pub fn log_level(&self) -> crate::config::LogLevel {
        self.log
    }

    /// Inserts a user service (needs `admin` on its id): its tasks are admitted, or it is
    /// refused with admission's reason and nothing of it stays.
    pub fn insert_user_service<S: UserService>(
        &self,
        session: &Session,
        service: S,
    ) -> Result<Arc<S>> {
        self.kernel.insert_user_service(session, service)
    }

    /// Removes user service `id` (needs `admin` on it): it stops, its tasks are removed.
    pub fn remove_user_service(&self, session: &Session, id: ServiceId) -> Result<()> {
        self.kernel.remove_service(session, id, false)
    }

    /// User service `id` as an `S`.
    pub fn get_user_service<S: UserService>(
        &self,
        session: &Session,
        id: ServiceId,
    ) -> Result<Arc<S>> {
        self.kernel
            .get::<S>(session, id, false, std::any::type_name::<S>())
    }

    /// Inserts a kernel service (needs `admin` on the kernel).
    pub fn insert_kernel_service<S: KernelService>(
        &self,
        session: &Session,
        service: S,
    ) -> Result<Arc<S>> {
        self.kernel.insert_kernel_service(session, service)
    }

    /// Removes kernel service `id` (needs `admin` on the kernel).
    pub fn remove_kernel_service(&self, session: &Session, id: ServiceId) -> Result<()> {
        self.kernel.remove_service(session, id, true)
    }

    /// Kernel service `id` as an `S` (listing 9's `getKernelService` and cast).
    pub fn get_kernel_service<S: KernelService>(
        &self,
        session: &Session,
        id: ServiceId,
    ) -> Result<Arc<S>> {
        self.kernel
            .get::<S>(session, id, true, std::any::type_name::<S>())
    }

    /// The RPC service.
    pub fn rpc(&self, session: &Session) -> Result<Arc<RpcService>> {
        self.get_kernel_service(session, RpcService::uuid())
    }

    /// The event service.
    pub fn events(&self, session: &Session) -> Result<Arc<EventService>> {
        self.get_user_service(session, EventService::uuid())
    }

    /// The services, in insertion order.
    pub fn services(&self, session: &Session) -> Result<Vec<ServiceInfo>> {
        self.kernel.security.active(session)?;
        Ok(self.kernel.services())
    }

    /// Every task's accounting on the executor (empty without one).
    pub fn task_reports(&self, session: &Session) -> Result<Vec<TaskReport>> {
        self.kernel.security.active(session)?;
        match self
            .kernel
            .with_executor("the runtime", "reports", |e| e.report())
        {
            Ok(r) => r.map_err(Error::Rt),
            Err(_) => Ok(Vec::new()),
        }
    }

    fn require_admin(&self, session: &Session) -> Result<()> {
        self.kernel.security.check(
            session,
            ServiceId::kernel(),
            Permission::Admin,
            "the kernel",
        )
    }

    /// Starts the network `spec` describes and holds it (listing 1's `insertNetwork`).
    /// Needs `admin` on the kernel.
    pub fn insert_network(
        &self,
        session: &Session,
        spec: impl NetworkSpec + 'static,
    ) -> Result<NetworkId> {
        self.require_admin(session)?;
        self.kernel.networks.insert(&self.kernel, Box::new(spec))
    }

    /// Makes network `id` leave its overlay cleanly and removes it. Needs `admin` on the
    /// kernel.
    pub fn remove_network(&self, session: &Session, id: NetworkId) -> Result<()> {
        self.require_admin(session)?;
        self.kernel.networks.remove(&self.kernel, id)
    }

    /// Network `which` (by id or name). Needs `admin` on the kernel.
    pub fn get_network<'a>(
        &self,
        session: &Session,
        which: impl Into<NetworkRef<'a>>,
    ) -> Result<Arc<dyn Network>> {
        self.require_admin(session)?;
        self.kernel.networks.get(which)
    }

    /// Searches every network for service `id` (listing 4's `findUUID`).
    pub fn find_uuid(
        &self,
        session: &Session,
        id: ServiceId,
        timeout: Nanos,
    ) -> Result<Option<(Arc<dyn Network>, NodeId)>> {
        self.kernel.security.active(session)?;
        Ok(self.kernel.networks.find_uuid(id, timeout))
    }

    /// The control socket's path, when the runtime serves one.
    pub fn control_socket(&self) -> Option<&Path> {
        self.control.as_ref().map(ControlServer::path)
    }

    /// The networks, in insertion order (a snapshot; no session needed: reading what
    /// the node is part of is not administration).
    pub fn networks(&self) -> Arc<Vec<Arc<dyn Network>>> {
        self.kernel.networks.networks()
    }

    /// Stops the runtime now and returns the executor's final report: the control
    /// socket closes, every network leaves (announced), services are removed.
    pub fn stop(mut self) -> Option<ExecReport> {
        self.control = None;
        self.kernel.shutdown()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.control = None;
        let _ = self.kernel.shutdown();
    }
}
