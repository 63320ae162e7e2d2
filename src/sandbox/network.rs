//! Per-run internal Docker networks: a bridge with no route out (`internal: true`) that holds
//! an agent's sandbox and reaches the host only at the bridge's gateway address, where the
//! model proxy listens. Labelled like containers (`agentao.run`, `agentao.owner`); a
//! [`Network`] is a guard that removes the network when dropped, and the reaper removes
//! those of dead owners.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use tracing::{debug, warn};

use super::error::status_of;
use super::reaper;
use super::{Engine, LABEL_OWNER, LABEL_RUN, SandboxError};

/// An internal network owned by this value.
#[derive(Debug)]
pub struct Network {
    engine: Engine,
    name: String,
    gateway: String,
    removed: bool,
}

impl Network {
    /// Creates an internal bridge network named `agentao-<run_id>`.
    pub async fn internal(engine: &Engine, run_id: &str) -> Result<Network, SandboxError> {
        let name = format!("agentao-{run_id}");
        let labels = HashMap::from([
            (LABEL_RUN.to_owned(), run_id.to_owned()),
            (LABEL_OWNER.to_owned(), reaper::owner_id()),
        ]);
        engine
            .docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
        let mut network = Network {
            engine: engine.clone(),
            name,
            gateway: String::new(),
            removed: false,
        };
        let inspect = engine.docker.inspect_network(&network.name, None).await?;
        network.gateway = inspect
            .ipam
            .and_then(|i| i.config)
            .into_iter()
            .flatten()
            .find_map(|c| c.gateway)
            .ok_or_else(|| {
                SandboxError::io(
                    "network",
                    std::io::Error::other("the internal network has no gateway address"),
                )
            })?;
        debug!(network = %network.name, gateway = %network.gateway, "internal network created");
        Ok(network)
    }

    /// The network's name (what [`super::SandboxSpec::network`] takes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on this network.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Removes the network now (its containers must be gone first).
    pub async fn remove(mut self) -> Result<(), SandboxError> {
        let done = remove_network(&self.engine.docker, &self.name).await;
        self.removed = true;
        done
    }
}

pub(super) async fn remove_network(
    docker: &bollard::Docker,
    name: &str,
) -> Result<(), SandboxError> {
    match docker.remove_network(name).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let name = self.name.clone();
        let Ok(docker) = self.engine.reconnect() else {
            warn!(network = %name, "cannot reconnect to remove the network; the reaper will");
            return;
        };
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            // Containers removed a moment ago may still hold their endpoints.
            for _ in 0..20 {
                if rt.block_on(remove_network(&docker, &name)).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            warn!(network = %name, "could not remove the network");
        })
        .join();
    }
}
