//! Where sandboxes run (`--sandbox.backend local|swarm|kubernetes`): the [`SandboxBackend`]
//! trait and the local engine's implementation of it.
//!
//! A backend does three things: it starts one container for a [`SandboxSpec`] under the usual
//! limits, labels and wall clock and says where it runs ([`Placement`]); it removes what it
//! started; and it reaps what dead agentao processes left in it. Everything a sandbox does
//! once started (exec, file copy, OOM and timeout classification) goes to the container the
//! placement names, on the engine of the node it landed on, so the eval harness, the agent and
//! the forge never learn which backend runs them.

use std::fmt;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::BoxFuture;

use super::reaper::{GcReport, remove_container};
pub use crate::config::BackendKind;

use super::{Engine, SandboxError, SandboxSpec};

/// Where one sandbox runs.
#[derive(Clone)]
pub struct Placement {
    /// The container's id on `node`.
    pub(crate) container: String,
    /// The cluster object that owns the container and goes with it (a swarm service's id).
    pub(crate) job: Option<String>,
    /// The engine of the node the container runs on (exec and file copy go there).
    pub(crate) node: Docker,
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placement")
            .field(
                "container",
                &&self.container[..self.container.len().min(12)],
            )
            .field("job", &self.job)
            .finish()
    }
}

/// A place sandboxes run: starts, removes and reaps them. Implementations hold their own
/// connections; the [`Engine`] handle they are called with is the validator's own engine
/// (the manager's, for a cluster), which also carries the budget and the warm pool.
pub trait SandboxBackend: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Creates and starts one container for `spec`, its PID 1 sleeping the wall clock plus
    /// `idle` (the time a pooled container may wait to be taken), with the usual labels,
    /// limits and network rules. No code of the work runs before this returns.
    fn launch<'a>(
        &'a self,
        engine: &'a Engine,
        spec: &'a SandboxSpec,
        idle: Duration,
    ) -> BoxFuture<'a, Result<Placement, SandboxError>>;

    /// Removes a sandbox this backend started, through `docker` (a connection to the
    /// validator's engine, made on whatever runtime the caller runs). Gone counts as done.
    fn remove<'a>(
        &'a self,
        docker: &'a Docker,
        placed: &'a Placement,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;

    /// Removes what agentao processes that are gone (or whose deadline passed) left in this
    /// backend beyond plain containers (services, jobs), adding them to `report`.
    fn reap<'a>(
        &'a self,
        engine: &'a Engine,
        report: &'a mut GcReport,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;
}

/// Containers on the validator's own engine: what every sandbox was before clusters.
#[derive(Debug, Default)]
pub struct LocalBackend;

impl SandboxBackend for LocalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    fn launch<'a>(
        &'a self,
        engine: &'a Engine,
        spec: &'a SandboxSpec,
        idle: Duration,
    ) -> BoxFuture<'a, Result<Placement, SandboxError>> {
        Box::pin(async move {
            let container = super::container::create_local(engine, spec, idle).await?;
            Ok(Placement {
                container,
                job: None,
                node: engine.docker.clone(),
            })
        })
    }

    fn remove<'a>(
        &'a self,
        docker: &'a Docker,
        placed: &'a Placement,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(remove_container(docker, &placed.container))
    }

    fn reap<'a>(
        &'a self,
        _engine: &'a Engine,
        _report: &'a mut GcReport,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        // Plain containers are reaped for every backend by `reap_leftovers` itself.
        Box::pin(async { Ok(()) })
    }
}
