//! The dataset the subnet exists to produce: records of (problem, solution, score)
//! (`record`), their append-only local store (`store`), Parquet export with a dataset card
//! (`export`, `card`) and upload to the HuggingFace Hub over its HTTP API (`hub`).
//!
//! Uses the task model from `tasks/` and the card template from `prompts/`; must not touch
//! Docker, miners' networking, chains or scoring.

pub mod card;
pub mod export;
pub mod hub;
pub mod record;
pub mod store;

use std::path::Path;

pub use export::{ExportOptions, ExportReport, ExportState, SCHEMA_VERSION, export, read_state};
pub use hub::{HubClient, HubError, PushReport};
pub use record::Record;
pub use store::RecordStore;

/// Errors of the dataset layer.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: unreadable: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("encoding: {0}")]
    Encode(String),
    #[error(
        "{path} holds shards of dataset layout {found}; this agentao writes layout {now} (`patch` is the gold fix, `model_patch` the miner's): export into a new folder"
    )]
    SchemaChanged { path: String, found: u32, now: u32 },
}

impl DatasetError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DatasetError {
        DatasetError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
