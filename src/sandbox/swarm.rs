//! The Docker Swarm backend (`--sandbox.backend swarm`): one sandbox is a `replicated-job`
//! service of one task, scheduled by the swarm onto any node, with the local sandbox's limits,
//! labels and wall clock.
//!
//! - The service and its container carry the labels (`agentao.run`, `agentao.owner`,
//!   `agentao.deadline`); the service's restart policy is `none`, so a killed sandbox is never
//!   restarted behind the harness's back.
//! - Limits travel in the task template (CPU, memory, pids, init, dropped capabilities, tmpfs
//!   mounts). What a service spec cannot say on every engine version (swap equal to memory,
//!   no network at all) is set on the node's engine right after the task starts and before
//!   any command of the work runs: swap is capped with a container update, and the container
//!   is disconnected from every network (then joined to the spec's network, if it names one).
//! - Exec and file copy go to the engine of the node the task landed on: the manager's own
//!   engine for its own node, else the address given for that node (`--swarm.node-engine
//!   NODE=unix:///...`). Logs travel through the services endpoint ([`SwarmBackend::logs`]).
//! - Images come from the registry (`--registry`) when one is set: pushed once per content
//!   hash ([`super::Registry`]), so every node runs the very image the validator built.
//!   Without one, every node must hold the images itself (a single-node swarm does).
//! - A task that fails, is rejected or is orphaned (its node died) is
//!   [`SandboxError::Lost`]: an environment error, never the miner's failure.
//! - Sandboxes that serve agentao itself (a spec with its own command, or on the host's
//!   network: the model proxy) stay on the validator's engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    Limit, LocalNodeState, Mount, MountTmpfsOptions, MountType, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions, LogsOptions};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tracing::{debug, info, warn};

use super::backend::{BackendKind, Placement, SandboxBackend, pid1, tmpfs_mounts, wall_and_labels};
use super::error::status_of;
use super::reaper::{GcReport, overdue_or_orphaned, remove_container};
use super::{Engine, LABEL_RUN, Registry, SandboxError, SandboxSpec};

/// How long a service may take to get its task running (image pulls included).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Label on services (and their containers) this backend made.
const LABEL_SWARM: &str = "agentao.swarm";

/// Options of the swarm backend.
#[derive(Debug, Clone, Default)]
pub struct SwarmOptions {
    /// The registry every node pulls images from (`host:port`); none on a single node.
    pub registry: Option<String>,
    /// Engine addresses of nodes other than the manager, by node id.
    pub node_engines: HashMap<String, String>,
}

/// Sandboxes as swarm services; see the module documentation.
#[derive(Debug)]
pub struct SwarmBackend {
    /// The manager's own node id (its tasks run on the validator's engine).
    node_id: String,
    nodes: HashMap<String, Docker>,
    registry: Option<Registry>,
    /// Whether the engine's API takes `NoNewPrivileges` in a service spec (1.46 and later).
    no_new_privileges: bool,
}

impl SwarmBackend {
    /// Checks that `engine` is a swarm manager and connects to the other nodes' engines.
    pub async fn connect(
        engine: &Engine,
        opts: SwarmOptions,
    ) -> Result<SwarmBackend, SandboxError> {
        let info = engine.docker.info().await?;
        let swarm = info.swarm.unwrap_or_default();
        let not_manager = |why: &str| SandboxError::EngineUnavailable {
            addr: engine.addr().to_owned(),
            reason: format!("{why}: the swarm backend needs a swarm manager (docker swarm init)"),
        };
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
            return Err(not_manager("this engine is not part of a swarm"));
        }
        if swarm.control_available != Some(true) {
            return Err(not_manager("this engine is a swarm worker"));
        }
        let mut nodes = HashMap::new();
        for (node, addr) in &opts.node_engines {
            let docker = connect_node(addr).map_err(|reason| SandboxError::EngineUnavailable {
                addr: addr.clone(),
                reason,
            })?;
            nodes.insert(node.clone(), docker);
        }
        let api = engine.docker.client_version();
        let no_new_privileges = (api.major_version, api.minor_version) >= (1, 46);
        Ok(SwarmBackend {
            node_id: swarm.node_id.unwrap_or_default(),
            nodes,
            registry: opts.registry.as_deref().map(Registry::new).transpose()?,
            no_new_privileges,
        })
    }

    /// The registry images are pushed to, when set.
    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// What the sandbox's PID 1 wrote, through the services endpoint (the manager gathers it
    /// from whatever node ran the task).
    pub async fn logs(&self, engine: &Engine, service: &str) -> Result<String, SandboxError> {
        let mut stream = engine.docker.service_logs(
            service,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
        }
        Ok(text)
    }

    fn node(&self, engine: &Engine, node: &str) -> Result<Docker, SandboxError> {
        if node == self.node_id {
            return Ok(engine.docker.clone());
        }
        self.nodes
            .get(node)
            .cloned()
            .ok_or_else(|| SandboxError::EngineUnavailable {
                addr: format!("swarm node {node}"),
                reason: "no engine address for this node (--swarm.node-engine NODE=ADDR)".into(),
            })
    }

    async fn launch_service(
        &self,
        engine: &Engine,
        spec: &SandboxSpec,
        idle: Duration,
    ) -> Result<Placement, SandboxError> {
        let image = match &self.registry {
            Some(registry) => registry.publish(engine, &spec.image).await?,
            None => {
                if !engine.image_exists(&spec.image).await? {
                    return Err(SandboxError::ImageMissing(spec.image.clone()));
                }
                spec.image.clone()
            }
        };
        let (wall_secs, mut labels) = wall_and_labels(spec, idle);
        labels.insert(LABEL_SWARM.to_owned(), "1".to_owned());
        let limits = &spec.limits;
        let mounts = tmpfs_mounts(limits)
            .into_iter()
            .map(|(target, mb, exec)| Mount {
                target: Some(target.to_owned()),
                typ: Some(MountType::TMPFS),
                tmpfs_options: Some(MountTmpfsOptions {
                    size_bytes: Some((mb * 1024 * 1024) as i64),
                    mode: Some(0o1777),
                    options: Some(if exec {
                        vec![vec!["nosuid".into()], vec!["nodev".into()]]
                    } else {
                        vec![
                            vec!["nosuid".into()],
                            vec!["nodev".into()],
                            vec!["noexec".into()],
                        ]
                    }),
                }),
                ..Default::default()
            })
            .collect();
        let service = ServiceSpec {
            name: Some(service_name(&spec.run_id)),
            labels: Some(labels.clone()),
            mode: Some(ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: Some(1),
                    total_completions: Some(1),
                }),
                ..Default::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image),
                    labels: Some(labels),
                    command: Some(pid1(spec, wall_secs)),
                    env: Some(spec.env.clone()),
                    dir: spec.workdir.clone(),
                    init: Some(true),
                    capability_drop: Some(vec!["ALL".to_owned()]),
                    privileges: self
                        .no_new_privileges
                        .then(|| TaskSpecContainerSpecPrivileges {
                            no_new_privileges: Some(true),
                            ..Default::default()
                        }),
                    mounts: Some(mounts),
                    stop_grace_period: Some(0),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: Some((limits.cpus * 1e9) as i64),
                        memory_bytes: Some((limits.memory_mb * 1024 * 1024) as i64),
                        pids: Some(limits.pids),
                    }),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    max_attempts: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = engine.docker.create_service(service, None).await?;
        let service_id = created.id.unwrap_or_default();
        let placed = self.wait_running(engine, spec, &service_id).await;
        match placed {
            Ok(placed) => match self.seal(spec, &placed).await {
                Ok(()) => Ok(placed),
                Err(e) => {
                    let _ = self.remove(&engine.docker, &placed).await;
                    Err(e)
                }
            },
            Err(e) => {
                let _ = delete_service(&engine.docker, &service_id).await;
                Err(e)
            }
        }
    }

    /// Waits until the service's task runs, and says where.
    async fn wait_running(
        &self,
        engine: &Engine,
        spec: &SandboxSpec,
        service_id: &str,
    ) -> Result<Placement, SandboxError> {
        let begun = Instant::now();
        let lost = |reason: String| SandboxError::Lost {
            id: service_id[..service_id.len().min(12)].to_owned(),
            reason,
        };
        loop {
            let tasks = engine
                .docker
                .list_tasks(Some(ListTasksOptions {
                    filters: Some(HashMap::from([(
                        "service".to_owned(),
                        vec![service_id.to_owned()],
                    )])),
                }))
                .await?;
            for task in tasks {
                let status = task.status.unwrap_or_default();
                let message = [status.err.clone(), status.message.clone()]
                    .into_iter()
                    .flatten()
                    .filter(|m| !m.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                match status.state {
                    Some(TaskState::RUNNING) => {
                        let container = status
                            .container_status
                            .and_then(|c| c.container_id)
                            .unwrap_or_default();
                        let node = task.node_id.unwrap_or_default();
                        if container.is_empty() {
                            continue;
                        }
                        return Ok(Placement {
                            container,
                            job: Some(service_id.to_owned()),
                            node: self.node(engine, &node)?,
                            pod: None,
                        });
                    }
                    Some(TaskState::REJECTED | TaskState::FAILED)
                        if message.contains("No such image")
                            || message.contains("pull access denied")
                            || message.contains("not found") =>
                    {
                        return Err(SandboxError::ImageMissing(spec.image.clone()));
                    }
                    Some(
                        state @ (TaskState::FAILED
                        | TaskState::REJECTED
                        | TaskState::ORPHANED
                        | TaskState::SHUTDOWN
                        | TaskState::COMPLETE
                        | TaskState::REMOVE),
                    ) => {
                        return Err(lost(format!(
                            "the swarm task ended as {state} before it ran: {message}"
                        )));
                    }
                    _ => {}
                }
            }
            if begun.elapsed() > START_TIMEOUT {
                return Err(lost(format!(
                    "the swarm did not run the task within {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the service spec could not say, set before any command of the work runs: swap no
    /// larger than memory, and the network the spec asks for (none by default).
    async fn seal(&self, spec: &SandboxSpec, placed: &Placement) -> Result<(), SandboxError> {
        let node = &placed.node;
        let memory = (spec.limits.memory_mb * 1024 * 1024) as i64;
        node.update_container(
            &placed.container,
            bollard::models::ContainerUpdateBody {
                memory: Some(memory),
                memory_swap: Some(memory),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| gone_or(e, placed))?;
        let inspect = node
            .inspect_container(&placed.container, None)
            .await
            .map_err(|e| gone_or(e, placed))?;
        let joined: Vec<String> = inspect
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        let wanted = spec
            .network
            .clone()
            .or_else(|| spec.limits.network.then(|| "bridge".to_owned()));
        for network in joined {
            if Some(&network) == wanted.as_ref() {
                continue;
            }
            node.disconnect_network(
                &network,
                bollard::models::NetworkDisconnectRequest {
                    container: placed.container.clone(),
                    force: Some(true),
                },
            )
            .await
            .map_err(|e| gone_or(e, placed))?;
        }
        if let Some(network) = spec.network.as_ref().filter(|n| *n != "bridge") {
            node.connect_network(
                network,
                bollard::models::NetworkConnectRequest {
                    container: placed.container.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| gone_or(e, placed))?;
        }
        if !self.no_new_privileges {
            // No `no-new-privileges` in a service spec below API 1.46: the same effect for the
            // work, which runs after this, by taking set-id bits off every file.
            strip_set_id_bits(placed).await?;
        }
        debug!(container = ?placed, "swarm sandbox sealed");
        Ok(())
    }
}

impl SandboxBackend for SwarmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Swarm
    }

    fn launch<'a>(
        &'a self,
        engine: &'a Engine,
        spec: &'a SandboxSpec,
        idle: Duration,
    ) -> BoxFuture<'a, Result<Placement, SandboxError>> {
        Box::pin(async move {
            if spec.cmd.is_some() || spec.network.as_deref() == Some("host") {
                // agentao's own services (the model proxy) stay beside the validator.
                return super::backend::LocalBackend
                    .launch(engine, spec, idle)
                    .await;
            }
            self.launch_service(engine, spec, idle).await
        })
    }

    fn remove<'a>(
        &'a self,
        docker: &'a Docker,
        placed: &'a Placement,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            if let Some(service) = &placed.job {
                delete_service(docker, service).await?;
            }
            // The service's removal takes its container down in time; on the manager's own
            // node it goes now (elsewhere the node's engine may be gone with the node).
            match remove_container(&placed.node, &placed.container).await {
                Err(e) if placed.job.is_some() => {
                    debug!(error = %e, "container of a removed service not removed directly");
                    Ok(())
                }
                done => done,
            }
        })
    }

    fn reap<'a>(
        &'a self,
        engine: &'a Engine,
        report: &'a mut GcReport,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let services = engine
                .docker
                .list_services(Some(ListServicesOptions {
                    filters: Some(HashMap::from([(
                        "label".to_owned(),
                        vec![LABEL_RUN.to_owned()],
                    )])),
                    ..Default::default()
                }))
                .await?;
            for service in services {
                let Some(id) = service.id else { continue };
                let labels = service.spec.and_then(|s| s.labels).unwrap_or_default();
                if !overdue_or_orphaned(&labels) {
                    report.kept_live += 1;
                    continue;
                }
                match delete_service(&engine.docker, &id).await {
                    Ok(()) => {
                        info!(service = %id, run = labels.get(LABEL_RUN).map(String::as_str).unwrap_or(""), "reaped leftover swarm service");
                        report.services.push(id);
                    }
                    Err(e) => warn!(service = %id, error = %e, "could not reap swarm service"),
                }
            }
            Ok(())
        })
    }
}

/// A shared handle, as [`Engine::with_backend`] takes it.
impl From<SwarmBackend> for Arc<dyn SandboxBackend> {
    fn from(backend: SwarmBackend) -> Self {
        Arc::new(backend)
    }
}

/// Takes the set-user-id and set-group-id bits off every file of the container's own file
/// system, as root before any command of the work runs, so no process of the work can gain
/// privileges by executing one.
async fn strip_set_id_bits(placed: &Placement) -> Result<(), SandboxError> {
    use bollard::exec::StartExecResults;
    let node = &placed.node;
    let exec = node
        .create_exec(
            &placed.container,
            bollard::models::ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                user: Some("0:0".to_owned()),
                cmd: Some(
                    [
                        "find", "/", "-xdev", "-type", "f", "-perm", "/6000", "-exec", "chmod",
                        "ug-s", "{}", "+",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| gone_or(e, placed))?;
    if let StartExecResults::Attached { mut output, .. } = node
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| gone_or(e, placed))?
    {
        while output.next().await.is_some() {}
    }
    let code = super::exec::exit_code(node, &exec.id)
        .await
        .map_err(|e| gone_or(e, placed))?;
    if code != Some(0) {
        return Err(SandboxError::Tool {
            tool: "set-id bits".into(),
            reason: format!("find/chmod exited {code:?}"),
        });
    }
    Ok(())
}

/// Removes a service; gone counts as done.
async fn delete_service(docker: &Docker, id: &str) -> Result<(), SandboxError> {
    match docker.delete_service(id).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// An error from the node about a container that is gone: the node lost it.
fn gone_or(e: bollard::errors::Error, placed: &Placement) -> SandboxError {
    match status_of(&e) {
        Some(404 | 409) => SandboxError::Lost {
            id: placed.container[..placed.container.len().min(12)].to_owned(),
            reason: e.to_string(),
        },
        _ => e.into(),
    }
}

/// `agentao-<run id>-<random>`, within the 63 characters a service name may have.
fn service_name(run_id: &str) -> String {
    let run: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    format!("agentao-{run}-{suffix}")
}

/// A connection to a node's engine (`unix://` socket or `tcp://`/`http://` address).
fn connect_node(addr: &str) -> Result<Docker, String> {
    let version = bollard::API_DEFAULT_VERSION;
    let docker = if let Some(rest) = addr.strip_prefix("tcp://") {
        Docker::connect_with_http(&format!("http://{rest}"), 300, version)
    } else if addr.starts_with("http://") {
        Docker::connect_with_http(addr, 300, version)
    } else {
        Docker::connect_with_unix(addr, 300, version)
    };
    docker.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::service_name;

    #[test]
    fn service_names_are_short_and_plain() {
        let name = service_name("Local_Run/ß-1234567890123456789012345678901234567890");
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert_ne!(service_name("r"), service_name("r"));
    }
}
