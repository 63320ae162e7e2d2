//! One local round, end to end on this machine: the base image (built if missing), a task
//! (from the store, or forged from PyPI), the built-in agent solving it with the configured
//! model (the embedded one by default), the patch evaluated in a fresh container, the score,
//! and the (problem, solution, score) record appended to the dataset store.

use std::time::Duration;

use serde::Serialize;

use super::scoring::{final_score, time_score};
use crate::agent::{AgentConfig, Episode, Protocol, solve};
use crate::dataset::{Record, RecordStore};
use crate::eval::{EvalConfig, Verdict, evaluate};
use crate::llm::LlmClient;
use crate::sandbox::Engine;
use crate::tasks::{Forge, ForgeConfig, Task, TaskStore};

/// What to run.
#[derive(Debug, Clone)]
pub struct RoundConfig {
    /// Packages to forge from when the store has no task (`name` or `name==version`).
    pub packages: Vec<(String, Option<String>)>,
    pub forge: ForgeConfig,
    pub agent: AgentConfig,
    pub eval: EvalConfig,
    /// Hotkeys written into the record (the local round has no chain).
    pub validator_hotkey: String,
    pub miner_hotkey: String,
}

/// What the round did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub round_id: String,
    pub instance_id: String,
    pub model: String,
    pub exit_status: crate::agent::ExitStatus,
    pub patch_bytes: usize,
    pub outcome: crate::eval::Outcome,
    pub resolved: bool,
    pub final_score: f64,
    pub record_seq: u64,
    pub agent_seconds: f64,
    pub eval_seconds: f64,
}

/// Errors of a round.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("no task: every package was skipped ({0})")]
    NoTask(String),
    #[error(transparent)]
    Forge(#[from] crate::tasks::ForgeError),
    #[error(transparent)]
    Store(#[from] crate::tasks::store::StoreError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error(transparent)]
    Pypi(#[from] crate::tasks::pypi::PypiError),
}

/// Picks a stored task (the `rotation`-th, cycling), forging one when the store is empty.
pub async fn pick_task(
    engine: &Engine,
    store: &TaskStore,
    cfg: &RoundConfig,
    rotation: u64,
) -> Result<Task, RoundError> {
    let stored = store.all(None)?;
    if !stored.is_empty() {
        let i = (rotation % stored.len() as u64) as usize;
        return Ok(stored[i].clone());
    }
    let forge = Forge::new(engine, cfg.forge.clone())?;
    let mut reasons = Vec::new();
    for (name, version) in &cfg.packages {
        let report = forge
            .forge_package(name, version.as_deref(), Some(store))
            .await?;
        if let Some(id) = report.task_ids.first()
            && let Some(t) = store.get(id)?
        {
            return Ok(t);
        }
        reasons.push(format!(
            "{name}: {}",
            report.skipped.unwrap_or_else(|| "no task".into())
        ));
    }
    Err(RoundError::NoTask(reasons.join("; ")))
}

/// Runs the round's solve, evaluate, score and record steps on `task`.
pub async fn run_round(
    engine: &Engine,
    task: &Task,
    llm: &LlmClient,
    records: &mut RecordStore,
    cfg: &RoundConfig,
    round_id: &str,
) -> Result<RoundReport, RoundError> {
    let episode: Episode = solve(engine, task, llm, &cfg.agent).await?;
    let verdict: Verdict = if episode.patch.trim().is_empty() {
        evaluate(engine, task, "", &cfg.eval).await
    } else {
        evaluate(engine, task, &episode.patch, &cfg.eval).await
    };
    let limit = cfg.agent.wall.as_secs_f64();
    let speed = time_score(episode.elapsed_s, limit);
    let score = final_score(verdict.resolved, None, speed);
    let mut record = Record::for_task(task);
    record.round_id = round_id.to_owned();
    record.validator_hotkey = cfg.validator_hotkey.clone();
    record.miner_hotkey = cfg.miner_hotkey.clone();
    record.miner_uid = 0;
    record.agent = match cfg.agent.protocol {
        Protocol::ToolCalls => "agentao-tools",
        Protocol::Text => "agentao-text",
        Protocol::External => "external",
    }
    .to_owned();
    record.model = episode.model.clone();
    record.patch = episode.patch.clone();
    record.trajectory = serde_json::to_string(&episode).unwrap_or_default();
    record.resolved = verdict.resolved;
    record.outcome = serde_json::to_value(&verdict.outcome)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let mut tests = serde_json::Map::new();
    for (k, v) in verdict.fail_to_pass.iter().chain(&verdict.pass_to_pass) {
        tests.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
    }
    record.tests_status = serde_json::Value::Object(tests).to_string();
    record.time_score = speed;
    record.final_score = score;
    record.cost_usd = episode.cost;
    record.prompt_tokens = episode.usage.prompt_tokens as i64;
    record.completion_tokens = episode.usage.completion_tokens as i64;
    record.response_seconds = episode.elapsed_s;
    record.eval_seconds = verdict.timings.total_s;
    let seq = records.append(&mut record)?;
    Ok(RoundReport {
        round_id: round_id.to_owned(),
        instance_id: task.instance_id.clone(),
        model: episode.model,
        exit_status: episode.exit_status,
        patch_bytes: episode.patch.len(),
        outcome: verdict.outcome,
        resolved: verdict.resolved,
        final_score: score,
        record_seq: seq,
        agent_seconds: episode.elapsed_s,
        eval_seconds: verdict.timings.total_s,
    })
}

/// A default wall clock for a local round's agent.
pub const LOCAL_AGENT_WALL: Duration = Duration::from_secs(300);
