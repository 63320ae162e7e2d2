//! The miner's side of a round: answer a validator's `CodingTask` by running the SWE agent in a
//! sandbox on the task's repository and returning its unified diff, with the agent's name,
//! model, tokens, cost and time.
//!
//! Where the task comes from, in this order: the portable description the synapse carries
//! (`spec`, materialised on this machine by `materialize/`: the miner's own index, engine and
//! caches), the miner's own task store (`task_id`: a validator sharing its data directory, as
//! in the local round), or, for the original subnet's protocol (`repo` = `owner/name` and a
//! statement, nothing else), the repository cloned at its HEAD. A description whose bundle
//! was over the sender's inline cap names it by sha256, and the bundle is fetched from the
//! sender's axon (`fetch.rs`). The answer echoes the hash of
//! the description worked on (`spec_hash`). A task that cannot be had (refused description,
//! tampered bundle, unknown id) gets an empty patch and one log line saying why, never a failed
//! request; a model that is down and cannot be restarted gets an error status, never an empty
//! patch.
//! With `repair` set, the model-free repair baseline (`forge::repair`) answers instead.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;

use crate::agent::{AgentConfig, Protocol, solve};
use crate::forge::repair::{RepairConfig, repair};
use crate::llm::LlmClient;
use crate::llm::local::SharedServer;
use crate::materialize::Materializer;
use crate::sandbox::Engine;
use crate::subnet::{Axon, CodingTask, Dendrite, HandlerError};
use crate::tasks::{Task, TaskStore};

mod fetch;
mod run;
pub use fetch::{BundleFetch, FETCH_TIMEOUT};
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
    /// Builds tasks from the descriptions validators send (and from original-protocol
    /// requests); without it only stored tasks are answered.
    pub materializer: Option<Arc<Materializer>>,
    /// Answer with the model-free repair baseline (`--agent repair`) instead of the agent;
    /// its patch travels and is judged like any other.
    pub repair: Option<RepairConfig>,
}

impl Miner {
    /// The agent's public name.
    pub fn agent_name(&self) -> &'static str {
        if self.repair.is_some() {
            return "agentao-repair";
        }
        match self.agent.protocol {
            Protocol::ToolCalls => "agentao-tools",
            Protocol::Text => "agentao-text",
            Protocol::External => "external",
        }
    }

    /// Answers one task. An episode that ended in a model error says so in `model_error`; a
    /// model server that is down and does not come back makes the answer an error status
    /// ([`MODEL_DOWN_STATUS`]) instead of an empty patch.
    pub async fn answer(&self, task: CodingTask) -> Result<CodingTask, HandlerError> {
        self.answer_from(task, None).await
    }

    /// As [`Miner::answer`], for a task sent by the hotkey `caller`, whose axon a bundle not
    /// sent inline is fetched from with `fetch`.
    pub async fn answer_from(
        &self,
        mut task: CodingTask,
        sender: Option<(&BundleFetch, &str)>,
    ) -> Result<CodingTask, HandlerError> {
        task.agent_name = self.agent_name().into();
        task.patch = Some(String::new());
        let sent_hash = std::mem::take(&mut task.spec_hash);
        let Some((found, hash)) = self.task_for(&task, &sent_hash, sender).await else {
            return Ok(task);
        };
        task.spec_hash = hash;
        if let Some(rc) = &self.repair {
            let mut rc = rc.clone();
            if task.time_limit > 0.0 {
                let limit = std::time::Duration::from_secs_f64((task.time_limit * 0.8).max(1.0));
                rc.wall = rc.wall.min(limit);
            }
            match repair(&self.engine, &found, &rc).await {
                Ok(r) => {
                    tracing::info!(task_id = %task.task_id, solved = r.solved, candidates = r.candidates,
                        seconds = r.seconds, fix = ?r.fix, "repair baseline answered");
                    task.patch = Some(r.patch);
                    task.model = "none (program repair)".into();
                    task.elapsed = r.seconds;
                }
                Err(e) => tracing::error!(task_id = %task.task_id, error = %e, "repair failed"),
            }
            return Ok(task);
        }
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
                task.trajectory = episode.trajectory_within(crate::subnet::MAX_TRAJECTORY_BYTES);
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

    /// The task to work on and the description hash to echo, or `None` (logged) when there is
    /// none: see the module doc for the order.
    async fn task_for(
        &self,
        task: &CodingTask,
        sent_hash: &str,
        sender: Option<(&BundleFetch, &str)>,
    ) -> Option<(Task, String)> {
        let id = task.task_id.as_str();
        if let Some(spec) = &task.spec {
            let Some(m) = &self.materializer else {
                tracing::warn!(task_id = %id, "a task description came, but this miner does not materialise; answering with an empty patch");
                return None;
            };
            let claimed = spec
                .get("hash")
                .and_then(|h| h.as_str())
                .unwrap_or_default();
            if claimed != sent_hash {
                tracing::warn!(task_id = %id, signed = %sent_hash, claimed, "refused: the description is not the one the request's signature covers; answering with an empty patch");
                return None;
            }
            let cap = m.config().max_bundle_bytes;
            if task.bundle.len() as u64 > cap.saturating_mul(4) / 3 + 4 {
                tracing::warn!(task_id = %id, bytes = task.bundle.len(), cap, "refused: the bundle is over the cap; answering with an empty patch");
                return None;
            }
            let mut bundle = match base64::engine::general_purpose::STANDARD.decode(&task.bundle) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "refused: the bundle is not base64; answering with an empty patch");
                    return None;
                }
            };
            let named = spec
                .pointer("/workspace/sha256")
                .and_then(|h| h.as_str())
                .filter(|_| {
                    spec.pointer("/workspace/kind").and_then(|k| k.as_str()) == Some("bundle")
                });
            if let (true, Some(sha256)) = (bundle.is_empty(), named) {
                let Some((fetch, caller)) = sender else {
                    tracing::warn!(task_id = %id, "refused: the bundle is not inline and there is no sender to fetch it from; answering with an empty patch");
                    return None;
                };
                bundle = match fetch.fetch(caller, sha256).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(task_id = %id, %sha256, "refused: the bundle could not be fetched from the sender, answering with an empty patch: {e}");
                        return None;
                    }
                };
                tracing::info!(task_id = %id, %sha256, bytes = bundle.len(), "bundle fetched from the sender");
            }
            return match m.from_wire(spec, &bundle).await {
                Ok(done) => Some((done.task, done.hash)),
                Err(e) => {
                    tracing::warn!(task_id = %id, "cannot materialise the task, answering with an empty patch: {e}");
                    None
                }
            };
        }
        if !id.is_empty() {
            return match TaskStore::open(&self.store).and_then(|s| s.get(id)) {
                Ok(Some(t)) => Some((t, sent_hash.to_owned())),
                Ok(None) => {
                    tracing::warn!(task_id = %id, "unknown task and no description: answering with an empty patch");
                    None
                }
                Err(e) => {
                    tracing::error!(task_id = %id, error = %e, "task store");
                    None
                }
            };
        }
        let Some(m) = &self.materializer else {
            tracing::warn!(repo = %task.repo, "an original-protocol task (repo and statement only), but this miner does not materialise; answering with an empty patch");
            return None;
        };
        match m.original(&task.repo, &task.problem_statement).await {
            Ok(done) => Some((done.task, String::new())),
            Err(e) => {
                tracing::warn!(repo = %task.repo, "cannot check out the original-protocol task, answering with an empty patch: {e}");
                None
            }
        }
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
    /// A bundle not sent inline is fetched from the sender's axon, signed with `axon`'s key.
    pub fn serve_on(self, axon: Axon) -> Axon {
        let cap = self
            .materializer
            .as_ref()
            .map_or(0, |m| m.config().max_bundle_bytes);
        let fetch = Arc::new(BundleFetch::new(
            Dendrite::new(axon.keypair().clone()),
            axon.metagraph_handle(),
            cap,
        ));
        let miner = Arc::new(self);
        axon.coding_task_or_error(move |s| {
            let (miner, fetch) = (miner.clone(), fetch.clone());
            let caller = s.dendrite.as_ref().and_then(|d| d.hotkey.clone());
            async move {
                let sender = caller.as_deref().map(|c| (fetch.as_ref(), c));
                miner.answer_from(s.body, sender).await
            }
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
