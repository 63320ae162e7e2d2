//! Finding and removing what earlier runs left behind: containers and stale images.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, RemoveContainerOptions, RemoveImageOptions,
};
use tracing::{info, warn};

use super::error::status_of;
use super::{Engine, LABEL_DEADLINE, LABEL_OWNER, LABEL_RECIPE, LABEL_RUN, SandboxError};

/// Seconds past a container's deadline after which it is reaped whoever owns it.
pub(super) const DEADLINE_GRACE_SECS: u64 = 60;

/// This process's identity as a container owner: boot id, pid and start time, so a reused
/// pid after a reboot or a restart is not mistaken for the owner.
pub(crate) fn owner_id() -> String {
    let pid = std::process::id();
    format!("{}:{}:{}", boot_id(), pid, start_ticks(pid).unwrap_or(0))
}

pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().chars().take(8).collect())
        .unwrap_or_else(|_| "noboot".to_owned())
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the parenthesised command name (which may hold spaces).
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process named by an owner label is still alive on this machine.
pub(crate) fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(boot), Some(pid), Some(ticks)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if boot != boot_id() {
        return false;
    }
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    start_ticks(pid) == Some(ticks)
}

/// Whether a sandbox with these labels may be reaped: its owner process is gone, or its
/// deadline passed (by a grace) whoever owns it.
pub(crate) fn overdue_or_orphaned(labels: &HashMap<String, String>) -> bool {
    let owner = labels.get(LABEL_OWNER).map(String::as_str).unwrap_or("");
    let deadline: u64 = labels
        .get(LABEL_DEADLINE)
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    now > deadline + DEADLINE_GRACE_SECS || !owner_alive(owner)
}

/// What a clean-up removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    /// Containers removed (short ids).
    pub containers: Vec<String>,
    /// Cluster objects removed (swarm services, Kubernetes pods).
    pub services: Vec<String>,
    /// Images removed (references).
    pub images: Vec<String>,
    /// Containers left alone because a live process owns them.
    pub kept_live: usize,
}

/// Removes agentao containers whose owner process is gone or whose deadline has passed.
/// Containers of live agentao processes (a miner beside a validator, parallel tests) are kept.
pub async fn reap_leftovers(engine: &Engine) -> Result<GcReport, SandboxError> {
    let mut report = GcReport::default();
    let containers = engine
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![LABEL_RUN.to_owned()],
            )])),
            ..Default::default()
        }))
        .await?;
    let backend = engine.backend().clone();
    backend.reap(engine, &mut report).await?;
    for c in containers {
        let Some(id) = c.id else { continue };
        let labels = c.labels.unwrap_or_default();
        if !overdue_or_orphaned(&labels) {
            report.kept_live += 1;
            continue;
        }
        let short = id[..id.len().min(12)].to_owned();
        match remove_container(&engine.docker, &id).await {
            Ok(()) => {
                info!(container = %short, run = labels.get(LABEL_RUN).map(String::as_str).unwrap_or(""), "reaped leftover container");
                report.containers.push(short);
            }
            Err(e) => warn!(container = %short, error = %e, "could not reap container"),
        }
    }
    reap_networks(engine).await;
    Ok(report)
}

/// Removes agentao's per-run networks whose owner process is gone.
async fn reap_networks(engine: &Engine) {
    let listed = engine
        .docker
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![LABEL_RUN.to_owned()],
            )])),
        }))
        .await;
    for n in listed.unwrap_or_default() {
        let (Some(name), labels) = (n.name, n.labels.unwrap_or_default()) else {
            continue;
        };
        let owner = labels.get(LABEL_OWNER).map(String::as_str).unwrap_or("");
        if owner_alive(owner) {
            continue;
        }
        match super::network::remove_network(&engine.docker, &name).await {
            Ok(()) => info!(network = %name, "reaped leftover network"),
            Err(e) => warn!(network = %name, error = %e, "could not reap network"),
        }
    }
}

/// Reaps leftover containers, then removes agentao-built images (label `agentao.recipe`)
/// whose reference is not in `keep` and that no container uses.
pub async fn gc_images(engine: &Engine, keep: &[String]) -> Result<GcReport, SandboxError> {
    let mut report = reap_leftovers(engine).await?;
    let images = engine
        .docker
        .list_images(Some(ListImagesOptions {
            all: false,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![LABEL_RECIPE.to_owned()],
            )])),
            ..Default::default()
        }))
        .await?;
    for image in images {
        let tags = image.repo_tags;
        if tags.iter().any(|t| keep.contains(t)) {
            continue;
        }
        let reference = tags.first().cloned().unwrap_or_else(|| image.id.clone());
        match engine
            .docker
            .remove_image(
                &image.id,
                Some(RemoveImageOptions {
                    force: false,
                    noprune: false,
                    ..Default::default()
                }),
                None,
            )
            .await
        {
            Ok(_) => {
                info!(image = %reference, "removed stale image");
                report.images.push(reference);
            }
            // 409: in use by a container or a child image; kept.
            Err(e) if status_of(&e) == Some(409) => {}
            Err(e) => warn!(image = %reference, error = %e, "could not remove image"),
        }
    }
    Ok(report)
}

/// Force-removes a container; "already gone" and "removal in progress" count as done.
pub(crate) async fn remove_container(docker: &Docker, id: &str) -> Result<(), SandboxError> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes one image by reference, whatever uses it as a tag (a missing one is not an error):
/// for benchmarks that measure a cold build.
pub async fn remove_image(engine: &Engine, reference: &str) -> Result<(), SandboxError> {
    match engine
        .docker
        .remove_image(
            reference,
            Some(RemoveImageOptions {
                force: true,
                noprune: false,
                ..Default::default()
            }),
            None,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        assert!(owner_alive(&owner_id()));
        assert!(!owner_alive("deadbeef:1:1"));
        assert!(!owner_alive("garbage"));
        let me = owner_id();
        let (prefix, _) = me.rsplit_once(':').unwrap();
        assert!(!owner_alive(&format!("{prefix}:12345")));
    }
}
