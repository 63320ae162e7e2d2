//! The validator's memory of each miner, kept in `validator/scores.json` so a restart carries
//! on: the moving average (alpha [`EMA_ALPHA`]) and the miner's health (what its answers were:
//! timeouts, malformed answers, invalid patches, ...). Written atomically after every scored
//! answer (a temporary file, synced, renamed over the old one).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ValidatorError;

/// The moving average's weight of a new score.
pub const EMA_ALPHA: f64 = 0.1;

/// Counts of what a miner's answers were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// Answers that came back and were evaluated.
    pub evaluated: u64,
    pub resolved: u64,
    /// Calls that brought no complete answer in time.
    pub timeouts: u64,
    /// Calls that reached no axon.
    pub unreachable: u64,
    /// Refusals (a status other than 200) and connections dropped midway.
    pub refused: u64,
    /// Answers that were not a synapse, or over the size cap.
    pub malformed: u64,
    /// Patches refused unapplied or that did not apply.
    pub invalid_patches: u64,
    pub empty_patches: u64,
    /// Answers another miner had sent first.
    pub copies: u64,
    /// Answers saying the miner's model was down.
    pub model_down: u64,
    /// Answers for another task description than the one sent (`invalid_answer`).
    pub invalid_answers: u64,
}

/// Moving averages and health by hotkey.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scores {
    pub by_hotkey: BTreeMap<String, f64>,
    #[serde(default)]
    pub health: BTreeMap<String, Health>,
    #[serde(skip)]
    path: PathBuf,
}

impl Scores {
    /// Loads `path` (empty when missing or unreadable: scores are soft state).
    pub fn load(path: &Path) -> Scores {
        let mut s: Scores = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        s.path = path.to_path_buf();
        s
    }

    pub fn update(&mut self, hotkey: &str, score: f64) {
        let avg = self.by_hotkey.entry(hotkey.to_owned()).or_insert(0.0);
        *avg = EMA_ALPHA * score + (1.0 - EMA_ALPHA) * *avg;
    }

    /// The health counters of `hotkey`, to bump.
    pub fn health_of(&mut self, hotkey: &str) -> &mut Health {
        self.health.entry(hotkey.to_owned()).or_default()
    }

    /// Writes the file atomically: a synced temporary file renamed over the old one.
    pub fn save(&self) -> Result<(), ValidatorError> {
        let err = |source| ValidatorError::Scores {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.partial");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("serialisable"))
            .and_then(|()| f.sync_all())
            .map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    /// The weights to set: every neuron of the metagraph with its average (0 when unseen).
    pub fn weights(&self, metagraph: &crate::subnet::Metagraph) -> (Vec<u16>, Vec<f32>) {
        metagraph
            .neurons
            .iter()
            .map(|n| {
                let w = self.by_hotkey.get(&n.hotkey).copied().unwrap_or(0.0);
                (n.uid, w as f32)
            })
            .unzip()
    }
}
