//! The validator's side of a round: send one task to the miners, evaluate every returned patch
//! in a fresh container (concurrently, as many at once as the engine's sandbox budget allows),
//! score each answer as the original subnet did, keep a moving average per miner, turn the
//! averages into weights, and append every (problem, solution, score) to the dataset.
//!
//! Scores: `(9·quality + speed)/10` for a resolved patch (speed from the dendrite's measured
//! latency against the time limit; quality from the LLM judge when one is set and answers
//! readably, else 1), 0 otherwise. The judge sees the patch without the comments and prose it
//! adds (`eval::reading::for_review`) and the task's checklist; it can lower a resolved
//! patch's score, never raise an unresolved one. A task without FAIL_TO_PASS (an open issue,
//! `Grading::Checklist`) is graded by PASS_TO_PASS (a regression scores 0) and the judge
//! against its checklist, with no reference fix shown; a green patch nobody judged there is
//! recorded at 0 and not charged (`super::scoring::Score::Unjudged`). A patch that copies one that came back earlier
//! (`copies.rs`: same change once whitespace, comments and local names are normalised) gets
//! the floor, and the log names who copied whom; the earliest keeps its score.
//!
//! The moving average (alpha 0.1) moves for answers the miner is answerable for: an evaluated
//! patch, an answer that is not a synapse (malformed, charged 0), a miner saying its own model
//! is down (its 503 with [`super::miner::MODEL_DOWN`], charged 0). A miner that could not be
//! reached, timed out or refused, and an evaluation that failed for the machine
//! (`environment_error`), leave it alone. Each miner's health (timeouts, malformed answers,
//! invalid patches, ...) is counted beside its average. Scores are saved after every answer
//! (`scores.rs`), and the loop that runs rounds unattended is `run.rs`; in `--mode agents` the
//! loop of `agents_loop.rs` runs the miners' submitted agent files instead.
//!
//! Tasks travel (`described.rs`): the synapse carries the task's portable description and its
//! bundle, so a miner on another machine can build it; an answer echoing the hash of another
//! description than the one sent is `invalid_answer`, charged 0 and never evaluated. A bundle
//! over the inline cap is served by sha256 from the validator's axon (`bundles.rs`).

mod agents_loop;
mod bundles;
mod copies;
mod described;
mod run;
mod scores;

pub use agents_loop::{AgentsConfig, AgentsReport, FirstSeen, run_agents};
pub use bundles::{BundleShelf, Describer, SHELF_BUNDLES};
pub use copies::{COPY_SIMILARITY, Copied};
pub use run::{BundleServing, RoundReport, ValidatorConfig, run};
pub use scores::{EMA_ALPHA, Health, Scores};

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;

use super::forecast::{Forecasting, Prior};
use super::scoring::{Score, final_score, judged_quality, time_score};
use crate::dataset::{Record, RecordStore};
use crate::eval::{EvalConfig, Outcome, Verdict, evaluate};
use crate::llm::judge::{JudgeInput, judge};
use crate::llm::{Budget, LlmClient};
use crate::sandbox::Engine;
use crate::subnet::{AxonTarget, CallFailure, CallResult, CodingTask, Dendrite, Neuron};
use crate::tasks::{Grading, Task};

/// The score of an answer that copies an earlier one.
pub const DUPLICATE_FLOOR: f64 = 0.005;

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
    #[error("task")]
    Task(#[source] Box<super::local::RoundError>),
    #[error("chain")]
    Chain(#[source] crate::subnet::ChainError),
    /// A chain call still failing after the retry policy's bound.
    #[error("chain: {what} still failing after {attempts} attempts over {elapsed:.0?}; giving up")]
    ChainDown {
        what: String,
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: crate::subnet::ChainError,
    },
}

impl From<super::local::RoundError> for ValidatorError {
    fn from(e: super::local::RoundError) -> Self {
        ValidatorError::Task(Box::new(e))
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
    /// An answer that is not for the task sent: it echoes another description's hash
    /// (`{"kind": "invalid_answer", "message": ...}`). Charged as a 0, never evaluated.
    Invalid { kind: String, message: String },
}

impl AnswerOutcome {
    /// The name recorded in the dataset's `outcome`: the evaluation's kind (`resolved`,
    /// `environment_error`, ...) or the call's failure (`unreachable`, `timeout`,
    /// `protocol_error`).
    pub fn kind(&self) -> String {
        match self {
            AnswerOutcome::Evaluated(o) => o.kind().to_owned(),
            AnswerOutcome::NoAnswer { kind, .. } => kind.as_str().to_owned(),
            AnswerOutcome::Invalid { kind, .. } => kind.clone(),
        }
    }

    /// Whether the score is the miner's: an answer came back and its evaluation did not fail
    /// for the machine, or it was not for the task sent.
    pub fn is_miners(&self) -> bool {
        match self {
            AnswerOutcome::Evaluated(o) => !matches!(o, Outcome::EnvironmentError { .. }),
            AnswerOutcome::NoAnswer { .. } => false,
            AnswerOutcome::Invalid { .. } => true,
        }
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
    /// Whether the patch copies an earlier answer (and so got the floor).
    pub duplicate: bool,
    /// The hotkey whose earlier answer this one copies.
    pub copy_of: Option<String>,
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
    /// Describes a task for miners on other machines (`spec`, `bundle`; a bundle over its
    /// inline cap is kept on its shelf for the miners to fetch). Without it, or when a task
    /// cannot be described, the synapse names the task only.
    pub describer: Option<Describer>,
    /// Cerebro forecasts: asked of the miners before the task goes out, made by the
    /// validator, written into the records and scored apart from the coding score
    /// (`super::forecast`). `None` asks nothing.
    pub forecasts: Option<Forecasting>,
}

impl Validator {
    /// Sends `task` to `miners`, evaluates their patches concurrently (as many at once as the
    /// engine's sandbox budget allows), scores each answer as its evaluation ends, updates
    /// `scores` (saved after every answer) and appends one record per miner. The results are
    /// in `miners`' order. Dropping the future mid-round drops the evaluations in flight (their
    /// sandboxes are removed by their guards) and keeps what was scored.
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
        let priors = match &self.forecasts {
            Some(f) => miners
                .iter()
                .zip(&asked)
                .map(|(m, a)| (m.hotkey.clone(), f.prior(&m.hotkey, task, *a)))
                .collect(),
            None => HashMap::new(),
        };
        let body = self.described_synapse(task).await;
        // The request may take the whole limit; the transport gets a little more.
        let answers = self
            .dendrite
            .fan_out(&targets, &body, self.time_limit + Duration::from_secs(5))
            .await;
        // An answer for another description than the one sent is not evaluated.
        let invalid: Vec<Option<String>> = answers
            .iter()
            .map(|a| described::invalid_echo(&body, a))
            .collect();
        // A patch only where an answer for this task came back.
        let patches: Vec<Option<&str>> = answers
            .iter()
            .zip(&invalid)
            .map(|(a, bad)| match (&a.synapse, a.failure, bad) {
                (Some(s), None, None) => Some(s.body.patch.as_deref().unwrap_or("")),
                _ => None,
            })
            .collect();
        let timed: Vec<(Option<&str>, f64)> = patches
            .iter()
            .zip(&answers)
            .map(|(p, a)| (*p, a.latency_s))
            .collect();
        let copies = copies::find(&timed);
        for (i, c) in copies.iter().enumerate() {
            if let Some(c) = c {
                let (copier, original) = (&miners[i], &miners[c.original]);
                tracing::warn!(
                    copier = %copier.hotkey, copier_uid = copier.uid,
                    original = %original.hotkey, original_uid = original.uid,
                    similarity = c.similarity,
                    "the patch copies one that came back earlier; it gets the floor"
                );
            }
        }
        let mut ledger = Ledger {
            task,
            round_id,
            scores,
            records,
            priors,
        };
        let mut results: Vec<Option<MinerResult>> = vec![None; miners.len()];
        for (i, (miner, answer)) in miners.iter().zip(&answers).enumerate() {
            if let Some(echoed) = &invalid[i] {
                let sent = body.spec_hash.as_str();
                results[i] = Some(self.invalid_answer(&mut ledger, miner, answer, sent, echoed)?);
                ledger.scores.save()?;
            } else if patches[i].is_none() {
                results[i] = Some(self.no_answer(&mut ledger, miner, answer)?);
                ledger.scores.save()?;
            }
        }
        let announced: Vec<(&Task, &str)> = patches.iter().flatten().map(|p| (task, *p)).collect();
        crate::eval::warm(&self.engine, &announced, &self.eval);
        let mut pending: FuturesUnordered<_> = patches
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| async move { (i, self.assess(task, p).await) }))
            .collect();
        let mut unscored = Unscored {
            miners,
            left: (0..miners.len())
                .filter(|&i| patches[i].is_some())
                .collect(),
        };
        while let Some((i, assessed)) = pending.next().await {
            unscored.left.remove(&i);
            let copied = copies[i].map(|c| miners[c.original].hotkey.clone());
            let answer = Answer {
                miner: &miners[i],
                call: &answers[i],
                patch: patches[i].unwrap_or_default(),
            };
            results[i] = Some(self.scored(&mut ledger, answer, assessed, copied)?);
            ledger.scores.save()?;
        }
        self.engine.empty_pool().await;
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
        let results: Vec<MinerResult> = results.into_iter().flatten().collect();
        crate::telemetry::capture(super::events::round_finished(
            round_id,
            &results,
            |r| r.resolved,
            started,
        ));
        Ok(results)
    }

    /// Writes the forecasts made for the record's miner into it and, when the outcome is the
    /// miner's, scores the miner's own forecast (`super::forecast`).
    fn settle_forecast(&self, ledger: &mut Ledger<'_>, record: &mut Record, miners: bool) {
        if let (Some(f), Some(prior)) =
            (&self.forecasts, ledger.priors.remove(&record.miner_hotkey))
        {
            f.settle(record, prior, miners);
        }
    }

    /// The evaluation of `patch` and, when it resolved, the judge's (quality, brevity).
    async fn assess(&self, task: &Task, patch: &str) -> (Verdict, Option<(f64, f64)>) {
        let verdict = evaluate(&self.engine, task, patch, &self.eval).await;
        let judged = match (&self.judge, verdict.resolved) {
            (Some((llm, dollars)), true) => {
                let mut budget = Budget::new(*dollars);
                let shown = crate::eval::reading::for_review(patch);
                // An open issue has no fix to compare with: the checklist alone says what a
                // fix does.
                let reference = match task.grading() {
                    Grading::Tests => Some(task.patch.as_str()),
                    Grading::Checklist => None,
                };
                let input = JudgeInput {
                    problem_statement: &task.problem_statement,
                    patch: &shown,
                    reference,
                    checklist: &task.checklist,
                };
                match judge(llm, &input, &mut budget).await {
                    Ok(j) => Some((j.quality, j.brevity)),
                    Err(e) => {
                        tracing::warn!(error = %e, "no judgement; scoring on correctness");
                        None
                    }
                }
            }
            _ => None,
        };
        (verdict, judged)
    }

    /// A call that brought no patch back: recorded; charged a 0 only when the miner answered
    /// something that is not a synapse or said its own model is down.
    fn no_answer(
        &self,
        ledger: &mut Ledger<'_>,
        miner: &Neuron,
        answer: &CallResult<CodingTask>,
    ) -> Result<MinerResult, ValidatorError> {
        let kind = answer.failure.unwrap_or(CallFailure::ProtocolError);
        let outcome = AnswerOutcome::NoAnswer {
            kind,
            message: answer.status_message.clone(),
        };
        let model_down = answer.status_message.starts_with(super::miner::MODEL_DOWN);
        // The dendrite's 422: the answer was not a synapse, or over the size cap.
        let malformed = kind == CallFailure::ProtocolError && answer.status_code == 422;
        let health = ledger.scores.health_of(&miner.hotkey);
        match kind {
            _ if model_down => health.model_down += 1,
            _ if malformed => health.malformed += 1,
            CallFailure::Timeout => health.timeouts += 1,
            CallFailure::Unreachable => health.unreachable += 1,
            CallFailure::ProtocolError => health.refused += 1,
        }
        let charged = model_down || malformed;
        if charged {
            ledger.scores.update(&miner.hotkey, 0.0);
        }
        let mut record = self.record_for(ledger, miner, answer);
        record.outcome = outcome.kind();
        record.outcome_reason = answer.status_message.clone();
        record.model_error = model_down;
        // No answer: the task went unresolved by this miner.
        self.settle_forecast(ledger, &mut record, true);
        let seq = ledger.records.append(&mut record)?;
        crate::telemetry::capture(super::events::answer_scored(&record));
        tracing::warn!(
            uid = miner.uid,
            status = answer.status_code,
            outcome = kind.as_str(),
            message = %answer.status_message,
            charged,
            "no answer; charged only when malformed or the miner's model is down"
        );
        Ok(MinerResult {
            uid: miner.uid,
            hotkey: miner.hotkey.clone(),
            status_code: answer.status_code,
            latency_s: answer.latency_s,
            patch_bytes: 0,
            resolved: false,
            outcome,
            charged,
            judged: None,
            duplicate: false,
            copy_of: None,
            score: 0.0,
            record_seq: seq,
            model_error: model_down.then(|| answer.status_message.clone()),
        })
    }

    /// A record of `task` for `miner`'s answer, before its outcome.
    fn record_for(
        &self,
        ledger: &Ledger<'_>,
        miner: &Neuron,
        answer: &CallResult<CodingTask>,
    ) -> Record {
        let mut record = Record::for_task(ledger.task);
        record.round_id = ledger.round_id.to_owned();
        record.validator_hotkey = self.dendrite.hotkey();
        record.miner_hotkey = miner.hotkey.clone();
        record.miner_uid = miner.uid as i64;
        record.response_seconds = answer.latency_s;
        record
    }

    /// An evaluated answer: its score (the floor for a copy of an earlier answer), the
    /// average and health moved, the record appended.
    fn scored(
        &self,
        ledger: &mut Ledger<'_>,
        answer: Answer<'_>,
        (verdict, judged): (Verdict, Option<(f64, f64)>),
        copied: Option<String>,
    ) -> Result<MinerResult, ValidatorError> {
        let Answer { miner, call, patch } = answer;
        let speed = time_score(call.latency_s, self.time_limit.as_secs_f64());
        let quality = judged.map(|(q, b)| judged_quality(q, b));
        let grading = ledger.task.grading();
        let graded = final_score(grading, verdict.resolved, quality, speed);
        let mut score = graded.value();
        let duplicate = copied.is_some();
        if duplicate {
            score = score.min(DUPLICATE_FLOOR);
        }
        let outcome = AnswerOutcome::Evaluated(verdict.outcome.clone());
        // An unjudged checklist-graded patch is the judge's failure, not the miner's.
        let charged = outcome.is_miners() && graded != Score::Unjudged;
        if graded == Score::Unjudged {
            tracing::warn!(
                uid = miner.uid,
                ?grading,
                "green, but no judgement of a task graded by its checklist: recorded at 0, not charged"
            );
        }
        if charged {
            ledger.scores.update(&miner.hotkey, score);
            let health = ledger.scores.health_of(&miner.hotkey);
            health.evaluated += 1;
            health.resolved += u64::from(verdict.resolved);
            health.copies += u64::from(duplicate);
            match verdict.outcome {
                Outcome::PatchRejected { .. } | Outcome::ApplyFailed => health.invalid_patches += 1,
                Outcome::EmptyPatch => health.empty_patches += 1,
                _ => {}
            }
        } else if !outcome.is_miners() {
            tracing::warn!(uid = miner.uid, outcome = ?verdict.outcome, "the evaluation failed for the machine; not charged to the miner");
        }
        let reply = call.synapse.as_ref().map(|s| &s.body);
        let model_error = reply
            .map(|r| r.model_error.clone())
            .filter(|e| !e.is_empty());
        let mut record = self.record_for(ledger, miner, call);
        record.model_error = model_error.is_some();
        record.agent = reply.map(|r| r.agent_name.clone()).unwrap_or_default();
        record.model = reply.map(|r| r.model.clone()).unwrap_or_default();
        // The miner's trajectory, kept when within the cap (JSON `null` otherwise).
        if let Some(t) = reply.and_then(|r| r.trajectory.as_ref())
            && let Ok(json) = serde_json::to_string(t)
            && json.len() <= crate::subnet::MAX_TRAJECTORY_BYTES
        {
            record.trajectory = json;
        }
        // A patch over the evaluation's limit was refused unread; it is not kept either.
        if patch.len() <= self.eval.max_patch_bytes {
            record.model_patch = patch.to_owned();
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
        self.settle_forecast(ledger, &mut record, charged);
        let seq = ledger.records.append(&mut record)?;
        crate::telemetry::capture(super::events::answer_scored(&record));
        tracing::info!(
            uid = miner.uid,
            status = call.status_code,
            resolved = verdict.resolved,
            score,
            duplicate,
            charged,
            "scored"
        );
        Ok(MinerResult {
            uid: miner.uid,
            hotkey: miner.hotkey.clone(),
            status_code: call.status_code,
            latency_s: call.latency_s,
            patch_bytes: patch.len(),
            resolved: verdict.resolved,
            outcome,
            charged,
            judged,
            duplicate,
            copy_of: copied,
            score,
            record_seq: seq,
            model_error,
        })
    }
}

/// The answers of a round not scored yet; named in the log when the round is dropped before
/// them (a shutdown cuts it short).
struct Unscored<'a> {
    miners: &'a [Neuron],
    left: std::collections::BTreeSet<usize>,
}

impl Drop for Unscored<'_> {
    fn drop(&mut self) {
        if self.left.is_empty() {
            return;
        }
        let names: Vec<String> = self
            .left
            .iter()
            .map(|&i| format!("uid {} ({})", self.miners[i].uid, self.miners[i].hotkey))
            .collect();
        tracing::warn!(unscored = ?names, "round cut short: these answers were not scored");
    }
}

/// Where a round's scores go.
struct Ledger<'a> {
    task: &'a Task,
    round_id: &'a str,
    scores: &'a mut Scores,
    records: &'a mut RecordStore,
    /// What the validator forecast for each miner (by hotkey) before the task went out.
    priors: HashMap<String, Prior>,
}

/// One miner's answer that carries a patch.
struct Answer<'a> {
    miner: &'a Neuron,
    call: &'a CallResult<CodingTask>,
    patch: &'a str,
}

#[cfg(test)]
mod tests;
