//! Agents as code: a miner's Python file (`agent_main(input: dict) -> str`, at most 1 MiB)
//! run by the validator on its own machine, in the task's environment image with the
//! workspace prepared as the built-in agent's (bug applied, history rebuilt, `/repo`).
//!
//! The sandbox joins a per-run internal Docker network and nothing else: its only route out
//! is the model proxy (`llm::proxy`), which listens on that network's gateway address. The
//! proxy runs in a container of its own ([`ProxyPlacement::Container`]: the base image plus
//! the agentao binary, built locally, with the host's network so it reaches a model on the
//! host's loopback) holding the validator's key, which the agent's container never gets; or
//! in this process ([`ProxyPlacement::InProcess`], for development).
//!
//! The agent's input JSON: `problem_statement`, `repo_path`, `proxy_url`, `instance_id`,
//! `model` (the first allowed), `fail_to_pass`. Its environment: `OPENAI_BASE_URL` (the
//! proxy) and a placeholder `OPENAI_API_KEY`, so OpenAI-style clients work unchanged.

pub mod copy;
mod proxy;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

pub use proxy::{ProxyPlacement, proxy_image};

use super::episode::{AgentError, prepare_workspace_on, repo_diff};
use crate::config::Limits;
use crate::llm::proxy::{ProxyConfig, ProxyUsage, seed_for};
use crate::sandbox::{Engine, ExecRequest, Network};
use crate::tasks::Task;

/// Largest agent file.
pub const MAX_AGENT_BYTES: usize = 1 << 20;
/// Default wall clock of one agent run.
pub const DEFAULT_WALL: Duration = Duration::from_secs(20 * 60);
/// The runner script, as a file in the sandbox.
const RUNNER: &str = include_str!("runner.py");
/// Where the agent's files go in its sandbox.
const DIR: &str = "/opt/agentao-agent";
/// Placeholder key the agent sees; the proxy ignores it.
pub const PLACEHOLDER_KEY: &str = "agentao-proxy";

/// How an agent file is run.
#[derive(Debug, Clone)]
pub struct CodeRunConfig {
    /// `agentao.run` label of the run's containers and network.
    pub run_id: String,
    /// The agent sandbox's limits (its network setting is ignored: it gets the internal one).
    pub limits: Limits,
    /// Wall clock of the agent.
    pub wall: Duration,
    /// The proxy's upstream, key, models, cap and rate (the seed is set from the task id).
    pub proxy: ProxyConfig,
    /// Where the proxy runs.
    pub placement: ProxyPlacement,
}

impl CodeRunConfig {
    pub fn new(run_id: &str, proxy: ProxyConfig, placement: ProxyPlacement) -> CodeRunConfig {
        CodeRunConfig {
            run_id: run_id.to_owned(),
            limits: Limits::default(),
            wall: DEFAULT_WALL,
            proxy,
            placement,
        }
    }
}

/// How an agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeExit {
    /// `agent_main` returned a string.
    Returned,
    /// It raised, returned something else, or the interpreter died.
    Failed,
    /// The wall clock ran out.
    TimeLimit,
}

/// What one agent run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRun {
    pub instance_id: String,
    /// sha256 of the agent file (hex).
    pub agent_sha256: String,
    pub exit: CodeExit,
    /// The returned diff (empty unless `Returned`).
    pub patch: String,
    /// `git diff` of `/repo` at the end, for the record (the returned diff is what counts).
    pub workspace_diff: String,
    /// The proxy's accounting of the run.
    pub usage: ProxyUsage,
    /// The tail of the agent's stderr.
    pub stderr_tail: String,
    pub elapsed_s: f64,
}

/// sha256 of an agent file, hex.
pub fn agent_hash(code: &[u8]) -> String {
    hex::encode(Sha256::digest(code))
}

/// Refuses a file the runner would not take: too large, not UTF-8, no `agent_main`.
pub fn check_agent_file(code: &[u8]) -> Result<(), AgentError> {
    if code.len() > MAX_AGENT_BYTES {
        return Err(AgentError::AgentFile(format!(
            "the agent file has {} bytes, more than the cap of {MAX_AGENT_BYTES}",
            code.len()
        )));
    }
    let text = std::str::from_utf8(code)
        .map_err(|_| AgentError::AgentFile("the agent file is not UTF-8".into()))?;
    if !text.contains("def agent_main") {
        return Err(AgentError::AgentFile(
            "the agent file defines no agent_main(input)".into(),
        ));
    }
    Ok(())
}

/// Runs the agent file `code` on `task` behind a fresh proxy; the network, the proxy and the
/// sandbox are removed before it returns.
pub async fn run_agent_code(
    engine: &Engine,
    task: &Task,
    code: &[u8],
    cfg: &CodeRunConfig,
) -> Result<CodeRun, AgentError> {
    check_agent_file(code)?;
    let started = Instant::now();
    let network = Network::internal(engine, &cfg.run_id).await?;
    let mut proxy_cfg = cfg.proxy.clone();
    proxy_cfg.seed = seed_for(&task.instance_id);
    let result = async {
        let proxy = proxy::start(engine, &network, &proxy_cfg, &cfg.placement, cfg).await?;
        let outcome = run_in_sandbox(engine, task, code, cfg, &network, &proxy.url).await;
        let usage = proxy.finish().await;
        outcome.map(|mut run| {
            run.usage = usage;
            run
        })
    }
    .await;
    if let Err(e) = network.remove().await {
        warn!(error = %e, "could not remove the run's network");
    }
    let mut run = result?;
    run.elapsed_s = started.elapsed().as_secs_f64();
    info!(task = %task.instance_id, agent = %&run.agent_sha256[..12], exit = ?run.exit,
          requests = run.usage.requests, cost = run.usage.cost_usd, elapsed_s = run.elapsed_s,
          "agent file ran");
    Ok(run)
}

async fn run_in_sandbox(
    engine: &Engine,
    task: &Task,
    code: &[u8],
    cfg: &CodeRunConfig,
    network: &Network,
    proxy_url: &str,
) -> Result<CodeRun, AgentError> {
    let mut limits = cfg.limits.clone();
    limits.network = false;
    limits.wall = cfg.wall + Duration::from_secs(180);
    let sb = prepare_workspace_on(engine, task, &limits, &cfg.run_id, Some(network.name())).await?;
    let input = serde_json::json!({
        "instance_id": task.instance_id,
        "problem_statement": task.problem_statement,
        "repo_path": "/repo",
        "proxy_url": proxy_url,
        "model": cfg.proxy.models.first(),
        "fail_to_pass": task.fail_to_pass,
    });
    let input = serde_json::to_vec_pretty(&input).unwrap_or_default();
    sb.write_files(
        "/",
        &[
            (format!("{}/agent.py", &DIR[1..]), code, 0o644),
            (format!("{}/runner.py", &DIR[1..]), RUNNER.as_bytes(), 0o644),
            (format!("{}/input.json", &DIR[1..]), &input[..], 0o644),
        ],
    )
    .await?;
    let result_path = "/tmp/agentao-agent-result.diff";
    let exec = ExecRequest::new([
        "python3".to_owned(),
        "-B".to_owned(),
        format!("{DIR}/runner.py"),
        format!("{DIR}/agent.py"),
        format!("{DIR}/input.json"),
        result_path.to_owned(),
    ])
    .workdir("/repo")
    .timeout(cfg.wall)
    .output_cap(64 * 1024)
    .env(format!("OPENAI_BASE_URL={proxy_url}"))
    .env(format!("OPENAI_API_KEY={PLACEHOLDER_KEY}"))
    .env("HOME=/tmp");
    let (exit, stderr_tail) = match sb.exec(&exec).await {
        Ok(o) if o.success() => (CodeExit::Returned, o.stderr),
        Ok(o) if matches!(o.status, crate::sandbox::ExecStatus::TimedOut) => {
            (CodeExit::TimeLimit, o.stderr)
        }
        Ok(o) => (CodeExit::Failed, o.stderr),
        Err(e) if !e.is_environment() => (CodeExit::TimeLimit, e.to_string()),
        Err(e) => return Err(AgentError::Sandbox(e)),
    };
    let patch = match exit {
        CodeExit::Returned => sb
            .read_file(result_path, 4 << 20)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let workspace_diff = match exit {
        CodeExit::TimeLimit => String::new(),
        _ => repo_diff(&sb).await.unwrap_or_default(),
    };
    let _ = sb.remove().await;
    Ok(CodeRun {
        instance_id: task.instance_id.clone(),
        agent_sha256: agent_hash(code),
        exit,
        patch,
        workspace_diff,
        usage: ProxyUsage::default(),
        stderr_tail: tail(&stderr_tail, 4000),
        elapsed_s: 0.0,
    })
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_owned()
}
