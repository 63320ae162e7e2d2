//! Coding tasks: the task model (SWE-bench fields plus ours) and task environments (one image
//! per package version). The forge and the store come with the task-forge issue.
//!
//! Uses `sandbox/` for images; knows nothing of miners, scoring or the subnet.

pub mod env;
pub mod model;

pub use env::{EnvSpec, build_env_image};
pub use model::Task;

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
