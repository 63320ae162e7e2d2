//! `agentao sandbox -- CMD…`: one command in a fresh sandbox, with the configured limits.

use std::time::Duration;

use clap::Args;

use super::context;
use super::printer;
use crate::config::Settings;
use crate::sandbox::{ExecRequest, ExecStatus, OutputStream, Sandbox, SandboxSpec};

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Image to run (default: agentao/base:latest).
    #[arg(long)]
    pub image: Option<String>,
    /// Seconds the command may run.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Give the sandbox a network (off by default).
    #[arg(long)]
    pub network: bool,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(args: SandboxArgs, settings: &Settings) -> anyhow::Result<()> {
    let engine = context::engine(settings).await?;
    let image = args
        .image
        .unwrap_or_else(|| format!("{}:latest", crate::sandbox::BASE_REPO));
    let mut spec = SandboxSpec::new(image, settings.run_id.clone());
    spec.limits = settings.limits.clone();
    spec.limits.network = args.network;
    let sandbox = Sandbox::start(&engine, &spec).await?;
    let req = ExecRequest::new(args.command).timeout(Duration::from_secs(args.timeout));
    let out = sandbox
        .exec_with(&req, |stream, bytes| match stream {
            OutputStream::Stdout => printer::data_raw(bytes),
            OutputStream::Stderr => printer::stderr_raw(bytes),
        })
        .await;
    sandbox.remove().await?;
    let out = out?;
    match out.status {
        ExecStatus::Exited(0) => Ok(()),
        ExecStatus::Exited(code) => anyhow::bail!("command exited with {code}"),
        ExecStatus::TimedOut => anyhow::bail!("command timed out after {}s", args.timeout),
        ExecStatus::OutOfMemory => anyhow::bail!(
            "command was killed by the OOM killer (limit {} MiB)",
            settings.limits.memory_mb
        ),
    }
}
