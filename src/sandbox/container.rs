//! One sandbox container: start with limits, exec with bounded output, copy files, remove.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use bollard::{Docker, body_full};
use futures_util::StreamExt;
use tracing::{debug, warn};

use super::error::status_of;
use super::{
    BoundedBuf, Engine, LABEL_DEADLINE, LABEL_OWNER, LABEL_RUN, Limits, SandboxError, reaper,
};

/// Extra seconds the host waits past a command's own timeout before it kills the container.
const HOST_GRACE: Duration = Duration::from_secs(5);
/// The image's world-writable folders, each a size-capped tmpfs when `Limits::tmp_mb > 0`.
const TMPFS_MOUNTS: &[&str] = &["/tmp", "/var/tmp", "/run/lock"];

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
        }
    }
}

/// A command to run inside a sandbox.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// argv; no shell unless you ask for one (`["bash", "-lc", "…"]`).
    pub cmd: Vec<String>,
    /// Working directory (the sandbox's default when `None`).
    pub workdir: Option<String>,
    /// Extra `KEY=VALUE` environment entries.
    pub env: Vec<String>,
    /// The command is killed after this long.
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept (the tail).
    pub output_cap: usize,
    /// `uid[:gid]` to run as (the image's default user when `None`).
    pub user: Option<String>,
    /// Bytes written to the command's stdin (left open, never closed, when `None`: no stdin).
    pub stdin: Option<Vec<u8>>,
}

impl ExecRequest {
    /// A request for `argv` with a 60 s timeout and 1 MiB of output kept per stream.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            cmd: argv.into_iter().map(Into::into).collect(),
            workdir: None,
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            output_cap: DEFAULT_OUTPUT_CAP,
            user: None,
            stdin: None,
        }
    }

    /// `bash -c script`.
    pub fn shell(script: impl Into<String>) -> Self {
        ExecRequest::new(["bash".to_owned(), "-c".to_owned(), script.into()])
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    pub fn output_cap(mut self, cap: usize) -> Self {
        self.output_cap = cap;
        self
    }

    pub fn env(mut self, entry: impl Into<String>) -> Self {
        self.env.push(entry.into());
        self
    }

    /// Runs the command as `uid[:gid]`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Hands `bytes` to the command on its stdin (a secret that must not show in its
    /// environment, its command line or a file).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
}

/// Seconds from cgroup v1 `cpuacct.usage` (nanoseconds) or v2 `cpu.stat` (`usage_usec`).
fn parse_cpu_usage(text: &str) -> Option<f64> {
    for line in text.lines() {
        if let Some(us) = line.strip_prefix("usage_usec ") {
            return us.trim().parse::<f64>().ok().map(|u| u / 1e6);
        }
        if let Ok(ns) = line.trim().parse::<f64>() {
            return Some(ns / 1e9);
        }
    }
    None
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
pub enum ExecStatus {
    /// It exited with this code.
    Exited(i64),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// The kernel's OOM killer ended it (memory limit reached).
    OutOfMemory,
}

/// The outcome of one command.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: ExecStatus,
    /// Tail of stdout (see [`ExecRequest::output_cap`]).
    pub stdout: String,
    /// Tail of stderr.
    pub stderr: String,
    /// Bytes of stdout that were not kept.
    pub stdout_dropped: u64,
    /// Bytes of stderr that were not kept.
    pub stderr_dropped: u64,
    pub duration: Duration,
}

impl ExecOutput {
    /// True when the command exited with 0.
    pub fn success(&self) -> bool {
        self.status == ExecStatus::Exited(0)
    }

    /// The exit code, when it exited by itself.
    pub fn exit_code(&self) -> Option<i64> {
        match self.status {
            ExecStatus::Exited(c) => Some(c),
            _ => None,
        }
    }
}

/// A running container with limits, owned by this value: dropping it removes the container.
///
/// Prefer [`Sandbox::remove`] on the happy path (it reports errors); `Drop` is the safety net
/// for panics, timeouts and cancellation.
pub struct Sandbox {
    engine: Engine,
    id: String,
    run_id: String,
    limits: Limits,
    started: Instant,
    removed: bool,
    killed: AtomicBool,
    oom_seen: AtomicU64,
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
    /// Creates and starts a container from `spec`.
    pub async fn start(engine: &Engine, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let limits = &spec.limits;
        let wall_secs = limits.wall.as_secs().max(1);
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + wall_secs;
        let labels = HashMap::from([
            (LABEL_RUN.to_owned(), spec.run_id.clone()),
            (LABEL_OWNER.to_owned(), reaper::owner_id()),
            (LABEL_DEADLINE.to_owned(), deadline.to_string()),
        ]);
        let memory = (limits.memory_mb * 1024 * 1024) as i64;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // PID 1 is the wall clock: when it ends the container stops and removes itself.
            cmd: Some(vec!["sleep".to_owned(), wall_secs.to_string()]),
            entrypoint: Some(Vec::new()),
            labels: Some(labels),
            env: Some(spec.env.clone()),
            working_dir: spec.workdir.clone(),
            host_config: Some(HostConfig {
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some((limits.cpus * 1e9) as i64),
                pids_limit: Some(limits.pids),
                network_mode: Some(if limits.network { "bridge" } else { "none" }.to_owned()),
                cap_drop: Some(vec!["ALL".to_owned()]),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                init: Some(true),
                auto_remove: Some(true),
                tmpfs: (limits.tmp_mb > 0).then(|| {
                    HashMap::from([
                        (
                            "/tmp".to_owned(),
                            format!("rw,nosuid,nodev,mode=1777,size={}m", limits.tmp_mb.max(1)),
                        ),
                        (
                            "/var/tmp".to_owned(),
                            "rw,nosuid,nodev,mode=1777,size=16m".to_owned(),
                        ),
                        (
                            "/run/lock".to_owned(),
                            "rw,nosuid,nodev,noexec,mode=1777,size=1m".to_owned(),
                        ),
                    ])
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
        let sandbox = Sandbox {
            engine: engine.clone(),
            id: created.id,
            run_id: spec.run_id.clone(),
            limits: limits.clone(),
            started: Instant::now(),
            removed: false,
            killed: AtomicBool::new(false),
            oom_seen: AtomicU64::new(0),
        };
        // From here on the guard owns the container, so a failed start still removes it.
        engine.docker.start_container(&sandbox.id, None).await?;
        debug!(container = %sandbox.short_id(), image = %spec.image, "sandbox started");
        Ok(sandbox)
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

    /// Runs a command, keeping the tail of its output.
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.exec_with(req, |_, _| {}).await
    }

    /// Runs a command, handing every chunk of output to `on_output` as it arrives.
    pub async fn exec_with<F>(
        &self,
        req: &ExecRequest,
        mut on_output: F,
    ) -> Result<ExecOutput, SandboxError>
    where
        F: FnMut(OutputStream, &[u8]) + Send,
    {
        let remaining = self.remaining();
        if remaining.is_zero() || self.killed.load(Ordering::SeqCst) {
            return Err(self.wall_clock_error());
        }
        let timeout = req.timeout.min(remaining);
        // `timeout` kills the command's whole process group; the host-side deadline below is
        // the fallback for a command that escapes it.
        let mut cmd = vec![
            "timeout".to_owned(),
            "-k".to_owned(),
            "2".to_owned(),
            format!("{:.3}", timeout.as_secs_f64()),
        ];
        cmd.extend(req.cmd.iter().cloned());
        let exec = self
            .engine
            .docker
            .create_exec(
                &self.id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    attach_stdin: Some(req.stdin.is_some()),
                    cmd: Some(cmd),
                    env: Some(req.env.clone()),
                    working_dir: req.workdir.clone(),
                    user: req.user.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.map_gone(e))?;
        let begun = Instant::now();
        let mut stdout = BoundedBuf::new(req.output_cap);
        let mut stderr = BoundedBuf::new(req.output_cap);
        let started = self
            .engine
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(|e| self.map_gone(e))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(SandboxError::Tool {
                tool: "docker exec".into(),
                reason: "engine did not attach output".into(),
            });
        };
        if let Some(bytes) = &req.stdin {
            use tokio::io::AsyncWriteExt;
            input
                .write_all(bytes)
                .await
                .and(input.flush().await)
                .map_err(|e| SandboxError::io("writing a command's stdin", e))?;
            // End of input: readers that wait for it (tar) go on.
            let _ = input.shutdown().await;
        }
        let host_deadline = tokio::time::Instant::now() + timeout + HOST_GRACE;
        let read_all = async {
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(bollard::container::LogOutput::StdOut { message }) => {
                        on_output(OutputStream::Stdout, &message);
                        stdout.push(&message);
                    }
                    Ok(bollard::container::LogOutput::StdErr { message }) => {
                        on_output(OutputStream::Stderr, &message);
                        stderr.push(&message);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %e, "exec output stream ended with an error");
                        break;
                    }
                }
            }
        };
        let host_timed_out = tokio::time::timeout_at(host_deadline, read_all)
            .await
            .is_err();
        let duration = begun.elapsed();
        let status = if host_timed_out {
            warn!(container = %self.short_id(), "command outlived its timeout; killing the sandbox");
            self.kill().await;
            ExecStatus::TimedOut
        } else {
            let code = self.exit_code_of(&exec.id).await?;
            self.classify(code, duration, timeout).await
        };
        Ok(ExecOutput {
            status,
            stdout: stdout.to_string_lossy(),
            stderr: stderr.to_string_lossy(),
            stdout_dropped: stdout.dropped(),
            stderr_dropped: stderr.dropped(),
            duration,
        })
    }

    async fn exit_code_of(&self, exec_id: &str) -> Result<i64, SandboxError> {
        // The stream can end a moment before the engine records the exit code.
        for _ in 0..500 {
            let inspect = self
                .engine
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| self.map_gone(e))?;
            if inspect.running != Some(true)
                && let Some(code) = inspect.exit_code
            {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if self.remaining().is_zero() {
            return Err(self.wall_clock_error());
        }
        Err(SandboxError::Tool {
            tool: "docker exec".into(),
            reason: "the engine never reported an exit code".into(),
        })
    }

    async fn classify(&self, code: i64, duration: Duration, timeout: Duration) -> ExecStatus {
        // 124: `timeout` fired; 137: killed by SIGKILL (timeout -k, or the OOM killer).
        let near_timeout = duration + Duration::from_millis(50) >= timeout;
        if code == 137 && self.oom_kills_increased().await {
            return ExecStatus::OutOfMemory;
        }
        if (code == 124 || code == 137) && near_timeout {
            return ExecStatus::TimedOut;
        }
        ExecStatus::Exited(code)
    }

    /// Reads the cgroup's OOM-kill counter; true when it grew since the last look.
    async fn oom_kills_increased(&self) -> bool {
        let probe = ExecRequest::shell(
            "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null",
        )
        .timeout(Duration::from_secs(10));
        let Ok(out) = Box::pin(self.exec_raw_counter(&probe)).await else {
            return false;
        };
        let count = out
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let before = self.oom_seen.swap(count, Ordering::SeqCst);
        count > before
    }

    /// CPU time the container's processes used so far, read from its cgroup (v1 or v2).
    pub async fn cpu_seconds(&self) -> Result<f64, SandboxError> {
        let probe = ExecRequest::shell(
            "cat /sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/cpu.stat 2>/dev/null",
        )
        .timeout(Duration::from_secs(10));
        let out = self.exec_raw_counter(&probe).await?;
        Ok(parse_cpu_usage(&out).unwrap_or(0.0))
    }

    async fn exec_raw_counter(&self, req: &ExecRequest) -> Result<String, SandboxError> {
        let exec = self
            .engine
            .docker
            .create_exec(
                &self.id,
                ExecConfig {
                    attach_stdout: Some(true),
                    cmd: Some(req.cmd.clone()),
                    ..Default::default()
                },
            )
            .await?;
        let mut text = String::new();
        if let StartExecResults::Attached { mut output, .. } =
            self.engine.docker.start_exec(&exec.id, None).await?
        {
            while let Some(Ok(chunk)) = output.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        Ok(text)
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

    /// Whether `path` lies on one of the sandbox's tmpfs mounts, which the engine's copy API
    /// cannot see (it works on the container's own file system).
    fn on_tmpfs(&self, path: &str) -> bool {
        self.limits.tmp_mb > 0
            && TMPFS_MOUNTS
                .iter()
                .any(|m| path == *m || path.starts_with(&format!("{m}/")))
    }

    async fn put_tar(&self, dest: &str, tar: Vec<u8>) -> Result<(), SandboxError> {
        if self.on_tmpfs(dest) {
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
        self.engine
            .docker
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
        if self.on_tmpfs(path) {
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
        let mut stream = self.engine.docker.download_from_container(
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
        self.removed = true;
        remove_container(&self.engine.docker, &self.id).await
    }

    async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Err(e) = remove_container(&self.engine.docker, &self.id).await {
            warn!(container = %self.short_id(), error = %e, "could not kill sandbox");
        }
    }

    fn wall_clock_error(&self) -> SandboxError {
        SandboxError::WallClockExceeded {
            id: self.short_id().to_owned(),
            limit: self.limits.wall,
        }
    }

    /// An engine error on a container that vanished is the wall clock (or a kill) at work.
    fn map_gone(&self, e: bollard::errors::Error) -> SandboxError {
        match status_of(&e) {
            Some(404) | Some(409)
                if self.remaining().is_zero() || self.killed.load(Ordering::SeqCst) =>
            {
                self.wall_clock_error()
            }
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
        let id = self.id.clone();
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
                Ok(rt) => rt.block_on(remove_container(&docker, &id)),
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
