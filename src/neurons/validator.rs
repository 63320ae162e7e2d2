//! The validator's side of a round: send one task to the miners, evaluate every returned patch
//! in a fresh container, score each answer as the original subnet did, keep a moving average
//! per miner, turn the averages into weights, and append every (problem, solution, score) to
//! the dataset.
//!
//! Scores: `(9·quality + speed)/10` for a resolved patch (speed from the dendrite's measured
//! latency against the time limit; quality from the LLM judge when one is set and answers
//! readably, else 1), 0 otherwise; identical non-empty patches from two or more
//! miners all get the floor. The moving average (alpha 0.1) moves only for answers the miner
//! is answerable for: a call that brought back no answer (unreachable, timeout, protocol
//! error: recorded as such, never as an empty patch) and an evaluation that failed for the
//! machine (`environment_error`) leave it alone, as for a miner that is down. A miner that
//! answers that its own model is down (its 503 with [`super::miner::MODEL_DOWN`]) is charged a 0.
//!
//! With `forecasts` set, each miner is first asked a `Forecast` of the task; the forecasts
//! (the miner's and the validator's own) go into the records and are scored by
//! [`super::forecast`], apart from the coding score.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::forecast::Forecasting;
use super::scoring::{final_score, judged_quality, time_score};
use crate::dataset::{Record, RecordStore};
use crate::eval::{EvalConfig, Outcome, evaluate};
use crate::llm::{Budget, LlmClient, judge::judge};
use crate::sandbox::Engine;
use crate::subnet::{AxonTarget, CallFailure, CodingTask, Dendrite, Metagraph, Neuron};
use crate::tasks::Task;

/// The score of an answer whose patch another miner also sent.
pub const DUPLICATE_FLOOR: f64 = 0.005;
/// The moving average's weight of a new score.
pub const EMA_ALPHA: f64 = 0.1;

/// Errors of the validator.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("{path}: {source}")]
    Scores {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
}

/// Moving averages by hotkey, kept in a JSON file so a restart keeps them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scores {
    pub by_hotkey: BTreeMap<String, f64>,
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

    /// Writes the file atomically.
    pub fn save(&self) -> Result<(), ValidatorError> {
        let err = |source| ValidatorError::Scores {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serialisable"))
            .map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    /// The weights to set: every neuron of the metagraph with its average (0 when unseen).
    pub fn weights(&self, metagraph: &Metagraph) -> (Vec<u16>, Vec<f32>) {
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

/// What became of one miner's answer: evaluated, or no answer at all.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnswerOutcome {
    /// The miner answered; the evaluation's outcome (`{"kind": "resolved"}`, ...).
    Evaluated(Outcome),
    /// No answer came back (`{"kind": "unreachable", "message": ...}`).
    NoAnswer { kind: CallFailure, message: String },
}

impl AnswerOutcome {
    /// The name recorded in the dataset's `outcome`: the evaluation's kind (`resolved`,
    /// `environment_error`, ...) or the call's failure (`unreachable`, `timeout`,
    /// `protocol_error`).
    pub fn kind(&self) -> String {
        match self {
            AnswerOutcome::Evaluated(o) => o.kind().to_owned(),
            AnswerOutcome::NoAnswer { kind, .. } => kind.as_str().to_owned(),
        }
    }

    /// Whether the score is the miner's: an answer came back and its evaluation did not fail
    /// for the machine.
    pub fn is_miners(&self) -> bool {
        matches!(self, AnswerOutcome::Evaluated(o) if !matches!(o, Outcome::EnvironmentError { .. }))
    }
}

impl PartialEq<Outcome> for AnswerOutcome {
    fn eq(&self, other: &Outcome) -> bool {
        matches!(self, AnswerOutcome::Evaluated(o) if o == other)
    }
}

/// One miner's answer, as scored.
#[derive(Debug, Clone, Serialize)]
pub struct MinerResult {
    pub uid: u16,
    pub hotkey: String,
    pub status_code: i64,
    pub latency_s: f64,
    pub patch_bytes: usize,
    pub resolved: bool,
    pub outcome: AnswerOutcome,
    /// Whether the score moved the miner's average.
    pub charged: bool,
    /// The judge's (quality, brevity), when it judged.
    pub judged: Option<(f64, f64)>,
    pub duplicate: bool,
    pub score: f64,
    pub record_seq: u64,
    /// Why the miner's model failed, when its episode ended in a model error or it answered
    /// that its model is down.
    pub model_error: Option<String>,
}

/// What a validator needs for a round.
pub struct Validator {
    pub engine: Engine,
    pub dendrite: Dendrite,
    pub eval: EvalConfig,
    /// How long a miner has to answer.
    pub time_limit: Duration,
    /// The LLM judge of resolved patches, and dollars it may spend on one.
    pub judge: Option<(LlmClient, f64)>,
    /// Cerebro forecasts: asked of the miners before the task goes out, made by the
    /// validator, written into the records and scored apart from the coding score
    /// (`super::forecast`). `None` asks nothing.
    pub forecasts: Option<Forecasting>,
}

impl Validator {
    /// The synapse a miner gets for `task`: its public fields only.
    pub fn synapse_for(&self, task: &Task) -> CodingTask {
        CodingTask {
            repo: task.repo.clone(),
            problem_statement: task.problem_statement.clone(),
            task_id: task.instance_id.clone(),
            version: task.version.clone(),
            hints: task.hints_text.clone(),
            time_limit: self.time_limit.as_secs_f64(),
            ..CodingTask::default()
        }
    }

    /// Sends `task` to `miners`, evaluates and scores their answers, updates `scores` and
    /// appends one record per miner.
    pub async fn round(
        &self,
        task: &Task,
        miners: &[Neuron],
        scores: &mut Scores,
        records: &mut RecordStore,
        round_id: &str,
    ) -> Result<Vec<MinerResult>, ValidatorError> {
        let started = std::time::Instant::now();
        crate::telemetry::capture(super::events::round_started(round_id, miners.len()));
        let targets: Vec<AxonTarget> = miners
            .iter()
            .map(|n| AxonTarget {
                ip: n.ip.clone(),
                port: n.port,
                hotkey: n.hotkey.clone(),
            })
            .collect();
        // Forecasts first: a miner that has seen its own patch would know the answer.
        let asked = match &self.forecasts {
            Some(f) => f.ask(&self.dendrite, &targets, task).await,
            None => vec![None; targets.len()],
        };
        let body = self.synapse_for(task);
        // The request may take the whole limit; the transport gets a little more.
        let answers = self
            .dendrite
            .fan_out(&targets, &body, self.time_limit + Duration::from_secs(5))
            .await;
        // A patch only where an answer came back.
        let patches: Vec<Option<String>> = answers
            .iter()
            .map(|a| match (&a.synapse, a.failure) {
                (Some(s), None) => Some(s.body.patch.clone().unwrap_or_default()),
                _ => None,
            })
            .collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for p in patches.iter().flatten().filter(|p| !p.trim().is_empty()) {
            *seen.entry(p.as_str()).or_default() += 1;
        }

        let mut results = Vec::new();
        for (((miner, answer), patch), asked) in
            miners.iter().zip(&answers).zip(&patches).zip(&asked)
        {
            let prior = self
                .forecasts
                .as_ref()
                .map(|f| f.prior(&miner.hotkey, task, *asked));
            let mut record = Record::for_task(task);
            record.round_id = round_id.to_owned();
            record.validator_hotkey = self.dendrite.hotkey();
            record.miner_hotkey = miner.hotkey.clone();
            record.miner_uid = miner.uid as i64;
            record.response_seconds = answer.latency_s;
            let Some(patch) = patch else {
                // No answer: nothing to evaluate, nothing to charge, unless the miner said
                // its own model is down: its failure, charged as a 0.
                let kind = answer.failure.unwrap_or(CallFailure::ProtocolError);
                let outcome = AnswerOutcome::NoAnswer {
                    kind,
                    message: answer.status_message.clone(),
                };
                let model_down = answer.status_message.starts_with(super::miner::MODEL_DOWN);
                if model_down {
                    scores.update(&miner.hotkey, 0.0);
                }
                record.outcome = outcome.kind();
                record.outcome_reason = answer.status_message.clone();
                record.model_error = model_down;
                if let (Some(f), Some(prior)) = (&self.forecasts, prior) {
                    // No answer: the task went unresolved by this miner.
                    f.settle(&mut record, prior, true);
                }
                let seq = records.append(&mut record)?;
                crate::telemetry::capture(super::events::answer_scored(&record));
                tracing::warn!(
                    uid = miner.uid,
                    status = answer.status_code,
                    outcome = kind.as_str(),
                    message = %answer.status_message,
                    charged = model_down,
                    "no answer; average left alone unless the miner's model is down"
                );
                results.push(MinerResult {
                    uid: miner.uid,
                    hotkey: miner.hotkey.clone(),
                    status_code: answer.status_code,
                    latency_s: answer.latency_s,
                    patch_bytes: 0,
                    resolved: false,
                    outcome,
                    charged: model_down,
                    judged: None,
                    duplicate: false,
                    score: 0.0,
                    record_seq: seq,
                    model_error: model_down.then(|| answer.status_message.clone()),
                });
                continue;
            };
            let verdict = evaluate(&self.engine, task, patch, &self.eval).await;
            let speed = time_score(answer.latency_s, self.time_limit.as_secs_f64());
            let duplicate = seen.get(patch.as_str()).is_some_and(|n| *n > 1);
            let judged = match (&self.judge, verdict.resolved) {
                (Some((llm, dollars)), true) => {
                    let mut budget = Budget::new(*dollars);
                    match judge(
                        llm,
                        &task.problem_statement,
                        patch,
                        &task.patch,
                        &mut budget,
                    )
                    .await
                    {
                        Ok(j) => Some((j.quality, j.brevity)),
                        Err(e) => {
                            tracing::warn!(uid = miner.uid, error = %e, "no judgement; scoring on correctness");
                            None
                        }
                    }
                }
                _ => None,
            };
            let quality = judged.map(|(q, b)| judged_quality(q, b));
            let mut score = final_score(verdict.resolved, quality, speed);
            if duplicate {
                score = score.min(DUPLICATE_FLOOR);
            }
            let outcome = AnswerOutcome::Evaluated(verdict.outcome.clone());
            let charged = outcome.is_miners();
            if charged {
                scores.update(&miner.hotkey, score);
            } else {
                tracing::warn!(uid = miner.uid, outcome = ?verdict.outcome, "the evaluation failed for the machine; not charged to the miner");
            }
            let reply = answer.synapse.as_ref().map(|s| &s.body);
            let model_error = reply
                .map(|r| r.model_error.clone())
                .filter(|e| !e.is_empty());
            record.model_error = model_error.is_some();
            record.agent = reply.map(|r| r.agent_name.clone()).unwrap_or_default();
            record.model = reply.map(|r| r.model.clone()).unwrap_or_default();
            // A patch over the evaluation's limit was refused unread; it is not kept either.
            if patch.len() <= self.eval.max_patch_bytes {
                record.model_patch = patch.clone();
            }
            record.resolved = verdict.resolved;
            record.outcome = outcome.kind();
            record.outcome_reason = verdict.outcome.reason().unwrap_or_default();
            let mut tests = serde_json::Map::new();
            for (k, v) in verdict.fail_to_pass.iter().chain(&verdict.pass_to_pass) {
                tests.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
            }
            record.tests_status = serde_json::Value::Object(tests).to_string();
            record.judge_quality = judged.map(|(q, _)| q);
            record.judge_brevity = judged.map(|(_, b)| b);
            record.time_score = speed;
            record.final_score = score;
            record.cost_usd = reply.map_or(0.0, |r| r.cost);
            record.prompt_tokens = reply.map_or(0, |r| r.prompt_tokens as i64);
            record.completion_tokens = reply.map_or(0, |r| r.completion_tokens as i64);
            record.eval_seconds = verdict.timings.total_s;
            if let (Some(f), Some(prior)) = (&self.forecasts, prior) {
                f.settle(&mut record, prior, charged);
            }
            let seq = records.append(&mut record)?;
            crate::telemetry::capture(super::events::answer_scored(&record));
            tracing::info!(
                uid = miner.uid,
                status = answer.status_code,
                resolved = verdict.resolved,
                score,
                duplicate,
                charged,
                "scored"
            );
            results.push(MinerResult {
                uid: miner.uid,
                hotkey: miner.hotkey.clone(),
                status_code: answer.status_code,
                latency_s: answer.latency_s,
                patch_bytes: patch.len(),
                resolved: verdict.resolved,
                outcome,
                charged,
                judged,
                duplicate,
                score,
                record_seq: seq,
                model_error,
            });
        }
        scores.save()?;
        if let Some(f) = &self.forecasts {
            f.save().map_err(|source| ValidatorError::Scores {
                path: f
                    .book
                    .lock()
                    .map(|b| b.path().display().to_string())
                    .unwrap_or_default(),
                source,
            })?;
        }
        crate::telemetry::capture(super::events::round_finished(
            round_id,
            &results,
            |r| r.resolved,
            started,
        ));
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_name_what_happened_and_only_the_miners_are_charged() {
        let cases = [
            (
                AnswerOutcome::Evaluated(Outcome::Resolved),
                "resolved",
                true,
            ),
            (
                AnswerOutcome::Evaluated(Outcome::EmptyPatch),
                "empty_patch",
                true,
            ),
            (
                AnswerOutcome::Evaluated(Outcome::EnvironmentError {
                    message: "engine gone".into(),
                }),
                "environment_error",
                false,
            ),
            (
                AnswerOutcome::NoAnswer {
                    kind: CallFailure::Unreachable,
                    message: "refused".into(),
                },
                "unreachable",
                false,
            ),
            (
                AnswerOutcome::NoAnswer {
                    kind: CallFailure::Timeout,
                    message: String::new(),
                },
                "timeout",
                false,
            ),
            (
                AnswerOutcome::NoAnswer {
                    kind: CallFailure::ProtocolError,
                    message: String::new(),
                },
                "protocol_error",
                false,
            ),
        ];
        for (o, kind, charged) in cases {
            assert_eq!(o.kind(), kind);
            assert_eq!(o.is_miners(), charged, "{kind}");
            assert_eq!(serde_json::to_value(&o).unwrap()["kind"], kind);
        }
        assert_eq!(
            AnswerOutcome::Evaluated(Outcome::Resolved),
            Outcome::Resolved
        );
        assert_ne!(
            AnswerOutcome::NoAnswer {
                kind: CallFailure::Timeout,
                message: String::new()
            },
            Outcome::Resolved
        );
    }

    #[test]
    fn averages_move_by_alpha_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.json");
        let mut s = Scores::load(&path);
        s.update("a", 1.0);
        s.update("a", 1.0);
        s.update("b", 0.0);
        assert!((s.by_hotkey["a"] - 0.19).abs() < 1e-12);
        s.save().unwrap();
        let back = Scores::load(&path);
        assert_eq!(back.by_hotkey, s.by_hotkey);
        let mg = Metagraph {
            netuid: 62,
            neurons: ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, h)| Neuron {
                    uid: i as u16,
                    hotkey: (*h).into(),
                    coldkey: String::new(),
                    stake: 0.0,
                    ip: String::new(),
                    port: 0,
                    validator_permit: false,
                })
                .collect(),
        };
        let (uids, weights) = back.weights(&mg);
        assert_eq!(uids, [0, 1, 2]);
        assert_eq!(weights, [0.19f32, 0.0, 0.0]);
    }
}
