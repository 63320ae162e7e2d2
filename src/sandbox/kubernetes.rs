//! The Kubernetes backend: sandboxes as Pods in one namespace of a cluster, through the API
//! server (kube-rs). It owns every call to that API; the pod it starts mirrors the local
//! container (`manifest.rs` says how, and what has no pod counterpart).
//!
//! - [`KubeCluster::launch`] ensures the isolation NetworkPolicy, creates the Pod and watches
//!   it until it runs (resuming the watch after `410 Gone`);
//! - [`KubeCluster::exec`] runs a command over the pods/exec WebSocket (`v5`/`v4.channel.k8s.io`);
//!   [`KubeCluster::exec_request`] turns an [`ExecRequest`] into the argv it needs (user,
//!   directory, environment and `timeout` inside the command, since pods/exec has no option
//!   for them);
//! - [`KubeCluster::reap`] deletes what dead owners left, by the reaper's rule.
//!
//! Label values cannot hold `:`, so the owner id is stored with `.` in its place.
//! Only tested against recorded API exchanges (`tests/it/kubernetes.rs`), never a live cluster.

mod backend;
mod manifest;

pub use backend::KubeBackend;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, AttachParams, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

pub(super) use manifest::exec_argv;
use manifest::{CONTAINER, network_policy, pod_name, should_reap};

use super::{
    ExecRequest, LABEL_DEADLINE, LABEL_OWNER, LABEL_RUN, SandboxError, SandboxSpec, reaper,
};

/// How long [`KubeCluster::launch`] waits for a pod to run (image pull and scheduling
/// included) unless [`KubeCluster::with_launch_timeout`] says otherwise.
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Seconds one watch request may last before the server ends it (and we watch again).
const WATCH_SECS: u32 = 60;
/// Waiting reasons that mean the image cannot be had.
const IMAGE_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// A namespace of a Kubernetes cluster that runs sandbox pods.
#[derive(Clone)]
pub struct KubeCluster {
    pods: Api<Pod>,
    policies: Api<NetworkPolicy>,
    namespace: String,
    launch_timeout: Duration,
    policy_ready: std::sync::Arc<AtomicBool>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The HTTP status code of an API error, when it is one.
fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// What to do after one watch request ended.
enum Next {
    /// Watch again from this pod's resource version.
    Watch(Box<Pod>),
    /// The resource version expired: read the pod again.
    Refetch,
}

impl KubeCluster {
    /// Connects to the API server at `api_url` with no authentication (a local test server,
    /// a `kubectl proxy`), or when `None` as `kubectl` would (kubeconfig, else in-cluster).
    pub async fn connect(
        api_url: Option<&str>,
        namespace: &str,
    ) -> Result<KubeCluster, SandboxError> {
        let config = match api_url {
            Some(url) => {
                let uri = url.parse::<http::Uri>().map_err(|e| SandboxError::Tool {
                    tool: "kubernetes".into(),
                    reason: format!("bad API server URL {url:?}: {e}"),
                })?;
                kube::Config::new(uri)
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| SandboxError::Kube(kube::Error::InferConfig(e)))?,
        };
        let client = kube::Client::try_from(config)?;
        Ok(KubeCluster {
            pods: Api::namespaced(client.clone(), namespace),
            policies: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            launch_timeout: DEFAULT_LAUNCH_TIMEOUT,
            policy_ready: Default::default(),
        })
    }

    /// The same cluster, waiting `timeout` at most for a pod to run.
    pub fn with_launch_timeout(mut self, timeout: Duration) -> KubeCluster {
        self.launch_timeout = timeout;
        self
    }

    /// The namespace the pods live in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Creates the isolation NetworkPolicy once per handle (one that exists already is fine).
    async fn ensure_policy(&self) -> Result<(), SandboxError> {
        if self.policy_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self
            .policies
            .create(&PostParams::default(), &network_policy()?)
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
        self.policy_ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Ensures the isolation NetworkPolicy, creates one Pod for `spec` (its wall clock
    /// lengthened by `idle`, the time a pooled sandbox may wait) and waits until it runs.
    /// A pod that fails to start is deleted. Returns the pod's name.
    pub async fn launch(&self, spec: &SandboxSpec, idle: Duration) -> Result<String, SandboxError> {
        self.ensure_policy().await?;
        let owner = reaper::owner_id();
        let mut retried = false;
        let created = loop {
            let name = pod_name(&spec.run_id);
            let pod = manifest::pod(spec, idle, &name, &owner, now_secs())?;
            match self.pods.create(&PostParams::default(), &pod).await {
                Ok(p) => break p,
                // The name is taken (8 random hex digits collided): once more with another.
                Err(e) if api_code(&e) == Some(409) && !retried => {
                    debug!(pod = %name, "pod name taken; retrying with another");
                    retried = true;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        let waited = tokio::time::timeout(
            self.launch_timeout,
            self.wait_running(&name, &spec.image, created),
        )
        .await
        .unwrap_or_else(|_| {
            Err(SandboxError::PodFailed {
                pod: name.clone(),
                reason: format!("not running after {:?}", self.launch_timeout),
            })
        });
        if let Err(e) = waited {
            if let Err(d) = self.delete(&name).await {
                warn!(pod = %name, error = %d, "could not delete a pod that failed to start");
            }
            return Err(e);
        }
        debug!(pod = %name, image = %spec.image, "sandbox pod running");
        Ok(name)
    }

    /// Watches the pod from `pod`'s resource version until it runs or cannot.
    async fn wait_running(
        &self,
        name: &str,
        image: &str,
        mut pod: Pod,
    ) -> Result<(), SandboxError> {
        loop {
            if started(&pod, image)? {
                return Ok(());
            }
            match self.watch_once(name, image, pod).await? {
                Next::Watch(p) => pod = *p,
                Next::Refetch => pod = self.pods.get(name).await?,
            }
            if started(&pod, image)? {
                return Ok(());
            }
        }
    }

    /// One watch request; returns when the pod runs (as that pod), when the server ends the
    /// request, or when the resource version expired.
    async fn watch_once(
        &self,
        name: &str,
        image: &str,
        mut pod: Pod,
    ) -> Result<Next, SandboxError> {
        let rv = pod.metadata.resource_version.clone().unwrap_or_default();
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(WATCH_SECS);
        let mut events = match self.pods.watch(&params, &rv).await {
            Ok(s) => s.boxed(),
            Err(e) if api_code(&e) == Some(410) => return Ok(Next::Refetch),
            Err(e) => return Err(e.into()),
        };
        loop {
            let event = match events.try_next().await {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(Next::Watch(Box::new(pod))),
                Err(e) if api_code(&e) == Some(410) => return Ok(Next::Refetch),
                Err(e) => return Err(e.into()),
            };
            match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    if started(&p, image)? {
                        return Ok(Next::Watch(Box::new(p)));
                    }
                    pod = p;
                }
                WatchEvent::Bookmark(b) => {
                    pod.metadata.resource_version = Some(b.metadata.resource_version);
                }
                WatchEvent::Deleted(_) => {
                    return Err(SandboxError::PodFailed {
                        pod: name.to_owned(),
                        reason: "deleted while starting".into(),
                    });
                }
                WatchEvent::Error(status) if status.code == 410 => return Ok(Next::Refetch),
                WatchEvent::Error(status) => return Err(kube::Error::Api(status).into()),
            }
        }
    }

    /// Runs `req` in the pod as the local exec would (its user, directory, environment and
    /// `timeout` put into the argv, see `manifest::exec_argv`), its timeout cut to `limit`.
    /// Returns the exit code (124/137 when `timeout` fired, as locally).
    pub async fn exec_request<F>(
        &self,
        pod: &str,
        req: &ExecRequest,
        limit: Duration,
        on_output: F,
    ) -> Result<i64, SandboxError>
    where
        F: FnMut(bool, &[u8]) + Send,
    {
        let argv = exec_argv(req, req.timeout.min(limit))?;
        self.exec(pod, argv, req.stdin.clone(), on_output).await
    }

    /// Runs `argv` in the pod (see [`KubeCluster::exec_request`] for an `ExecRequest`), writing `stdin` to it
    /// when given (then closing it), handing each chunk of output to `on_output(is_stdout,
    /// bytes)` as it arrives. Returns the command's exit code.
    pub async fn exec<F>(
        &self,
        pod: &str,
        argv: Vec<String>,
        stdin: Option<Vec<u8>>,
        mut on_output: F,
    ) -> Result<i64, SandboxError>
    where
        F: FnMut(bool, &[u8]) + Send,
    {
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true)
            .max_stdin_buf_size(64 * 1024)
            .max_stdout_buf_size(64 * 1024)
            .max_stderr_buf_size(64 * 1024);
        let mut process = self.pods.exec(pod, argv, &params).await?;
        let status = process.take_status();
        let (mut out, mut err) = (process.stdout(), process.stderr());
        let writer = process.stdin();
        // Fed while the output is read: a command that writes before it reads its input
        // would otherwise block both ends.
        let feed = async move {
            if let (Some(mut w), Some(bytes)) = (writer, stdin) {
                w.write_all(&bytes).await?;
                w.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let read = async {
            let (mut a, mut b) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
            while out.is_some() || err.is_some() {
                tokio::select! {
                    n = read_some(&mut out, &mut a) => match n {
                        Ok(0) | Err(_) => out = None,
                        Ok(n) => on_output(true, &a[..n]),
                    },
                    n = read_some(&mut err, &mut b) => match n {
                        Ok(0) | Err(_) => err = None,
                        Ok(n) => on_output(false, &b[..n]),
                    },
                }
            }
        };
        let (fed, ()) = tokio::join!(feed, read);
        fed.map_err(|e| SandboxError::io("writing a command's stdin", e))?;
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        if let Err(e) = process.join().await {
            debug!(pod, error = %e, "exec stream ended with an error");
        }
        exit_code(status)
    }

    /// The pod's log (PID 1's output), its last `limit_bytes` at most.
    pub async fn logs(&self, pod: &str, limit_bytes: i64) -> Result<String, SandboxError> {
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            limit_bytes: Some(limit_bytes),
            ..Default::default()
        };
        Ok(self.pods.logs(pod, &params).await?)
    }

    /// Deletes the pod at once (grace period 0); a pod already gone counts as deleted.
    pub async fn delete(&self, pod: &str) -> Result<(), SandboxError> {
        match self
            .pods
            .delete(pod, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes agentao pods whose owner process on this machine is gone or whose deadline
    /// passed (the local reaper's rule; a pod of another machine waits for its deadline).
    /// Returns the names deleted.
    pub async fn reap(&self) -> Result<Vec<String>, SandboxError> {
        let listed = self
            .pods
            .list(&ListParams::default().labels(LABEL_RUN))
            .await?;
        let (now, boot) = (now_secs(), reaper::boot_id());
        let mut reaped = Vec::new();
        for pod in listed.items {
            let Some(name) = pod.metadata.name else {
                continue;
            };
            let labels = pod.metadata.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).map(String::as_str);
            let reap = should_reap(
                label(LABEL_OWNER),
                label(LABEL_DEADLINE),
                now,
                reaper::DEADLINE_GRACE_SECS,
                &boot,
                reaper::owner_alive,
            );
            if !reap {
                continue;
            }
            match self.delete(&name).await {
                Ok(()) => {
                    info!(pod = %name, run = label(LABEL_RUN).unwrap_or(""), "reaped leftover pod");
                    reaped.push(name);
                }
                Err(e) => warn!(pod = %name, error = %e, "could not reap pod"),
            }
        }
        Ok(reaped)
    }
}

/// Reads from a stream that may be gone (then never ready).
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match reader {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Whether the pod runs; an error when it never will (image missing, ended, failed).
fn started(pod: &Pod, image: &str) -> Result<bool, SandboxError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(status) = &pod.status else {
        return Ok(false);
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if phase == "Running" {
        return Ok(true);
    }
    for cs in status.container_statuses.iter().flatten() {
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(reason) = waiting.and_then(|w| w.reason.as_deref())
            && IMAGE_REASONS.contains(&reason)
        {
            debug!(pod = %name, reason, message = ?waiting.and_then(|w| w.message.as_deref()), "image pull failed");
            return Err(SandboxError::ImageMissing(image.to_owned()));
        }
    }
    if phase == "Failed" || phase == "Succeeded" {
        let terminated = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|cs| cs.state.as_ref()?.terminated.as_ref());
        let reason = [
            status.reason.clone(),
            status.message.clone(),
            terminated.and_then(|t| t.reason.clone()),
            terminated.and_then(|t| t.message.clone()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
        return Err(SandboxError::PodFailed {
            pod: name,
            reason: format!(
                "{phase} before running{}",
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                }
            ),
        });
    }
    Ok(false)
}

/// The exit code in the status the API server sends on the exec's error channel: `Success`
/// is 0, a `NonZeroExitCode` failure carries it as the `ExitCode` cause.
fn exit_code(
    status: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
) -> Result<i64, SandboxError> {
    let fail = |reason: String| SandboxError::Tool {
        tool: "pods/exec".into(),
        reason,
    };
    let status = status.ok_or_else(|| fail("the stream ended without an exit status".into()))?;
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse::<i64>().ok());
    code.ok_or_else(|| fail(status.message.unwrap_or_else(|| "exec failed".into())))
}
