//! Tasks that travel, on the validator's side: the synapse a miner gets (the task's public
//! fields, and, when the describer can make them, its portable description and inline bundle:
//! a forged task's through the forge, a GitHub task's as its repository at the base commit),
//! and the answers that echo another description's hash than the one sent (`invalid_answer`,
//! charged 0, never evaluated).

use base64::Engine as _;

use super::{AnswerOutcome, Ledger, MinerResult, Validator, ValidatorError};
use crate::forge::Forge;
use crate::subnet::{CallResult, CodingTask, Neuron};
use crate::tasks::Task;
use crate::tasks::model::SOURCE_GITHUB;
use crate::tasks::spec::Workspace;

impl AnswerOutcome {
    /// An answer echoing the hash of another description than the one sent.
    pub fn invalid(sent: &str, echoed: &str) -> AnswerOutcome {
        AnswerOutcome::Invalid {
            kind: "invalid_answer".into(),
            message: format!("answer for description {echoed}, not the one sent ({sent})"),
        }
    }
}

/// The hash an answer echoes when it is not the one of the description sent in `body`; `None`
/// for an answer for this task, no answer, or an empty echo (an original-protocol miner's: its
/// class has no such field).
pub(super) fn invalid_echo(body: &CodingTask, answer: &CallResult<CodingTask>) -> Option<String> {
    if answer.failure.is_some() || body.spec_hash.is_empty() {
        return None;
    }
    let echoed = answer.synapse.as_ref()?.body.spec_hash.as_str();
    (!echoed.is_empty() && echoed != body.spec_hash).then(|| echoed.to_owned())
}

impl Validator {
    /// The synapse a miner gets for `task`: its public fields only. `repo` is
    /// `pypi:name==version` for a task forged from an sdist, else the task's `owner/name`.
    pub fn synapse_for(&self, task: &Task) -> CodingTask {
        let repo = if task.package.is_empty() || task.pypi_version.is_empty() {
            task.repo.clone()
        } else {
            format!("pypi:{}=={}", task.package, task.pypi_version)
        };
        CodingTask {
            repo,
            problem_statement: task.problem_statement.clone(),
            task_id: task.instance_id.clone(),
            version: task.version.clone(),
            hints: task.hints_text.clone(),
            time_limit: self.time_limit.as_secs_f64(),
            ..CodingTask::default()
        }
    }

    /// The synapse with the task's portable description and its inline bundle, when the
    /// describer can make them (a bundle over the inline cap is left out and put on the
    /// describer's shelf, for the miner to fetch from this validator's axon). Falls back to [`Validator::synapse_for`] with a log line.
    pub async fn described_synapse(&self, task: &Task) -> CodingTask {
        let mut body = self.synapse_for(task);
        let Some(describer) = &self.describer else {
            return body;
        };
        let described = match Forge::new(&self.engine, describer.forge.clone()) {
            // Harvested from GitHub: the repository at the base commit.
            Ok(forge) if task.source == SOURCE_GITHUB => {
                crate::github::describe(&forge, task, &describer.git_base_url, body.time_limit)
                    .await
            }
            Ok(forge) => forge.describe(task, body.time_limit).await,
            Err(e) => Err(e.into()),
        };
        match described {
            Ok(d) => {
                if d.bundle.len() as u64 <= describer.inline_cap {
                    body.bundle = base64::engine::general_purpose::STANDARD.encode(&d.bundle);
                } else if let Workspace::Bundle { sha256, .. } = &d.spec.workspace {
                    describer.shelf.put(sha256, &d.bundle);
                    tracing::info!(task = %task.instance_id, bytes = d.bundle.len(), cap = describer.inline_cap, %sha256,
                        "the workspace bundle is over the inline cap; sent without it, served by hash on this validator's axon");
                }
                body.spec_hash = d.spec.hash.clone();
                body.spec = serde_json::to_value(&d.spec).ok();
            }
            Err(e) => {
                tracing::warn!(task = %task.instance_id, error = %e, "the task cannot be described; only miners holding it can answer")
            }
        }
        body
    }

    /// An answer for another description than the one sent (`sent`): recorded as
    /// `invalid_answer`, charged a 0, never evaluated.
    pub(super) fn invalid_answer(
        &self,
        ledger: &mut Ledger<'_>,
        miner: &Neuron,
        answer: &CallResult<CodingTask>,
        sent: &str,
        echoed: &str,
    ) -> Result<MinerResult, ValidatorError> {
        let outcome = AnswerOutcome::invalid(sent, echoed);
        ledger.scores.update(&miner.hotkey, 0.0);
        ledger.scores.health_of(&miner.hotkey).invalid_answers += 1;
        let mut record = self.record_for(ledger, miner, answer);
        record.outcome = outcome.kind();
        if let AnswerOutcome::Invalid { message, .. } = &outcome {
            record.outcome_reason = message.clone();
        }
        // Not an answer to this task: it went unresolved by this miner.
        self.settle_forecast(ledger, &mut record, true);
        let seq = ledger.records.append(&mut record)?;
        tracing::warn!(
            uid = miner.uid,
            sent,
            echoed,
            "invalid answer: another description's hash; charged 0"
        );
        let patch_bytes = answer
            .synapse
            .as_ref()
            .and_then(|s| s.body.patch.as_ref())
            .map_or(0, String::len);
        Ok(MinerResult {
            uid: miner.uid,
            hotkey: miner.hotkey.clone(),
            status_code: answer.status_code,
            latency_s: answer.latency_s,
            patch_bytes,
            resolved: false,
            outcome,
            charged: true,
            judged: None,
            duplicate: false,
            copy_of: None,
            score: 0.0,
            record_seq: seq,
            model_error: None,
        })
    }
}
