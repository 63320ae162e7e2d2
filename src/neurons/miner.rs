//! The miner's side of a round: answer a validator's `CodingTask` by running the SWE agent in a
//! sandbox on the task's repository and returning its unified diff, with the agent's name,
//! model, tokens, cost and time.
//!
//! The workspace comes from the miner's task store (`task_id`): forged tasks are built from
//! public PyPI releases, and the synapse carries no tree (the bug diff would be the answer), so
//! a miner answers tasks it holds: those of a validator sharing its data directory, as in the
//! local round. An unknown task gets an empty patch and a log line, never a failed request; a
//! model that is down and cannot be restarted gets an error status, never an empty patch.

use std::path::PathBuf;
use std::sync::Arc;

use crate::agent::{AgentConfig, Protocol, solve};
use crate::llm::LlmClient;
use crate::llm::local::SharedServer;
use crate::sandbox::Engine;
use crate::subnet::{Axon, CodingTask, HandlerError};
use crate::tasks::TaskStore;

mod run;
pub use run::{MinerConfig, MinerError, run};

/// Restarts of a dead embedded model server before the miner gives up on a request.
pub const MODEL_RESTARTS: u32 = 3;
/// The status a miner answers when its model is down and could not be brought back (with a
/// message starting [`MODEL_DOWN`]): the validator charges it to the miner. Not 500: a
/// dendrite takes a 500 for an SDK axon of the original class and asks again differently.
pub const MODEL_DOWN_STATUS: u16 = 503;
/// How that answer's message starts.
pub const MODEL_DOWN: &str = "miner model unavailable";

/// What a miner runs.
#[derive(Clone)]
pub struct Miner {
    pub engine: Engine,
    pub llm: LlmClient,
    pub agent: AgentConfig,
    /// The task store `task_id`s are looked up in.
    pub store: PathBuf,
    /// The embedded model server `llm` talks to, when this miner runs it: a dead server is
    /// reaped and restarted (at most [`MODEL_RESTARTS`] times a request).
    pub model_server: Option<SharedServer>,
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

    /// Answers one task. An episode that ended in a model error says so in `model_error`; a
    /// model server that is down and does not come back makes the answer an error status
    /// ([`MODEL_DOWN_STATUS`]) instead of an empty patch.
    pub async fn answer(&self, mut task: CodingTask) -> Result<CodingTask, HandlerError> {
        task.agent_name = self.agent_name().into();
        task.patch = Some(String::new());
        let stored = TaskStore::open(&self.store).and_then(|s| s.get(&task.task_id));
        let found = match stored {
            Ok(Some(t)) => t,
            Ok(None) => {
                tracing::warn!(task_id = %task.task_id, "unknown task: answering with an empty patch");
                return Ok(task);
            }
            Err(e) => {
                tracing::error!(task_id = %task.task_id, error = %e, "task store");
                return Ok(task);
            }
        };
        // A server that died since the last task is brought back before the episode.
        self.model_answers(false).await?;
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
                task.patch = Some(episode.patch.clone());
                task.model = episode.model.clone();
                task.cost = episode.cost;
                task.elapsed = episode.elapsed_s;
                task.prompt_tokens = episode.usage.prompt_tokens;
                task.completion_tokens = episode.usage.completion_tokens;
                if let Some(message) = episode.model_error() {
                    tracing::warn!(task_id = %task.task_id, steps = episode.steps.len(),
                        "the agent's model failed: {message}");
                    task.model_error = one_line(message);
                    // Dead or hung: restart it for the next task, or answer that it is down.
                    self.model_answers(true).await?;
                }
            }
            Err(e) => tracing::error!(task_id = %task.task_id, error = %e, "agent failed"),
        }
        Ok(task)
    }

    /// Makes sure the embedded model server (when this miner runs one) answers; with `probe`
    /// a live one must answer a completion too. The error status when it cannot be brought
    /// back.
    async fn model_answers(&self, probe: bool) -> Result<(), HandlerError> {
        let Some(server) = &self.model_server else {
            return Ok(());
        };
        let mut server = server.lock().await;
        match server.ensure_answering(MODEL_RESTARTS, probe).await {
            Ok(0) => Ok(()),
            Ok(tries) => {
                tracing::warn!(tries, url = %server.base_url, "the embedded model server had died and was restarted");
                Ok(())
            }
            Err(e) => {
                let message = one_line(&format!("{MODEL_DOWN}: {e}"));
                tracing::error!(
                    "the embedded model server is down and {MODEL_RESTARTS} restarts failed; answering {MODEL_DOWN_STATUS}: {e}"
                );
                Err(HandlerError {
                    status: MODEL_DOWN_STATUS,
                    message,
                })
            }
        }
    }

    /// `axon` serving `CodingTask` with this miner.
    pub fn serve_on(self, axon: Axon) -> Axon {
        let miner = Arc::new(self);
        axon.coding_task_or_error(move |s| {
            let miner = miner.clone();
            async move { miner.answer(s.body).await }
        })
    }
}

/// One line of printable ASCII (it travels in an HTTP header too), at most 1000 characters.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(1000)
        .collect()
}
