//! The error type of the sandbox layer.

use std::time::Duration;

/// What can go wrong talking to Docker (or a Kubernetes API server) or inside a sandbox.
///
/// [`SandboxError::is_environment`] separates failures of the machine (engine down, image
/// missing) from failures of the work being run, so callers never blame a miner for them.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot reach the Docker engine at {addr}: {reason}")]
    EngineUnavailable { addr: String, reason: String },
    #[error(
        "image {0} is not present (agentao builds its own images; the base is `agentao image build-base`)"
    )]
    ImageMissing(String),
    #[error("sandbox {id} was lost (its node or container went away): {reason}")]
    Lost { id: String, reason: String },
    #[error("registry {addr}: {reason}")]
    Registry { addr: String, reason: String },
    #[error("sandbox {id} passed its wall-clock limit of {limit:?}")]
    WallClockExceeded { id: String, limit: Duration },
    #[error("path {0:?} is not allowed here")]
    BadPath(String),
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("image build failed: {0}")]
    Build(String),
    #[error("{tool} failed: {reason}")]
    Tool { tool: String, reason: String },
    #[error(transparent)]
    Docker(#[from] bollard::errors::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("pod {pod} did not start: {reason}")]
    PodFailed { pod: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the sandbox went away under the work (a node that died, a container removed
    /// by someone else): the work deserves another sandbox.
    pub fn is_lost(&self) -> bool {
        matches!(self, SandboxError::Lost { .. })
    }

    /// True when the failure lies with the machine, not with what ran in the sandbox.
    pub fn is_environment(&self) -> bool {
        !matches!(
            self,
            SandboxError::WallClockExceeded { .. }
                | SandboxError::BadPath(_)
                | SandboxError::TooLarge { .. }
        )
    }
}

/// The HTTP status of an engine error, when it is one.
pub(crate) fn status_of(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
