//! What the page shows, read from the data directory: the dataset's records (append-only, so
//! each load reads only the lines added since the last one) and the validator's moving
//! averages.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One answer, as much of its record as the page needs (no patch, no statement).
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    pub seq: u64,
    #[serde(default)]
    pub recorded_at: String,
    #[serde(default)]
    pub round_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub mutation_kind: String,
    /// SWE-bench Verified's level (`<15 min fix`, ...); the features' JSON in records of the
    /// first layout.
    #[serde(default)]
    pub difficulty: String,
    #[serde(default)]
    pub difficulty_features: String,
    #[serde(default)]
    pub miner_hotkey: String,
    #[serde(default)]
    pub miner_uid: i64,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub resolved: bool,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub final_score: f64,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub response_seconds: f64,
}

/// The answers read so far and where reading stopped.
#[derive(Debug, Default)]
pub struct Answers {
    pub all: Vec<Answer>,
    offset: u64,
}

impl Answers {
    /// Reads the records added to `path` since the last call (all of them the first time).
    /// A missing file is no records; a half-written last line waits for the next call.
    pub fn refresh(&mut self, path: &Path) -> std::io::Result<()> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            // Replaced by a shorter file: start over.
            *self = Answers::default();
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::with_capacity(1 << 20, f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            self.offset += n as u64;
            if let Ok(a) = serde_json::from_slice::<Answer>(&line) {
                self.all.push(a);
            }
        }
        Ok(())
    }
}

/// A miner's row.
#[derive(Debug, Clone, Default)]
pub struct Miner {
    pub uid: i64,
    pub hotkey: String,
    pub average: Option<f64>,
    /// Its share of the weights (its average over the sum of averages).
    pub weight: Option<f64>,
    pub answers: usize,
    pub outcomes: BTreeMap<String, usize>,
    /// Indexes into the answers, oldest first.
    pub history: Vec<usize>,
}

/// A round: its answers in order.
#[derive(Debug, Clone)]
pub struct Round {
    pub id: String,
    pub answers: Vec<usize>,
}

/// A task's row.
#[derive(Debug, Clone, Default)]
pub struct TaskRow {
    pub instance_id: String,
    pub package: String,
    pub kind: String,
    pub difficulty: String,
    pub difficulty_features: String,
    pub answers: usize,
    pub resolved: usize,
}

impl TaskRow {
    /// Forged (a mutation the forge made) or harvested (a real bug, no mutation).
    pub fn source(&self) -> &'static str {
        if self.kind.is_empty() {
            "harvested"
        } else {
            "forged"
        }
    }
}

/// Everything the page shows.
#[derive(Debug, Default)]
pub struct View {
    pub miners: Vec<Miner>,
    /// Newest last.
    pub rounds: Vec<Round>,
    pub tasks: Vec<TaskRow>,
    pub outcome_totals: BTreeMap<String, usize>,
}

/// The moving averages in `validator/scores.json` (empty when missing or unreadable).
pub fn load_averages(path: &Path) -> BTreeMap<String, f64> {
    #[derive(Deserialize)]
    struct Scores {
        #[serde(default)]
        by_hotkey: BTreeMap<String, f64>,
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Scores>(&b).ok())
        .map(|s| s.by_hotkey)
        .unwrap_or_default()
}

/// Groups `answers` by miner, round and task.
pub fn build(answers: &[Answer], averages: &BTreeMap<String, f64>) -> View {
    let mut miners: BTreeMap<&str, Miner> = BTreeMap::new();
    let mut rounds: Vec<Round> = Vec::new();
    let mut round_at: HashMap<&str, usize> = HashMap::new();
    let mut tasks: BTreeMap<&str, TaskRow> = BTreeMap::new();
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for (i, a) in answers.iter().enumerate() {
        let m = miners
            .entry(a.miner_hotkey.as_str())
            .or_insert_with(|| Miner {
                uid: a.miner_uid,
                hotkey: a.miner_hotkey.clone(),
                ..Miner::default()
            });
        m.uid = a.miner_uid;
        m.answers += 1;
        *m.outcomes.entry(a.outcome.clone()).or_default() += 1;
        m.history.push(i);
        *totals.entry(a.outcome.clone()).or_default() += 1;
        let r = *round_at.entry(a.round_id.as_str()).or_insert_with(|| {
            rounds.push(Round {
                id: a.round_id.clone(),
                answers: Vec::new(),
            });
            rounds.len() - 1
        });
        rounds[r].answers.push(i);
        let t = tasks
            .entry(a.instance_id.as_str())
            .or_insert_with(|| TaskRow {
                instance_id: a.instance_id.clone(),
                package: a.package.clone(),
                kind: a.mutation_kind.clone(),
                difficulty: a.difficulty.clone(),
                difficulty_features: a.difficulty_features.clone(),
                ..TaskRow::default()
            });
        t.answers += 1;
        t.resolved += a.resolved as usize;
    }
    let sum: f64 = averages.values().filter(|v| **v > 0.0).sum();
    let mut miners: Vec<Miner> = miners.into_values().collect();
    for hotkey in averages.keys() {
        if !miners.iter().any(|m| &m.hotkey == hotkey) {
            miners.push(Miner {
                uid: -1,
                hotkey: hotkey.clone(),
                ..Miner::default()
            });
        }
    }
    for m in &mut miners {
        m.average = averages.get(&m.hotkey).copied();
        m.weight = m
            .average
            .map(|a| if sum > 0.0 { a.max(0.0) / sum } else { 0.0 });
    }
    miners.sort_by(|a, b| {
        b.average
            .unwrap_or(-1.0)
            .total_cmp(&a.average.unwrap_or(-1.0))
            .then(a.uid.cmp(&b.uid))
    });
    View {
        miners,
        rounds,
        tasks: tasks.into_values().collect(),
        outcome_totals: totals,
    }
}

/// The miner's patch of a stored record: `model_patch`, or `patch` in records of the first
/// layout (where `gold_patch` held the gold fix).
pub fn miners_patch(record: &serde_json::Value) -> &str {
    let field = if record.get("gold_patch").is_some() {
        "patch"
    } else {
        "model_patch"
    };
    record
        .get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// The record with sequence number `seq` in `path`, as JSON (streamed; `None` when absent).
pub fn find_record(path: &Path, seq: u64) -> Option<serde_json::Value> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let f = File::open(path).ok()?;
    for line in BufReader::new(f).lines() {
        let line = line.ok()?;
        if serde_json::from_str::<Seq>(&line).is_ok_and(|s| s.seq == seq) {
            return serde_json::from_str(&line).ok();
        }
    }
    None
}

/// The files the page reads: both inside the data directory.
#[derive(Debug, Clone)]
pub struct Sources {
    pub records: PathBuf,
    pub scores: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::miners_patch;

    #[test]
    fn the_miners_patch_is_read_in_both_record_layouts() {
        let now = serde_json::json!({"patch": "GOLD", "model_patch": "MINER"});
        let first = serde_json::json!({"gold_patch": "GOLD", "patch": "MINER"});
        assert_eq!(miners_patch(&now), "MINER");
        assert_eq!(miners_patch(&first), "MINER");
    }
}
