//! Commands in a sandbox: what to run ([`ExecRequest`]), how it ended ([`ExecStatus`],
//! [`ExecOutput`]), and [`Sandbox::exec`] itself — `timeout -k` inside, a host-side deadline
//! outside, output bounded as it streams, OOM read from the cgroup's counter.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use tracing::{debug, warn};

use super::container::{DEFAULT_OUTPUT_CAP, HOST_GRACE};
use super::kubernetes::KubeCluster;
use super::{BoundedBuf, Sandbox, SandboxError};

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
    fn of(
        status: ExecStatus,
        stdout: &BoundedBuf,
        stderr: &BoundedBuf,
        duration: Duration,
    ) -> Self {
        ExecOutput {
            status,
            stdout: stdout.to_string_lossy(),
            stderr: stderr.to_string_lossy(),
            stdout_dropped: stdout.dropped(),
            stderr_dropped: stderr.dropped(),
            duration,
        }
    }

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

impl Sandbox {
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
        if let Some(cluster) = self.placed.pod.clone() {
            return self.exec_in_pod(&cluster, req, timeout, on_output).await;
        }
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
            .placed
            .node
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
            .placed
            .node
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
        Ok(ExecOutput::of(status, &stdout, &stderr, duration))
    }

    /// [`Sandbox::exec_with`] in a Kubernetes pod: the same `timeout` wrapper (in the argv the
    /// cluster builds), the same host-side deadline and the same classification.
    async fn exec_in_pod<F>(
        &self,
        cluster: &KubeCluster,
        req: &ExecRequest,
        timeout: Duration,
        mut on_output: F,
    ) -> Result<ExecOutput, SandboxError>
    where
        F: FnMut(OutputStream, &[u8]) + Send,
    {
        let begun = Instant::now();
        let mut stdout = BoundedBuf::new(req.output_cap);
        let mut stderr = BoundedBuf::new(req.output_cap);
        let run = cluster.exec_request(&self.id, req, timeout, |is_stdout, bytes| {
            if is_stdout {
                on_output(OutputStream::Stdout, bytes);
                stdout.push(bytes);
            } else {
                on_output(OutputStream::Stderr, bytes);
                stderr.push(bytes);
            }
        });
        let ran = tokio::time::timeout(timeout + HOST_GRACE, run).await;
        let duration = begun.elapsed();
        let status = match ran {
            Err(_) => {
                warn!(pod = %self.id, "command outlived its timeout; killing the sandbox");
                self.kill().await;
                ExecStatus::TimedOut
            }
            Ok(code) => self.classify(code?, duration, timeout).await,
        };
        Ok(ExecOutput::of(status, &stdout, &stderr, duration))
    }

    async fn exit_code_of(&self, exec_id: &str) -> Result<i64, SandboxError> {
        match exit_code(&self.placed.node, exec_id)
            .await
            .map_err(|e| self.map_gone(e))?
        {
            Some(code) => Ok(code),
            None if self.remaining().is_zero() => Err(self.wall_clock_error()),
            None => Err(SandboxError::Tool {
                tool: "docker exec".into(),
                reason: "the engine never reported an exit code".into(),
            }),
        }
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
        if let Some(cluster) = &self.placed.pod {
            let mut text = String::new();
            cluster
                .exec(&self.id, req.cmd.clone(), None, |is_stdout, bytes| {
                    if is_stdout {
                        text.push_str(&String::from_utf8_lossy(bytes));
                    }
                })
                .await?;
            return Ok(text);
        }
        let exec = self
            .placed
            .node
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
            self.placed.node.start_exec(&exec.id, None).await?
        {
            while let Some(Ok(chunk)) = output.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        Ok(text)
    }
}

/// The exit code of a finished exec, waiting (about a second at most) for the engine to record
/// it: the output stream can end a moment before. `None` when it never does.
pub(super) async fn exit_code(
    docker: &bollard::Docker,
    exec_id: &str,
) -> Result<Option<i64>, bollard::errors::Error> {
    for _ in 0..500 {
        let inspect = docker.inspect_exec(exec_id).await?;
        if inspect.running != Some(true)
            && let Some(code) = inspect.exit_code
        {
            return Ok(Some(code));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(None)
}
