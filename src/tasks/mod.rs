//! Coding tasks: the task model (SWE-bench fields plus ours), package sources from PyPI
//! (`pypi`, `deps`), task environments (`env`: one image per package version), the per-suite
//! baseline (`baseline`), procedural bugs (`mutate`), problem statements (`statement`), the
//! forge that validates candidates into tasks (`forge`) and the SQLite store (`store`).
//!
//! Uses `sandbox/` for containers and images, and `eval/` (the harness) for the gold-patch
//! check of every forged task; `eval/` in turn needs only the task model from here. Knows
//! nothing of miners, scoring or the subnet.

pub mod baseline;
pub mod deps;
pub mod env;
pub mod forge;
pub mod model;
pub mod mutate;
pub mod pypi;
pub mod statement;
pub mod store;

pub use env::{EnvSpec, build_env_image};
pub use forge::{Forge, ForgeConfig, ForgeError, PackageReport, Selection};
pub use model::{Difficulty, Task};
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
