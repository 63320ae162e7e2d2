//! The synapses beside the coding task: `Forecast` (Cerebro-style predictions), `AgentCode`
//! (a miner's agent file, for agents run as code) and `TaskBundle` (a task's workspace bundle
//! fetched from the validator that sent it). Serialised and signed like every synapse
//! (`synapse.rs`).

use serde::{Deserialize, Serialize};

use super::synapse::SynapseBody;

/// A question for Cerebro-style forecasters: will an agent solve this task, and how fast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    #[serde(default)]
    pub task_id: String,
    #[serde(default)]
    pub problem_statement: String,
    #[serde(default)]
    pub repo: String,
    /// Filled by the miner: probability the task gets solved, expected seconds, difficulty.
    #[serde(default)]
    pub solve_probability: Option<f64>,
    #[serde(default)]
    pub expected_seconds: Option<f64>,
    #[serde(default)]
    pub difficulty: Option<f64>,
}

impl SynapseBody for Forecast {
    const NAME: &'static str = "Forecast";
    const REQUIRED_HASH_FIELDS: &'static [&'static str] = &["task_id", "problem_statement", "repo"];
    fn hash_fields(&self) -> Vec<String> {
        vec![
            self.task_id.clone(),
            self.problem_statement.clone(),
            self.repo.clone(),
        ]
    }
}

/// A miner's agent file (agents run as code): the validator asks for a version (by sha256,
/// or the current one when empty); the miner answers with the file, its sha256 and version.
/// The validator checks the sha256 itself and keeps every version it ran by hash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCode {
    /// Asked: the sha256 of a version; empty for the current one.
    #[serde(default)]
    pub sha256: String,
    /// Filled by the miner: the Python source (at most 1 MiB).
    #[serde(default)]
    pub code: Option<String>,
    /// Filled by the miner: the sha256 of `code` and its version number (1, 2, …).
    #[serde(default)]
    pub code_sha256: String,
    #[serde(default)]
    pub version: u32,
}

impl SynapseBody for AgentCode {
    const NAME: &'static str = "AgentCode";
    const REQUIRED_HASH_FIELDS: &'static [&'static str] = &["sha256"];
    fn hash_fields(&self) -> Vec<String> {
        vec![self.sha256.clone()]
    }
}

/// A task's workspace bundle asked of the validator that sent the task, by its sha256 (for a
/// bundle over the inline cap). The server fills `bundle` (base64); the asker checks its size
/// and hash before unpacking anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskBundle {
    #[serde(default)]
    pub sha256: String,
    /// Filled by the server: base64 of the bundle's bytes.
    #[serde(default)]
    pub bundle: String,
}

impl SynapseBody for TaskBundle {
    const NAME: &'static str = "TaskBundle";
    const REQUIRED_HASH_FIELDS: &'static [&'static str] = &["sha256"];
    fn hash_fields(&self) -> Vec<String> {
        vec![self.sha256.clone()]
    }
}
