//! One sandbox container: start with limits, copy files in and out, remove (and the `Drop`
//! that removes it on every other path). Commands run through `exec.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::body_full;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;
use tracing::{debug, warn};

use super::backend::{Placement, tmpfs_mounts};
use super::error::status_of;
use super::exec::{ExecRequest, ExecStatus};
use super::{Engine, Limits, SandboxError};

/// Extra seconds the host waits past a command's own timeout before it kills the container.
pub(super) const HOST_GRACE: Duration = Duration::from_secs(5);

/// The tasks that create and start containers (see [`Sandbox::start`]).
static STARTS: std::sync::LazyLock<tokio_util::task::TaskTracker> =
    std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);

/// Waits up to `deadline` for containers being created to be handed over or, when their
/// caller went away, removed. Call before the runtime is dropped: a task dropped mid-creation
/// would leave a container no guard owns (the reaper would find it at the next start).
///
/// Then empties every warm pool and waits for background removals ([`Sandbox::release`]).
pub async fn settle(deadline: Duration) {
    STARTS.close();
    if tokio::time::timeout(deadline, STARTS.wait()).await.is_err() {
        warn!(
            ?deadline,
            "containers still being created at exit; the reaper will remove them"
        );
    }
    super::pool::drain_all(deadline).await;
}

/// Output kept per stream when the caller does not say.
pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Image reference, e.g. `agentao/base:latest`.
    pub image: String,
    /// Resource limits.
    pub limits: Limits,
    /// Run id, the value of the `agentao.run` label.
    pub run_id: String,
    /// `KEY=VALUE` environment entries.
    pub env: Vec<String>,
    /// Working directory for commands.
    pub workdir: Option<String>,
    /// The network to join (a [`super::Network`]'s name, or `host`), overriding
    /// `Limits::network`.
    pub network: Option<String>,
    /// The command PID 1 runs instead of `sleep <wall clock>` (a service such as the model
    /// proxy; the wall clock then holds through the container's deadline label and the
    /// reaper).
    pub cmd: Option<Vec<String>>,
    /// Work done on the fresh container before it serves anyone (see [`super::Setup`]).
    pub setup: Option<super::Setup>,
}

impl SandboxSpec {
    /// A spec with default limits for `image`.
    pub fn new(image: impl Into<String>, run_id: impl Into<String>) -> Self {
        SandboxSpec {
            image: image.into(),
            limits: Limits::default(),
            run_id: run_id.into(),
            env: Vec::new(),
            workdir: None,
            network: None,
            cmd: None,
            setup: None,
        }
    }
}

/// A running container with limits, owned by this value: dropping it removes the container.
///
/// Prefer [`Sandbox::remove`] on the happy path (it reports errors); `Drop` is the safety net
/// for panics, timeouts and cancellation.
pub struct Sandbox {
    pub(super) engine: Engine,
    pub(super) id: String,
    /// Where it runs: exec and file copy go to `placed.node`.
    pub(super) placed: Placement,
    run_id: String,
    pub(super) limits: Limits,
    pub(super) started: Instant,
    removed: bool,
    pub(super) killed: AtomicBool,
    pub(super) oom_seen: AtomicU64,
    /// The engine's sandbox budget, given back after the container is removed (a field drops
    /// after `Drop::drop` ran).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.short_id())
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl Sandbox {
    /// Creates and starts a container from `spec`, once the engine's sandbox budget has a
    /// permit free (waiting for one otherwise).
    ///
    /// Cancellation-safe: the engine calls run in a task of their own, so a caller dropped
    /// while the container is being created (a round cut short, a request answered at a
    /// deadline) leaves no container behind: the guard made after it is dropped in that task
    /// (before exiting, [`settle`] waits for those tasks).
    pub async fn start(engine: &Engine, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let permit = engine.sandbox_permit().await;
        if let Some(placed) = engine.pool.take(engine, spec) {
            debug!(container = %&placed.container[..placed.container.len().min(12)], image = %spec.image, "sandbox taken from the pool");
            return Ok(Sandbox::adopt(engine, placed, spec, Some(permit)));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (engine, spec) = (engine.clone(), spec.clone());
        STARTS.spawn(async move {
            let made = Sandbox::create(&engine, &spec, permit).await;
            // Nobody waits any more: the guard is dropped here, removing the container.
            let _ = tx.send(made);
        });
        rx.await.map_err(|_| {
            SandboxError::io(
                "sandbox start",
                std::io::Error::other("the start task ended without an answer"),
            )
        })?
    }

    async fn create(
        engine: &Engine,
        spec: &SandboxSpec,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Sandbox, SandboxError> {
        let placed = create_started(engine, spec, Duration::ZERO).await?;
        debug!(container = %&placed.container[..placed.container.len().min(12)], image = %spec.image, backend = %engine.backend().kind(), "sandbox started");
        Sandbox::set_up(engine, placed, spec, Some(permit)).await
    }

    /// The guard of a started container once the spec's [`super::Setup`] is done; a failed
    /// setup releases the container.
    async fn set_up(
        engine: &Engine,
        placed: Placement,
        spec: &SandboxSpec,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = Sandbox::adopt(engine, placed, spec, permit);
        if let Err(e) = super::setup::run(&sandbox, spec).await {
            sandbox.release();
            return Err(e);
        }
        Ok(sandbox)
    }

    /// A started container for the pool: created, its [`super::Setup`] done, outside the
    /// budget (an idle container holds no permit). A failed setup removes it.
    pub(super) async fn prepare_idle(
        engine: &Engine,
        spec: &SandboxSpec,
        idle: Duration,
    ) -> Result<Placement, SandboxError> {
        let placed = create_started(engine, spec, idle).await?;
        let mut sandbox = Sandbox::set_up(engine, placed, spec, None).await?;
        // The pool owns it from here.
        sandbox.removed = true;
        Ok(sandbox.placed.clone())
    }

    /// The guard of a started container, its wall clock counted from now.
    fn adopt(
        engine: &Engine,
        placed: Placement,
        spec: &SandboxSpec,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Sandbox {
        Sandbox {
            engine: engine.clone(),
            id: placed.container.clone(),
            placed,
            run_id: spec.run_id.clone(),
            limits: spec.limits.clone(),
            started: Instant::now(),
            removed: false,
            killed: AtomicBool::new(false),
            oom_seen: AtomicU64::new(0),
            _permit: permit,
        }
    }

    /// The full container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first 12 characters of the container id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Time left before the wall-clock limit.
    pub fn remaining(&self) -> Duration {
        self.limits.wall.saturating_sub(self.started.elapsed())
    }

    /// Copies a host directory's contents into `dest` inside the container (created if needed),
    /// owned by root.
    pub async fn copy_dir_in(&self, host_dir: &Path, dest: &str) -> Result<(), SandboxError> {
        let host_dir = host_dir.to_path_buf();
        let tar = tokio::task::spawn_blocking(move || tar_dir(&host_dir))
            .await
            .map_err(|e| SandboxError::io("tar", std::io::Error::other(e)))??;
        self.upload_tar(dest, tar).await
    }

    /// Writes one file inside the container; its directory must exist.
    pub async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), SandboxError> {
        let (dir, name) = split_container_path(path)?;
        self.write_files(dir, &[(name, contents, mode)]).await
    }

    /// Writes files below `dir` (which must exist) in one upload; relative paths in `files`
    /// may name subdirectories, which are created. Owned by root.
    pub async fn write_files<P: AsRef<str>, B: AsRef<[u8]>>(
        &self,
        dir: &str,
        files: &[(P, B, u32)],
    ) -> Result<(), SandboxError> {
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let tar = super::tar_files(files, mtime)?;
        self.put_tar(dir, tar).await
    }

    async fn upload_tar(&self, dest: &str, tar: Vec<u8>) -> Result<(), SandboxError> {
        self.exec(&ExecRequest::new(["mkdir", "-p", dest]).timeout(Duration::from_secs(30)))
            .await?;
        self.put_tar(dest, tar).await
    }

    /// Whether files at `path` go through `tar` in an exec: always in a pod (Kubernetes has no
    /// copy API), and on the sandbox's tmpfs mounts, which the engine's copy API cannot see
    /// (it works on the container's own file system).
    fn via_exec(&self, path: &str) -> bool {
        self.placed.pod.is_some()
            || tmpfs_mounts(&self.limits)
                .iter()
                .any(|(m, _, _)| path == *m || path.starts_with(&format!("{m}/")))
    }

    async fn put_tar(&self, dest: &str, tar: Vec<u8>) -> Result<(), SandboxError> {
        if self.via_exec(dest) {
            // Through an exec instead: `tar` inside the container reads the archive on stdin.
            let out = self
                .exec(
                    &ExecRequest::new(["tar", "-x", "-f", "-", "-C", dest])
                        .stdin(tar)
                        .timeout(Duration::from_secs(120)),
                )
                .await?;
            return match out.status {
                ExecStatus::Exited(0) => Ok(()),
                _ => Err(SandboxError::Tool {
                    tool: "tar -x".into(),
                    reason: out.stderr.trim().to_owned(),
                }),
            };
        }
        self.placed
            .node
            .upload_to_container(
                &self.id,
                Some(UploadToContainerOptions {
                    path: dest.to_owned(),
                    ..Default::default()
                }),
                body_full(tar.into()),
            )
            .await
            .map_err(|e| self.map_gone(e))
    }

    /// Reads one regular file from the container, refusing files above `limit` bytes.
    pub async fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, SandboxError> {
        let tar = self
            .download_tar(path, limit.saturating_add(64 * 1024))
            .await?;
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
        let entries = archive.entries().map_err(|e| SandboxError::io("tar", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| SandboxError::io("tar", e))?;
            if entry.header().entry_type().is_file() {
                if entry.size() > limit {
                    return Err(SandboxError::TooLarge {
                        what: path.to_owned(),
                        limit,
                    });
                }
                let mut buf = Vec::with_capacity(entry.size() as usize);
                std::io::Read::read_to_end(&mut entry, &mut buf)
                    .map_err(|e| SandboxError::io("tar", e))?;
                return Ok(buf);
            }
        }
        Err(SandboxError::BadPath(path.to_owned()))
    }

    /// Copies a file or directory out of the container into `host_dir` (which must exist).
    /// Entries that would land outside `host_dir` are refused by the unpacker.
    pub async fn copy_out(
        &self,
        path: &str,
        host_dir: &Path,
        limit: u64,
    ) -> Result<(), SandboxError> {
        let tar = self.download_tar(path, limit).await?;
        let host_dir = host_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
            archive.set_preserve_permissions(false);
            archive.set_unpack_xattrs(false);
            archive.unpack(&host_dir)
        })
        .await
        .map_err(|e| SandboxError::io("untar", std::io::Error::other(e)))?
        .map_err(|e| SandboxError::io("untar", e))
    }

    async fn download_tar(&self, path: &str, limit: u64) -> Result<Vec<u8>, SandboxError> {
        if self.via_exec(path) {
            use base64::Engine as _;
            let (parent, name) = path
                .rsplit_once('/')
                .map(|(p, n)| (if p.is_empty() { "/" } else { p }, n))
                .ok_or_else(|| SandboxError::BadPath(path.to_owned()))?;
            let cap = (limit as usize).saturating_mul(4) / 3 + (1 << 20);
            let out = self
                .exec(
                    &ExecRequest::new([
                        "sh",
                        "-c",
                        "cd \"$1\" && tar -c -f - -- \"$2\" | base64 -w0",
                        "sh",
                        parent,
                        name,
                    ])
                    .timeout(Duration::from_secs(120))
                    .output_cap(cap),
                )
                .await?;
            if out.stdout_dropped > 0 {
                return Err(SandboxError::TooLarge {
                    what: path.to_owned(),
                    limit,
                });
            }
            if out.stderr.contains("Cannot stat") || out.stdout.trim().is_empty() {
                return Err(SandboxError::BadPath(path.to_owned()));
            }
            return base64::engine::general_purpose::STANDARD
                .decode(out.stdout.trim())
                .map_err(|e| SandboxError::io("base64", std::io::Error::other(e)));
        }
        let mut stream = self.placed.node.download_from_container(
            &self.id,
            Some(DownloadFromContainerOptions {
                path: path.to_owned(),
            }),
        );
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match status_of(&e) {
                Some(404) => SandboxError::BadPath(path.to_owned()),
                _ => self.map_gone(e),
            })?;
            tar.extend_from_slice(&chunk);
            if tar.len() as u64 > limit {
                return Err(SandboxError::TooLarge {
                    what: path.to_owned(),
                    limit,
                });
            }
        }
        Ok(tar)
    }

    /// Stops and removes the container now, reporting any error.
    pub async fn remove(mut self) -> Result<(), SandboxError> {
        // Marked only once the call returned: a caller dropped meanwhile leaves the removal
        // to `Drop`.
        let removed = self
            .engine
            .backend()
            .remove(&self.engine.docker, &self.placed)
            .await;
        self.removed = true;
        removed
    }

    /// Removes the container in the background, off the caller's critical path: the budget
    /// permit is given back once it is gone; [`settle`] and [`Engine::shutdown`] wait for it
    /// (and a runtime dropped first still removes it through the guard's `Drop`).
    pub fn release(mut self) {
        // The background task removes it; this guard only carries the permit there.
        self.removed = true;
        let pool = self.engine.pool.clone();
        let placed = self.placed.clone();
        pool.remove_in_background(placed, self);
    }

    pub(super) async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let backend = self.engine.backend();
        if let Err(e) = backend.remove(&self.engine.docker, &self.placed).await {
            warn!(container = %self.short_id(), error = %e, "could not kill sandbox");
        }
    }

    pub(super) fn wall_clock_error(&self) -> SandboxError {
        SandboxError::WallClockExceeded {
            id: self.short_id().to_owned(),
            limit: self.limits.wall,
        }
    }

    /// An engine error on a container that vanished is the wall clock (or a kill) at work;
    /// before them, the sandbox was lost (its node died, or someone removed it).
    pub(super) fn map_gone(&self, e: bollard::errors::Error) -> SandboxError {
        match status_of(&e) {
            Some(404) | Some(409)
                if self.remaining().is_zero() || self.killed.load(Ordering::SeqCst) =>
            {
                self.wall_clock_error()
            }
            Some(404) | Some(409) => SandboxError::Lost {
                id: self.short_id().to_owned(),
                reason: e.to_string(),
            },
            _ => e.into(),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Drop cannot await, and the current runtime may be shutting down; remove the
        // container from a short-lived thread with its own runtime and connection.
        let placed = self.placed.clone();
        let backend = self.engine.backend().clone();
        let docker = match self.engine.reconnect() {
            Ok(d) => d,
            Err(e) => {
                warn!(container = %self.short_id(), error = %e, "cannot reconnect to remove sandbox; the reaper will");
                return;
            }
        };
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(backend.remove(&docker, &placed)),
                Err(e) => Err(SandboxError::io("runtime", e)),
            }
        })
        .join();
        match joined {
            Ok(Ok(())) => debug!(container = %self.short_id(), "sandbox removed by its guard"),
            Ok(Err(e)) => {
                warn!(container = %self.short_id(), error = %e, "guard could not remove sandbox")
            }
            Err(_) => warn!(container = %self.short_id(), "guard clean-up thread panicked"),
        }
    }
}

/// Starts a sandbox for `spec` through the engine handle's backend (see
/// [`super::SandboxBackend::launch`]).
pub(super) async fn create_started(
    engine: &Engine,
    spec: &SandboxSpec,
    idle: Duration,
) -> Result<Placement, SandboxError> {
    engine.backend().launch(engine, spec, idle).await
}

fn split_container_path(path: &str) -> Result<(&str, &str), SandboxError> {
    let bad = || SandboxError::BadPath(path.to_owned());
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(bad());
    }
    let (dir, name) = path.rsplit_once('/').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((if dir.is_empty() { "/" } else { dir }, name))
}

/// Tars a directory's contents with root ownership; symlinks are kept as links.
fn tar_dir(dir: &Path) -> Result<Vec<u8>, SandboxError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    builder
        .append_dir_all(".", dir)
        .map_err(|e| SandboxError::io(format!("tar {}", dir.display()), e))?;
    builder
        .into_inner()
        .map_err(|e| SandboxError::io(format!("tar {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::split_container_path;

    #[test]
    fn container_paths_must_be_absolute_and_plain() {
        assert_eq!(split_container_path("/a/b.txt").unwrap(), ("/a", "b.txt"));
        assert_eq!(split_container_path("/b.txt").unwrap(), ("/", "b.txt"));
        assert!(split_container_path("a/b").is_err());
        assert!(split_container_path("/a/../b").is_err());
        assert!(split_container_path("/a/").is_err());
    }
}
