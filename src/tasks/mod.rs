//! Coding tasks: the task model (SWE-bench fields plus ours: `model.rs`), the SQLite task
//! store with the forge's log (`store.rs`), the JSON Lines reader for task files, the portable
//! task description miners on other machines rebuild a task from (`spec.rs`) and the
//! workspace bundle it may carry (`bundle.rs`).
//!
//! The low layer every user of a task shares (the forge, the harness, the agent, the dataset):
//! imports nothing above `config/` and `jsonl`, so it must not touch Docker, pytest, PyPI or
//! the forge that makes tasks.

pub mod bundle;
pub mod model;
pub mod spec;
pub mod store;

pub use model::{
    DIFFICULTY_LEVELS, Difficulty, F2pCap, FunctionTests, Grading, PredictedDifficulty,
    RegressionIndex, RepairOutcome, Task, index_ranges,
};
pub use spec::{Exposure, TaskSpec};
pub use store::{TaskStore, swebench_row};

use std::path::Path;

/// Errors reading or writing tasks.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a task: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("unknown task {0}")]
    Unknown(String),
}

/// Reads tasks from a JSON Lines file (one task per line; blank lines skipped).
pub fn read_jsonl(path: &Path) -> Result<Vec<Task>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.display().to_string(),
        source,
    })?;
    crate::jsonl::parse(&text).map_err(|e| TaskError::Parse {
        path: path.display().to_string(),
        line: e.line,
        reason: e.reason,
    })
}
