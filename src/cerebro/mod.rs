//! Cerebro: will this agent resolve this task, how hard is it, how long would it take.
//!
//! Trained in Rust on real outcomes (published agent systems on SWE-bench Verified, shipped in
//! `data/cerebro/` and compiled in). The model is item-response:
//! `P(resolve) = σ(θ_agent − β_task)`, with the task's difficulty `β_task = b + w·x_task` read
//! from its features, so a task never seen gets a difficulty and an agent never seen gets an
//! ability from its first outcomes ([`Ability`]).
//!
//! - `facts.rs`: [`TaskFacts`], the one input shape (SWE-bench rows, agentao tasks, a bare
//!   statement).
//! - `features.rs`: statement, gold-patch, test and forge features; the fitted [`Encoder`].
//! - `optim.rs`: a small L-BFGS. `train.rs`: the penalised fits of the heads.
//! - `model.rs`: [`Model`] (a `fix` head for tasks whose gold patch is known, a `text` head
//!   for statements alone, the effort head), saved as JSON; [`Ability`].
//! - `predict.rs`: rows per (task, agent), a stored task's predicted difficulty, the shipped
//!   model (`data/cerebro/model.json`, compiled in).
//! - `eval.rs` and `metrics.rs`: k-fold cross-validation by task, AUROC, Brier, calibration.
//! - `data.rs`: the training data's files.
//!
//! Uses `tasks` (the task model), `jsonl` and nothing else of agentao: it knows nothing of
//! Docker, the wire or scoring rules (those are `neurons/`'s).

pub mod data;
pub mod encoder;
pub mod eval;
pub mod facts;
pub mod features;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod predict;
pub mod train;

use std::path::Path;

pub use data::Dataset;
pub use encoder::Encoder;
pub use eval::{EvalConfig, EvalReport, cross_validate};
pub use facts::TaskFacts;
pub use features::View;
pub use model::{Ability, Model, TaskForecast};
pub use predict::{PredictionRow, annotate, model_or_shipped, predict, shipped_model};
pub use train::{Features, TrainConfig};

/// Errors of Cerebro.
#[derive(Debug, thiserror::Error)]
pub enum CerebroError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A malformed line of an input file.
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Model(String),
}

impl CerebroError {
    pub fn io(path: &Path, source: std::io::Error) -> CerebroError {
        CerebroError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Trains the model on every task and outcome of `data`.
pub fn train(data: &Dataset, cfg: &TrainConfig) -> Model {
    let started = std::time::Instant::now();
    let all: Vec<usize> = (0..data.tasks.len()).collect();
    let fix = train::fit_head(data, &all, Features::Task(View::Fix), cfg);
    let text = train::fit_head(data, &all, Features::Task(View::Text), cfg);
    let effort = train::fit_effort(data, &all, View::Fix, cfg);
    let effort_text = train::fit_effort(data, &all, View::Text, cfg);
    Model {
        format: model::FORMAT,
        agents: data.agents.clone(),
        fix,
        text,
        effort,
        effort_text,
        provenance: model::Provenance {
            source: data.source.clone(),
            tasks: data.tasks.len(),
            responses: data.responses.len(),
            config: *cfg,
            seconds: started.elapsed().as_secs_f64(),
        },
    }
}
