//! The connection to the Docker engine, with API version negotiation.

use bollard::{API_DEFAULT_VERSION, Docker};

use super::SandboxError;

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Seconds a single engine request may take before bollard gives up.
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// A negotiated connection to the Docker engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    addr: String,
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
        f.debug_struct("Engine").field("addr", &self.addr).finish()
    }
}

impl Engine {
    /// Connects to `addr` (a `unix://` path or a plain socket path; the default socket when
    /// `None`), negotiates the API version down to the engine's, and pings it.
    pub async fn connect(addr: Option<&str>) -> Result<Engine, SandboxError> {
        let addr = addr
            .filter(|a| !a.is_empty())
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
        Ok(Engine { docker, addr })
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
