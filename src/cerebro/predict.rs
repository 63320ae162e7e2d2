//! Using a trained model: one row per (task, agent) for `cerebro predict`, a stored task's
//! predicted difficulty, and the shipped model compiled into the binary.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::CerebroError;
use super::facts::TaskFacts;
use super::model::Model;
use crate::tasks::{PredictedDifficulty, Task};

/// The model trained on the shipped data with the default configuration
/// (`agentao cerebro train --out data/cerebro/model.json`), compiled in.
const SHIPPED_MODEL: &str = include_str!("../../data/cerebro/model.json");

/// The shipped model, parsed once.
pub fn shipped_model() -> Result<Arc<Model>, CerebroError> {
    static MODEL: OnceLock<Result<Arc<Model>, String>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            serde_json::from_str::<Model>(SHIPPED_MODEL)
                .map(Arc::new)
                .map_err(|e| format!("the shipped Cerebro model does not read: {e}"))
        })
        .clone()
        .map_err(CerebroError::Model)
}

/// The model at `path` when that file exists, else the shipped one.
pub fn model_or_shipped(path: &Path) -> Result<Arc<Model>, CerebroError> {
    if path.is_file() {
        Model::load(path).map(Arc::new)
    } else {
        shipped_model()
    }
}

/// One line of `cerebro predict`'s output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub instance_id: String,
    pub agent: String,
    pub p_resolve: f64,
    /// β (logits; higher is harder).
    pub difficulty: f64,
    /// `fix` when the gold patch was read, `text` when only the statement was.
    pub head: String,
}

/// Rows for every task and each of `agents` (every agent the model knows when empty). An agent
/// the model does not know is an error naming it.
pub fn predict(
    model: &Model,
    tasks: &[TaskFacts],
    agents: &[String],
) -> Result<Vec<PredictionRow>, CerebroError> {
    let agents: Vec<&String> = if agents.is_empty() {
        model.agents.iter().collect()
    } else {
        agents.iter().collect()
    };
    if let Some(unknown) = agents.iter().find(|a| !model.agents.contains(a)) {
        return Err(CerebroError::Model(format!(
            "agent {unknown:?} is not in the model ({} agents, e.g. {:?})",
            model.agents.len(),
            model.agents.last().map(String::as_str).unwrap_or_default()
        )));
    }
    let mut rows = Vec::with_capacity(tasks.len() * agents.len());
    for task in tasks {
        let head = model.head_for(task);
        let difficulty = head.difficulty(task);
        let head_name = if task.knows_fix() { "fix" } else { "text" };
        for agent in &agents {
            let theta = model.theta(head, agent).unwrap_or_default();
            rows.push(PredictionRow {
                instance_id: task.instance_id.clone(),
                agent: (*agent).clone(),
                p_resolve: head.p_resolve(theta, difficulty),
                difficulty,
                head: head_name.to_owned(),
            });
        }
    }
    Ok(rows)
}

/// The predicted difficulty of a stored task (everything it holds is read, the fix included).
pub fn predicted_difficulty(model: &Model, task: &Task) -> PredictedDifficulty {
    let facts = TaskFacts::from_task(task);
    let f = model.forecast(&facts);
    PredictedDifficulty {
        beta: f.difficulty,
        p_typical: f.p_typical,
        human_minutes: f.human_minutes,
        head: if facts.knows_fix() { "fix" } else { "text" }.to_owned(),
    }
}

/// Sets `task.predicted_difficulty`.
pub fn annotate(model: &Model, task: &mut Task) {
    task.predicted_difficulty = Some(predicted_difficulty(model, task));
}
