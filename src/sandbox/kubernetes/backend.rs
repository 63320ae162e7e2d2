//! [`KubeCluster`] as a [`SandboxBackend`]: a sandbox is one pod; its exec and files go through
//! the cluster's API (the [`Placement`] carries the cluster), its removal deletes the pod and
//! the reaper deletes what dead owners left.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::BoxFuture;

use super::KubeCluster;
use crate::sandbox::backend::{BackendKind, Placement, SandboxBackend};
use crate::sandbox::reaper::GcReport;
use crate::sandbox::{Engine, Registry, SandboxError, SandboxSpec};

/// Sandboxes as pods of one namespace.
#[derive(Debug)]
pub struct KubeBackend {
    cluster: Arc<KubeCluster>,
    registry: Option<Registry>,
}

impl KubeBackend {
    /// The backend on `cluster`, its pods naming images as given (the cluster must be able to
    /// pull them).
    pub fn new(cluster: KubeCluster) -> KubeBackend {
        KubeBackend {
            cluster: Arc::new(cluster),
            registry: None,
        }
    }

    /// The same backend, pushing agentao's images to `registry` (once per content hash) and
    /// naming them there in its pods.
    pub fn with_registry(mut self, registry: Option<Registry>) -> KubeBackend {
        self.registry = registry;
        self
    }
}

impl From<KubeBackend> for Arc<dyn SandboxBackend> {
    fn from(backend: KubeBackend) -> Self {
        Arc::new(backend)
    }
}

impl SandboxBackend for KubeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kubernetes
    }

    fn launch<'a>(
        &'a self,
        engine: &'a Engine,
        spec: &'a SandboxSpec,
        idle: Duration,
    ) -> BoxFuture<'a, Result<Placement, SandboxError>> {
        Box::pin(async move {
            let pod = match &self.registry {
                Some(registry) => {
                    let mut spec = spec.clone();
                    spec.image = registry.publish(engine, &spec.image).await?;
                    self.cluster.launch(&spec, idle).await?
                }
                None => self.cluster.launch(spec, idle).await?,
            };
            Ok(Placement {
                container: pod,
                job: None,
                node: engine.docker.clone(),
                pod: Some(self.cluster.clone()),
            })
        })
    }

    fn remove<'a>(
        &'a self,
        _docker: &'a Docker,
        placed: &'a Placement,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(self.cluster.delete(&placed.container))
    }

    fn reap<'a>(
        &'a self,
        _engine: &'a Engine,
        report: &'a mut GcReport,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            report.services.extend(self.cluster.reap().await?);
            Ok(())
        })
    }
}
