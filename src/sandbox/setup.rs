//! A sandbox's setup: the work a container does before it is handed out (see [`Setup`]).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::exec::{ExecRequest, ExecStatus};
use super::{Sandbox, SandboxError, SandboxSpec};

/// Work a container does before it is handed out: one exec as root in the spec's working
/// directory, its input on stdin. A pooled container does it while it waits, so a request
/// served from the pool finds it done; a cold start does it before [`Sandbox::start`]
/// returns. It fails the start when it exits non-zero (or outlives `timeout`).
#[derive(Clone)]
pub struct Setup {
    /// The command.
    pub cmd: Vec<String>,
    /// Its standard input.
    pub stdin: Arc<Vec<u8>>,
    /// Time it may take.
    pub timeout: Duration,
    /// What names the work in the pool's key: sha256 of the command and the input.
    digest: String,
}

impl Setup {
    /// A setup running `cmd` with `stdin` on its standard input.
    pub fn new(cmd: Vec<String>, stdin: Vec<u8>, timeout: Duration) -> Setup {
        let mut h = Sha256::new();
        for arg in &cmd {
            h.update((arg.len() as u64).to_le_bytes());
            h.update(arg.as_bytes());
        }
        h.update(&stdin);
        Setup {
            cmd,
            stdin: Arc::new(stdin),
            timeout,
            digest: hex::encode(h.finalize()),
        }
    }

    /// sha256 of the command and its input: two setups with the same digest do the same work.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("cmd", &self.cmd)
            .field("stdin_bytes", &self.stdin.len())
            .field("digest", &self.digest)
            .finish()
    }
}

/// Runs the spec's [`Setup`], if any, in `sandbox`.
pub(super) async fn run(sandbox: &Sandbox, spec: &SandboxSpec) -> Result<(), SandboxError> {
    let Some(setup) = &spec.setup else {
        return Ok(());
    };
    let mut req = ExecRequest::new(setup.cmd.clone())
        .stdin(setup.stdin.as_ref().clone())
        .timeout(setup.timeout);
    if let Some(dir) = &spec.workdir {
        req = req.workdir(dir.clone());
    }
    let out = sandbox.exec(&req).await?;
    match out.status {
        ExecStatus::Exited(0) => Ok(()),
        status => {
            let said = format!("{}\n{}", out.stdout.trim(), out.stderr.trim());
            let said = said.trim();
            let tail = &said[said.floor_char_boundary(said.len().saturating_sub(2000))..];
            Err(SandboxError::Tool {
                tool: "the sandbox's setup".into(),
                reason: format!("{status:?}: {tail}"),
            })
        }
    }
}
