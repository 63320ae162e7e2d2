//! The connection to the Docker engine, with API version negotiation, and the sandbox budget:
//! one semaphore per engine handle (shared by its clones) that every [`super::Sandbox`] takes a
//! permit of when it starts and gives back when its guard removes it, so no caller can run more
//! sandboxes at once than `--max-sandboxes`, whatever its own worker count; and the warm
//! pool (`pool.rs`) that budget also bounds.

use std::sync::Arc;

use bollard::{API_DEFAULT_VERSION, Docker};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::backend::{LocalBackend, SandboxBackend};
use super::pool::{Pool, PoolStats};
use super::{SandboxError, SandboxSpec};

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Seconds a single engine request may take before bollard gives up.
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// A negotiated connection to the Docker engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    addr: String,
    budget: Arc<Semaphore>,
    capacity: usize,
    pub(super) pool: Arc<Pool>,
    /// Where sandboxes run (the local engine unless [`Engine::with_backend`] says otherwise).
    backend: Arc<dyn SandboxBackend>,
}

/// What the engine says about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineInfo {
    pub addr: String,
    pub server_version: String,
    pub api_version: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("addr", &self.addr)
            .field("max_sandboxes", &self.capacity)
            .field("pool", &self.pool.enabled())
            .field("backend", &self.backend.kind())
            .finish()
    }
}

impl Engine {
    /// Connects to `addr` (a `unix://` path or a plain socket path; when `None`, `DOCKER_HOST`
    /// as the docker CLI reads it, else the default socket), negotiates the API version down
    /// to the engine's, and pings it.
    pub async fn connect(addr: Option<&str>) -> Result<Engine, SandboxError> {
        let from_env = std::env::var("DOCKER_HOST").ok();
        let addr = addr
            .filter(|a| !a.is_empty())
            .or(from_env.as_deref().filter(|a| !a.is_empty()))
            .unwrap_or(DEFAULT_SOCKET)
            .to_owned();
        let unavailable = |reason: String| SandboxError::EngineUnavailable {
            addr: addr.clone(),
            reason,
        };
        if !addr.starts_with("unix://") && addr.starts_with('/') {
            return Box::pin(Engine::connect(Some(&format!("unix://{addr}")))).await;
        }
        let docker = Docker::connect_with_unix(&addr, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
            .map_err(|e| unavailable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let capacity = crate::config::default_parallelism().max(1);
        let backend: Arc<dyn SandboxBackend> = Arc::new(LocalBackend);
        Ok(Engine {
            pool: Pool::new(docker.clone(), &addr, capacity, true, backend.clone()),
            docker,
            addr,
            budget: Arc::new(Semaphore::new(capacity)),
            capacity,
            backend,
        })
    }

    /// This handle with sandboxes run by `backend` (a swarm or a Kubernetes cluster) instead
    /// of the local engine, and a warm pool of its own; the budget is shared as before.
    pub fn with_backend(mut self, backend: Arc<dyn SandboxBackend>) -> Engine {
        self.backend = backend;
        let enabled = self.pool.enabled();
        self.new_pool(enabled)
    }

    /// This handle with a fresh warm pool for its current budget and backend.
    fn new_pool(mut self, enabled: bool) -> Engine {
        self.pool = Pool::new(
            self.docker.clone(),
            &self.addr,
            self.capacity,
            enabled,
            self.backend.clone(),
        );
        self
    }

    /// Where this handle's sandboxes run.
    pub fn backend(&self) -> &Arc<dyn SandboxBackend> {
        &self.backend
    }

    /// This handle with a budget of its own: at most `max` sandboxes at once, shared by every
    /// clone of the returned handle (clones made before keep the old budget).
    pub fn with_max_sandboxes(mut self, max: usize) -> Engine {
        self.capacity = max.max(1);
        self.budget = Arc::new(Semaphore::new(self.capacity));
        let enabled = self.pool.enabled();
        self.new_pool(enabled)
    }

    /// This handle with a warm pool (`true`, the default) or without one (every sandbox
    /// starts cold, as before the pool: `--no-pool`), shared by the clones made after.
    pub fn with_pool(self, enabled: bool) -> Engine {
        self.new_pool(enabled)
    }

    /// Announces the sandboxes about to be started, in order (a batch's or a round's): the
    /// pool keeps idle containers for the first `max_sandboxes` of them and refills as they
    /// are taken. Replaces the previous announcement; an empty one empties the pool. Does
    /// nothing without a pool.
    pub fn warm(&self, specs: Vec<SandboxSpec>) {
        self.pool.announce(self, specs);
    }

    /// Forgets the announced demand and removes the pool's idle containers, waiting for fills
    /// in flight (the end of a batch or a round). The pool stays usable.
    pub async fn empty_pool(&self) {
        self.pool.empty().await;
    }

    /// What the warm pool holds now.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Empties the warm pool for good (later sandboxes start cold) and waits up to
    /// `deadline` for background removals to finish. [`super::settle`] does this for every
    /// handle at exit.
    pub async fn shutdown(&self, deadline: std::time::Duration) {
        self.pool.drain(deadline).await;
    }

    /// Sandboxes that may run at once through this handle.
    pub fn max_sandboxes(&self) -> usize {
        self.capacity
    }

    /// Sandboxes running (or starting) through this handle now.
    pub fn sandboxes_running(&self) -> usize {
        self.capacity
            .saturating_sub(self.budget.available_permits())
    }

    /// A permit of the budget, waiting for one to be free.
    pub(super) async fn sandbox_permit(&self) -> OwnedSemaphorePermit {
        self.budget
            .clone()
            .acquire_owned()
            .await
            .expect("the sandbox budget is never closed")
    }

    /// The address this engine was reached at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A fresh connection to the same engine using the already negotiated version, for use from
    /// another runtime (the drop guard's clean-up thread).
    pub(crate) fn reconnect(&self) -> Result<Docker, SandboxError> {
        let version = self.docker.client_version();
        Docker::connect_with_unix(&self.addr, REQUEST_TIMEOUT_SECS, &version)
            .map_err(SandboxError::from)
    }

    /// Server and API versions.
    pub async fn info(&self) -> Result<EngineInfo, SandboxError> {
        let v = self.docker.version().await?;
        Ok(EngineInfo {
            addr: self.addr.clone(),
            server_version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
        })
    }

    /// Where the engine keeps images and containers on the host (`/var/lib/docker`).
    pub async fn root_dir(&self) -> Result<String, SandboxError> {
        Ok(self
            .docker
            .info()
            .await?
            .docker_root_dir
            .unwrap_or_default())
    }

    /// Whether an image with this reference exists locally.
    pub async fn image_exists(&self, reference: &str) -> Result<bool, SandboxError> {
        match self.docker.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(e) if super::error::status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
