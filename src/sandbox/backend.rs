//! Where sandboxes run (`--sandbox.backend local|swarm|kubernetes`): the [`SandboxBackend`]
//! trait and the local engine's implementation of it.
//!
//! A backend does three things: it starts one container for a [`SandboxSpec`] under the usual
//! limits, labels and wall clock and says where it runs ([`Placement`]); it removes what it
//! started; and it reaps what dead agentao processes left in it. Everything a sandbox does
//! once started (exec, file copy, OOM and timeout classification) goes to the container the
//! placement names, on the engine of the node it landed on, so the eval harness, the agent and
//! the forge never learn which backend runs them.
//!
//! Also owns what every backend gives a sandbox alike: the labels, PID 1's wall clock and the
//! tmpfs mounts (`wall_and_labels`, `pid1`, `tmpfs_mounts`), and the local engine's container
//! creation (`create_local`).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptions;
use futures_util::future::BoxFuture;

use super::error::status_of;
use super::reaper::{self, GcReport, remove_container};
use super::{LABEL_DEADLINE, LABEL_OWNER, LABEL_RUN, Limits};
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
    /// The cluster when the sandbox is a Kubernetes pod (named by `container`): exec and
    /// files go through its API instead of `node`.
    pub(crate) pod: Option<std::sync::Arc<super::kubernetes::KubeCluster>>,
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
            let container = create_local(engine, spec, idle).await?;
            Ok(Placement {
                container,
                job: None,
                node: engine.docker.clone(),
                pod: None,
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

/// The seconds PID 1 sleeps (the wall clock plus `idle`) and the labels every sandbox carries,
/// whatever runs it: run id, owner, deadline (and the pool's mark when `idle` is not zero).
pub(super) fn wall_and_labels(
    spec: &SandboxSpec,
    idle: Duration,
) -> (u64, HashMap<String, String>) {
    let wall_secs = spec.limits.wall.as_secs().max(1) + idle.as_secs();
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + wall_secs;
    let mut labels = HashMap::from([
        (LABEL_RUN.to_owned(), spec.run_id.clone()),
        (LABEL_OWNER.to_owned(), reaper::owner_id()),
        (LABEL_DEADLINE.to_owned(), deadline.to_string()),
    ]);
    if !idle.is_zero() {
        labels.insert(super::LABEL_POOL.to_owned(), "1".to_owned());
    }
    (wall_secs, labels)
}

/// The command PID 1 runs: the spec's own, or `sleep <wall clock>`.
pub(super) fn pid1(spec: &SandboxSpec, wall_secs: u64) -> Vec<String> {
    spec.cmd
        .clone()
        .unwrap_or_else(|| vec!["sleep".to_owned(), wall_secs.to_string()])
}

/// The world-writable tmpfs mounts of a sandbox (`Limits::tmp_mb > 0`): target, size in MiB,
/// and whether programs may run from it.
pub(super) fn tmpfs_mounts(limits: &Limits) -> Vec<(&'static str, u64, bool)> {
    if limits.tmp_mb == 0 {
        return Vec::new();
    }
    vec![
        ("/tmp", limits.tmp_mb.max(1), true),
        ("/var/tmp", 16, true),
        ("/run/lock", 1, false),
    ]
}

/// Creates and starts a container on the validator's own engine for `spec` with the usual
/// limits and labels; its PID 1 sleeps the wall clock plus `idle` (the time a pooled container
/// may wait before it is taken), and its deadline label says so. A container that fails to
/// start is removed.
pub(super) async fn create_local(
    engine: &Engine,
    spec: &SandboxSpec,
    idle: Duration,
) -> Result<String, SandboxError> {
    let limits = &spec.limits;
    let (wall_secs, labels) = wall_and_labels(spec, idle);
    let memory = (limits.memory_mb * 1024 * 1024) as i64;
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        // PID 1 is the wall clock: when it ends the container stops and removes itself.
        cmd: Some(pid1(spec, wall_secs)),
        entrypoint: Some(Vec::new()),
        labels: Some(labels),
        env: Some(spec.env.clone()),
        working_dir: spec.workdir.clone(),
        host_config: Some(HostConfig {
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((limits.cpus * 1e9) as i64),
            pids_limit: Some(limits.pids),
            network_mode: Some(
                spec.network
                    .clone()
                    .unwrap_or_else(|| if limits.network { "bridge" } else { "none" }.to_owned()),
            ),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            init: Some(true),
            auto_remove: Some(true),
            tmpfs: (limits.tmp_mb > 0).then(|| {
                tmpfs_mounts(limits)
                    .into_iter()
                    .map(|(target, mb, exec)| {
                        let noexec = if exec { "" } else { "noexec," };
                        (
                            target.to_owned(),
                            format!("rw,nosuid,nodev,{noexec}mode=1777,size={mb}m"),
                        )
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = engine
        .docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(|e| match status_of(&e) {
            Some(404) => SandboxError::ImageMissing(spec.image.clone()),
            _ => SandboxError::from(e),
        })?;
    if let Err(e) = engine.docker.start_container(&created.id, None).await {
        let _ = remove_container(&engine.docker, &created.id).await;
        return Err(e.into());
    }
    Ok(created.id)
}
