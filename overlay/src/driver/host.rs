//! `TaskHost`: where the driver's tasks are admitted and run.
//!
//! The driver declares every activity of the overlay as a periodic or sporadic task and
//! hands it to a host, which runs admission and, when it admits the task, runs its jobs
//! on an RT core. The rt crate's [`Executor`] is a host; the kernel (crate `rtpm`) is
//! another, which admits a network's tasks on the runtime's executor and removes them
//! when the network is removed. The host's error is rendered into the driver's
//! [`Error::Admission`](crate::Error::Admission), which names the task and its spec.

use std::fmt::Display;

use rtpm_rt::exec::{Activator, Executor, Job, TaskId, TaskOptions, TaskSpec};

/// Admits tasks and runs their jobs. See the [module documentation](self).
pub trait TaskHost {
    /// Why a task was refused.
    type Error: Display;

    /// Admits a periodic task and runs `body` once per release.
    fn periodic<F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<TaskId, Self::Error>
    where
        F: FnMut(&Job) + Send + 'static;

    /// Admits a sporadic task and returns the activator that releases its jobs.
    fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>), Self::Error>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static;

    /// Removes a task this host admitted (the driver undoes a half-admitted set with it).
    /// A host that removes a network's tasks itself on failure may do nothing here.
    fn remove(&mut self, id: TaskId);
}

impl TaskHost for Executor {
    type Error = rtpm_rt::Error;

    fn periodic<F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<TaskId, Self::Error>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        self.spawn_periodic(spec, options, body)
    }

    fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>), Self::Error>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        self.spawn_sporadic(spec, options, body)
    }

    fn remove(&mut self, id: TaskId) {
        let _ = Executor::remove(self, id);
    }
}

/// A host whose task names get `PREFIX:` in front: several nodes of one overlay on one
/// executor (tests, benchmarks) need distinct task names.
#[derive(Debug)]
pub struct Prefixed<'a, H> {
    host: &'a mut H,
    prefix: String,
}

impl<'a, H: TaskHost> Prefixed<'a, H> {
    /// Names `host`'s tasks `PREFIX:NAME`.
    pub fn new(host: &'a mut H, prefix: impl Into<String>) -> Prefixed<'a, H> {
        Prefixed {
            host,
            prefix: prefix.into(),
        }
    }

    fn named(&self, mut spec: TaskSpec) -> TaskSpec {
        spec.name = format!("{}:{}", self.prefix, spec.name);
        spec
    }
}

impl<H: TaskHost> TaskHost for Prefixed<'_, H> {
    type Error = H::Error;

    fn periodic<F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<TaskId, Self::Error>
    where
        F: FnMut(&Job) + Send + 'static,
    {
        let spec = self.named(spec);
        self.host.periodic(spec, options, body)
    }

    fn sporadic<P, F>(
        &mut self,
        spec: TaskSpec,
        options: TaskOptions,
        body: F,
    ) -> Result<(TaskId, Activator<P>), Self::Error>
    where
        P: Copy + Send + 'static,
        F: FnMut(&Job, P) + Send + 'static,
    {
        let spec = self.named(spec);
        self.host.sporadic(spec, options, body)
    }

    fn remove(&mut self, id: TaskId) {
        self.host.remove(id);
    }
}
