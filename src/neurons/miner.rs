//! The miner's side of a round: answer a validator's `CodingTask` by running the SWE agent in a
//! sandbox on the task's repository and returning its unified diff, with the agent's name,
//! model, tokens, cost and time.
//!
//! The workspace comes from the miner's task store (`task_id`): forged tasks are built from
//! public PyPI releases, and the synapse carries no tree (the bug diff would be the answer), so
//! a miner answers tasks it holds: those of a validator sharing its data directory, as in the
//! local round. An unknown task gets an empty patch and a log line, never a failed request.

use std::path::PathBuf;
use std::sync::Arc;

use crate::agent::{AgentConfig, Protocol, solve};
use crate::llm::LlmClient;
use crate::sandbox::Engine;
use crate::subnet::{Axon, CodingTask};
use crate::tasks::TaskStore;

/// What a miner runs.
#[derive(Clone)]
pub struct Miner {
    pub engine: Engine,
    pub llm: LlmClient,
    pub agent: AgentConfig,
    /// The task store `task_id`s are looked up in.
    pub store: PathBuf,
}

impl Miner {
    /// The agent's public name.
    pub fn agent_name(&self) -> &'static str {
        match self.agent.protocol {
            Protocol::ToolCalls => "agentao-tools",
            Protocol::Text => "agentao-text",
            Protocol::External => "external",
        }
    }

    /// Answers one task.
    pub async fn answer(&self, mut task: CodingTask) -> CodingTask {
        task.agent_name = self.agent_name().into();
        task.patch = Some(String::new());
        let stored = TaskStore::open(&self.store).and_then(|s| s.get(&task.task_id));
        let found = match stored {
            Ok(Some(t)) => t,
            Ok(None) => {
                tracing::warn!(task_id = %task.task_id, "unknown task: answering with an empty patch");
                return task;
            }
            Err(e) => {
                tracing::error!(task_id = %task.task_id, error = %e, "task store");
                return task;
            }
        };
        let mut agent = self.agent.clone();
        if task.time_limit > 0.0 {
            // Leave the validator a margin for the answer to travel back.
            let limit = std::time::Duration::from_secs_f64((task.time_limit * 0.9).max(1.0));
            agent.wall = agent.wall.min(limit);
        }
        match solve(&self.engine, &found, &self.llm, &agent).await {
            Ok(episode) => {
                tracing::info!(task_id = %task.task_id, exit = ?episode.exit_status,
                    patch_bytes = episode.patch.len(), seconds = episode.elapsed_s, "answered");
                task.patch = Some(episode.patch);
                task.model = episode.model;
                task.cost = episode.cost;
                task.elapsed = episode.elapsed_s;
                task.prompt_tokens = episode.usage.prompt_tokens;
                task.completion_tokens = episode.usage.completion_tokens;
            }
            Err(e) => tracing::error!(task_id = %task.task_id, error = %e, "agent failed"),
        }
        task
    }

    /// `axon` serving `CodingTask` with this miner.
    pub fn serve_on(self, axon: Axon) -> Axon {
        let miner = Arc::new(self);
        axon.coding_task(move |s| {
            let miner = miner.clone();
            async move { miner.answer(s.body).await }
        })
    }
}
