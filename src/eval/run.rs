//! Batch evaluation in a resumable run directory, and SWE-bench-shaped reports.
//!
//! `<run_dir>/verdicts/<instance_id>.json` holds one verdict each, written atomically; an
//! interrupted run started again skips every instance whose stored verdict has the same key
//! (task, patch hash, harness version) and is not an environment error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::harness::{
    EvalConfig, HARNESS_VERSION, Outcome, Verdict, evaluate, sha256, verdict_key,
};
use crate::sandbox::Engine;
use crate::tasks::Task;

/// A row of SWE-bench's predictions format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub instance_id: String,
    #[serde(default)]
    pub model_name_or_path: String,
    #[serde(default)]
    pub model_patch: Option<String>,
}

/// Errors of a batch run (bad input files, an unusable run directory).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a prediction: {reason}")]
    BadPrediction {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("prediction for unknown task {0}")]
    UnknownTask(String),
    /// A task without an environment image (an official SWE-bench row has none): nothing
    /// could run it, so it is refused before anything starts.
    #[error(
        "task {0} has no `image` field (the Docker image of its environment, with the repository at /repo); add it to the task's row"
    )]
    NoImage(String),
    /// Two predictions for one instance: which one is judged would depend on the order.
    #[error(
        "{path}: instance {id} is predicted twice ({first} and {second}); give one prediction per instance"
    )]
    DuplicatePrediction {
        path: String,
        id: String,
        first: String,
        second: String,
    },
    #[error("{path}: no predictions in the file")]
    NoPredictions { path: String },
}

impl RunError {
    /// Whether the error is about the predictions' content (duplicates, none at all) rather
    /// than their format.
    pub fn is_bad_content(&self) -> bool {
        matches!(
            self,
            RunError::DuplicatePrediction { .. }
                | RunError::NoPredictions { .. }
                | RunError::UnknownTask(_)
                | RunError::NoImage(_)
        )
    }
}

fn io(path: &Path, source: std::io::Error) -> RunError {
    RunError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads predictions: JSON Lines, one JSON array, or one JSON object mapping instance ids to
/// predictions (SWE-agent's `preds.json`, which swebench reads too; a prediction without its
/// own `instance_id` takes the key's). A file without any, or with two for one instance, is
/// refused.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let bad = |line: usize, reason: String| RunError::BadPrediction {
        path: path.display().to_string(),
        line,
        reason,
    };
    let whole = |e: serde_json::Error| bad(e.line(), e.to_string());
    let (predictions, place): (Vec<Prediction>, Box<dyn Fn(usize) -> String>) =
        if text.trim_start().starts_with('[') {
            let p = serde_json::from_str(&text).map_err(whole)?;
            (p, Box::new(|i| format!("entry {}", i + 1)))
        } else if let Some(by_id) = by_instance(&text) {
            let mut keys = Vec::with_capacity(by_id.len());
            let mut p = Vec::with_capacity(by_id.len());
            for (key, mut value) in by_id {
                if let Some(obj) = value.as_object_mut() {
                    obj.entry("instance_id")
                        .or_insert_with(|| serde_json::Value::String(key.clone()));
                }
                p.push(
                    serde_json::from_value(value)
                        .map_err(|e| bad(0, format!("entry {key:?}: {e}")))?,
                );
                keys.push(key);
            }
            (p, Box::new(move |i| format!("entry {:?}", keys[i])))
        } else {
            let p = crate::jsonl::parse(&text).map_err(|e| bad(e.line, e.reason))?;
            // The i-th prediction is on the i-th line that is not blank.
            let lines: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, _)| n + 1)
                .collect();
            (
                p,
                Box::new(move |i| format!("line {}", lines.get(i).copied().unwrap_or(i + 1))),
            )
        };
    check_predictions(path, &predictions, place)?;
    Ok(predictions)
}

/// The entries of a file that is one JSON object whose values are all objects (predictions by
/// instance id), in the file's order; `None` for anything else (JSON Lines, even of one line).
fn by_instance(text: &str) -> Option<Vec<(String, serde_json::Value)>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    if map.is_empty() || !map.values().all(serde_json::Value::is_object) {
        return None;
    }
    Some(map.into_iter().collect())
}

/// Refuses an empty set of predictions and two predictions for one instance; `place` names
/// where the i-th prediction is.
fn check_predictions(
    path: &Path,
    predictions: &[Prediction],
    place: impl Fn(usize) -> String,
) -> Result<(), RunError> {
    if predictions.is_empty() {
        return Err(RunError::NoPredictions {
            path: path.display().to_string(),
        });
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, p) in predictions.iter().enumerate() {
        if let Some(j) = first.insert(p.instance_id.as_str(), i) {
            return Err(RunError::DuplicatePrediction {
                path: path.display().to_string(),
                id: p.instance_id.clone(),
                first: place(j),
                second: place(i),
            });
        }
    }
    Ok(())
}

/// Per-instance test results in SWE-bench's report shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SuccessFailure {
    pub success: Vec<String>,
    pub failure: Vec<String>,
}

/// The version of SWE-bench's run report this report follows (swebench 5's
/// `make_run_report` writes 2).
pub const REPORT_SCHEMA_VERSION: u32 = 2;

/// The report of a run, shaped like SWE-bench's (every key its `make_run_report` writes, plus
/// agentao's own: the harness version, per-test status, outcomes, instances evaluated now).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub harness_version: String,
    pub total_instances: usize,
    pub submitted_instances: usize,
    pub completed_instances: usize,
    pub resolved_instances: usize,
    pub unresolved_instances: usize,
    pub empty_patch_instances: usize,
    pub error_instances: usize,
    /// Environment errors (the machine's failures), also counted in `error_instances`, as
    /// SWE-bench flags its infrastructure failures; their reasons are in `failure_reasons`.
    pub infra_failure_instances: usize,
    /// Always 0: agentao tells the machine's failures from the patch's.
    pub ambiguous_failure_instances: usize,
    /// Every instance a prediction was given for.
    pub submitted_ids: Vec<String>,
    /// Instances whose patch was evaluated to a verdict (resolved or unresolved).
    pub completed_ids: Vec<String>,
    /// Tasks without a prediction.
    pub incomplete_ids: Vec<String>,
    pub resolved_ids: Vec<String>,
    pub unresolved_ids: Vec<String>,
    pub empty_patch_ids: Vec<String>,
    pub error_ids: Vec<String>,
    pub infra_failure_ids: Vec<String>,
    pub ambiguous_failure_ids: Vec<String>,
    /// instance id → why it failed for the machine (environment errors).
    pub failure_reasons: BTreeMap<String, String>,
    /// instance id → {"FAIL_TO_PASS": {...}, "PASS_TO_PASS": {...}}
    pub tests_status: BTreeMap<String, BTreeMap<String, SuccessFailure>>,
    /// instance id → outcome kind, for the reasons behind unresolved and error ids.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Instances evaluated in this invocation (the rest came from the run directory).
    pub evaluated_now: usize,
}

/// Builds the report from verdicts, over the ids of every task (`tasks`).
pub fn report<'a>(
    tasks: impl IntoIterator<Item = &'a str>,
    verdicts: &[Verdict],
    evaluated_now: usize,
) -> Report {
    let mut r = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        harness_version: HARNESS_VERSION.to_owned(),
        submitted_instances: verdicts.len(),
        evaluated_now,
        ..Default::default()
    };
    let submitted: std::collections::BTreeSet<&str> =
        verdicts.iter().map(|v| v.instance_id.as_str()).collect();
    let mut all: Vec<&str> = tasks.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    r.total_instances = all.len();
    r.incomplete_ids = all
        .iter()
        .filter(|id| !submitted.contains(*id))
        .map(|id| (*id).to_owned())
        .collect();
    r.submitted_ids = submitted.iter().map(|id| (*id).to_owned()).collect();
    for v in verdicts {
        let id = v.instance_id.clone();
        match &v.outcome {
            Outcome::Resolved => r.resolved_ids.push(id.clone()),
            Outcome::EmptyPatch => r.empty_patch_ids.push(id.clone()),
            Outcome::EnvironmentError { .. } => {
                r.error_ids.push(id.clone());
                r.infra_failure_ids.push(id.clone());
                r.failure_reasons
                    .insert(id.clone(), v.outcome.reason().unwrap_or_default());
            }
            _ => r.unresolved_ids.push(id.clone()),
        }
        if !matches!(
            v.outcome,
            Outcome::EmptyPatch | Outcome::EnvironmentError { .. }
        ) {
            r.completed_ids.push(id.clone());
        }
        let split = |m: &BTreeMap<String, super::TestStatus>| SuccessFailure {
            success: m
                .iter()
                .filter(|(_, s)| s.passed())
                .map(|(k, _)| k.clone())
                .collect(),
            failure: m
                .iter()
                .filter(|(_, s)| !s.passed())
                .map(|(k, _)| k.clone())
                .collect(),
        };
        r.tests_status.insert(
            id.clone(),
            BTreeMap::from([
                ("FAIL_TO_PASS".to_owned(), split(&v.fail_to_pass)),
                ("PASS_TO_PASS".to_owned(), split(&v.pass_to_pass)),
            ]),
        );
        r.outcomes.insert(id, v.outcome.clone());
    }
    r.resolved_instances = r.resolved_ids.len();
    r.unresolved_instances = r.unresolved_ids.len();
    r.empty_patch_instances = r.empty_patch_ids.len();
    r.error_instances = r.error_ids.len();
    r.infra_failure_instances = r.infra_failure_ids.len();
    r.completed_ids.sort();
    r.completed_instances = r.completed_ids.len();
    r
}

/// Checks, before anything runs, that every prediction has its task and that the task names
/// its environment image.
pub fn check_inputs(tasks: &[Task], predictions: &[Prediction]) -> Result<(), RunError> {
    let by_id: HashMap<&str, &Task> = tasks.iter().map(|t| (t.instance_id.as_str(), t)).collect();
    for p in predictions {
        let task = by_id
            .get(p.instance_id.as_str())
            .ok_or_else(|| RunError::UnknownTask(p.instance_id.clone()))?;
        if task.image.trim().is_empty() {
            return Err(RunError::NoImage(p.instance_id.clone()));
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    verdict: Verdict,
}

fn verdict_path(run_dir: &Path, instance_id: &str) -> PathBuf {
    let safe: String = instance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    run_dir
        .join("verdicts")
        .join(format!("{safe}-{}.json", &sha256(instance_id)[..8]))
}

fn load_done(run_dir: &Path, instance_id: &str, key: &str) -> Option<Verdict> {
    let text = std::fs::read_to_string(verdict_path(run_dir, instance_id)).ok()?;
    let stored: Stored = serde_json::from_str(&text).ok()?;
    (stored.key == key && !stored.verdict.is_environment_error()).then_some(stored.verdict)
}

fn store(run_dir: &Path, key: &str, verdict: &Verdict) -> Result<(), RunError> {
    let path = verdict_path(run_dir, &verdict.instance_id);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&Stored {
        key: key.to_owned(),
        verdict: verdict.clone(),
    })
    .map_err(|e| io(&path, std::io::Error::other(e)))?;
    std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

/// Evaluates every prediction with at most `workers` at once, storing each verdict as it
/// lands; `on_done` is called once per instance (for progress).
pub async fn run_batch(
    engine: &Engine,
    tasks: &[Task],
    predictions: &[Prediction],
    run_dir: &Path,
    workers: usize,
    cfg: &EvalConfig,
    on_done: impl Fn(&Verdict, bool),
) -> Result<Report, RunError> {
    check_inputs(tasks, predictions)?;
    std::fs::create_dir_all(run_dir.join("verdicts")).map_err(|e| io(run_dir, e))?;
    let by_id: HashMap<&str, &Task> = tasks.iter().map(|t| (t.instance_id.as_str(), t)).collect();
    let mut done = Vec::new();
    let mut todo = Vec::new();
    for p in predictions {
        let task = *by_id
            .get(p.instance_id.as_str())
            .ok_or_else(|| RunError::UnknownTask(p.instance_id.clone()))?;
        let patch = p.model_patch.clone().unwrap_or_default();
        let key = verdict_key(&p.instance_id, &patch);
        match load_done(run_dir, &p.instance_id, &key) {
            Some(v) => {
                on_done(&v, true);
                done.push(v);
            }
            None => todo.push((task, patch, key)),
        }
    }
    let evaluated_now = todo.len();
    let announced: Vec<(&Task, &str)> = todo.iter().map(|(t, p, _)| (*t, p.as_str())).collect();
    super::harness::warm(engine, &announced, cfg);
    let mut stream =
        futures_util::stream::iter(todo.into_iter().map(|(task, patch, key)| async move {
            let verdict = evaluate(engine, task, &patch, cfg).await;
            (verdict, key)
        }))
        .buffer_unordered(workers.max(1));
    while let Some((verdict, key)) = stream.next().await {
        store(run_dir, &key, &verdict)?;
        on_done(&verdict, false);
        done.push(verdict);
    }
    // Nothing more is coming: idle containers go.
    engine.empty_pool().await;
    done.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let report = report(
        tasks.iter().map(|t| t.instance_id.as_str()),
        &done,
        evaluated_now,
    );
    let path = run_dir.join("report.json");
    let text =
        serde_json::to_string_pretty(&report).map_err(|e| io(&path, std::io::Error::other(e)))?;
    std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<Prediction>, RunError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preds.json");
        std::fs::write(&path, text).unwrap();
        read_predictions(&path)
    }

    #[test]
    fn predictions_by_instance_id_read_like_a_list() {
        // SWE-agent's preds.json, pretty-printed over several lines.
        let by_id = read(
            "{\n  \"a__b-1\": {\n    \"model_name_or_path\": \"m\",\n    \"instance_id\": \"a__b-1\",\n    \"model_patch\": \"p\"\n  },\n  \"a__b-2\": {\"model_patch\": null}\n}\n",
        )
        .unwrap();
        assert_eq!(by_id.len(), 2);
        assert_eq!(by_id[0].instance_id, "a__b-1");
        assert_eq!(by_id[0].model_patch.as_deref(), Some("p"));
        assert_eq!(by_id[1].instance_id, "a__b-2", "the key names it");
        // One JSON Lines row is still one prediction, not a map.
        let one = read("{\"instance_id\": \"x\", \"model_patch\": \"p\"}\n").unwrap();
        assert_eq!(one[0].instance_id, "x");
        let lines = read("{\"instance_id\": \"x\"}\n{\"instance_id\": \"y\"}\n").unwrap();
        assert_eq!(lines.len(), 2);
        let err =
            read("{\"x\": {\"instance_id\": \"x\"}, \"y\": {\"instance_id\": \"x\"}}").unwrap_err();
        assert!(matches!(err, RunError::DuplicatePrediction { .. }), "{err}");
    }
}
