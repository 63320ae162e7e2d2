//! The validator in `--mode agents`, unattended: instead of sending tasks to miners, it runs
//! the agent files they submitted (`neurons::agents`) on its own machine. A round: the
//! metagraph; every serving miner (not this validator, no validator permit, with an axon) is
//! asked for its current agent over the dendrite (`AgentCode`, all at once up to
//! [`AgentsConfig::fetch_concurrency`], each within [`AgentsConfig::fetch_timeout`]); the
//! answers become submissions; a few screening tasks and a full set are picked from the store
//! (forged when it is empty); [`run_agents_round`] runs them behind the model proxy; each
//! agent's score moves its miner's moving average ([`Scores`]); weights are set as in the
//! tasks loop (`run.rs`, whose chain helpers this shares).
//!
//! Every task kind is allowed here, `--remote-task-kinds` does not apply: the agents run on
//! the validator's machine, so no task (nor its answer) leaves it.
//!
//! Who is charged: a miner that did not answer (unreachable, timed out, refused) or serves no
//! agent is skipped with one log line and its average is left alone, as the tasks loop leaves
//! a miner it could not reach. A miner that answered with code whose sha256 is not the one it
//! claims, or with a file that is not an agent file, is charged a 0 (what it answered is
//! wrong, like a malformed answer in the tasks loop). A copy and an agent that failed
//! screening are charged their 0 by [`run_agents_round`]'s ranking.
//!
//! Earliest wins: a submission's time is when this validator first saw that miner serve that
//! sha256 ([`FirstSeen`], kept in `validator/agents-first-seen.json` so a restart keeps the
//! order); several first seen in one round are ordered by uid. Copies are found among the
//! submissions of a round.
//!
//! Cancelling stops at once: the round in progress is dropped, and with it the agents'
//! sandboxes and proxy containers (their guards remove them); records already appended stay.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::run::{OnChain, pause_before, registered_metagraph, serving_miners, set_weights};
use super::{Scores, ValidatorError};
use crate::agent::code::{CodeRunConfig, agent_hash};
use crate::dataset::RecordStore;
use crate::eval::EvalConfig;
use crate::neurons::agents::{
    AgentScore, AgentSubmission, AgentVault, AgentsRound, run_agents_round, submission_from,
};
use crate::neurons::lifecycle::Backoff;
use crate::neurons::local::{TaskSource, pick_task};
use crate::sandbox::Engine;
use crate::subnet::{AgentCode, AnyChain, AxonTarget, CallFailure, Dendrite, Neuron};
use crate::tasks::{Task, TaskStore};

/// What [`run_agents`] needs, built by the caller.
pub struct AgentsConfig {
    pub engine: Engine,
    /// Signs the `AgentCode` requests.
    pub dendrite: Dendrite,
    /// The runs' template: the proxy in front of the validator's model, limits, wall clock.
    pub code: CodeRunConfig,
    pub eval: EvalConfig,
    pub chain: AnyChain,
    /// This validator's hotkey (ss58) and subnet.
    pub hotkey: String,
    pub netuid: u16,
    pub store: TaskStore,
    pub records: RecordStore,
    pub scores: Scores,
    pub source: TaskSource,
    /// Screening tasks per round (an agent resolving none of them does not run the full set).
    pub screening: usize,
    /// Tasks of the full set per round.
    pub tasks: usize,
    /// Every agent version run, by hash.
    pub vault: AgentVault,
    pub first_seen: FirstSeen,
    /// How long a miner has to answer `AgentCode`, and how many are asked at once.
    pub fetch_timeout: Duration,
    pub fetch_concurrency: usize,
    /// Rounds to run; `None` until cancelled.
    pub rounds: Option<u64>,
    /// Wait between rounds.
    pub interval: Duration,
    /// Prefix of the round ids.
    pub run_id: String,
    /// The retry policy of chain calls.
    pub retry: Backoff,
    /// Receives each round's report.
    pub report: Box<dyn Fn(&AgentsReport<'_>) + Send + Sync>,
}

/// What an agents round did: its tasks, each agent's score, and the miners skipped or charged
/// without a run (uid, hotkey, why).
#[derive(Debug, Serialize)]
pub struct AgentsReport<'a> {
    pub round_id: &'a str,
    pub screening: Vec<&'a str>,
    pub full: Vec<&'a str>,
    pub agents: &'a [AgentScore],
    pub skipped: &'a [(u16, String, String)],
}

/// When this validator first saw each miner serve each agent version: unix milliseconds,
/// strictly increasing in the order seen, by `"<hotkey> <sha256>"`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FirstSeen {
    seen: BTreeMap<String, u64>,
    #[serde(skip)]
    path: PathBuf,
}

impl FirstSeen {
    /// Loads `path` (empty when missing or unreadable).
    pub fn load(path: &Path) -> FirstSeen {
        let mut f: FirstSeen = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        f.path = path.to_owned();
        f
    }

    /// When `hotkey` was first seen serving `sha256`; a new pair gets now, later than every
    /// time kept.
    pub fn at(&mut self, hotkey: &str, sha256: &str) -> u64 {
        let latest = self.seen.values().copied().max().unwrap_or(0);
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        *self
            .seen
            .entry(format!("{hotkey} {sha256}"))
            .or_insert(now.max(latest + 1))
    }

    /// Writes the file atomically (a synced temporary file renamed over the old one).
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.partial");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("serialisable"))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)
    }
}

/// Runs agents rounds until `cfg.rounds` ran or `cancel` is cancelled; `Ok` in both cases.
pub async fn run_agents(
    mut cfg: AgentsConfig,
    cancel: CancellationToken,
) -> Result<(), ValidatorError> {
    let cfg = &mut cfg;
    let on_chain = OnChain {
        chain: &cfg.chain,
        hotkey: &cfg.hotkey,
        netuid: cfg.netuid,
        retry: &cfg.retry,
    };
    let mut round = 0u64;
    let mut rotation = cfg.records.len();
    while cfg.rounds.is_none_or(|n| round < n) {
        if !pause_before(round, cfg.interval, &cancel).await {
            break;
        }
        let Some(mg) = registered_metagraph(&on_chain, &cancel).await? else {
            break;
        };
        let round_id = format!("{}-{round}", cfg.run_id);
        round += 1;
        let miners = serving_miners(&mg, &cfg.hotkey);
        if miners.is_empty() {
            tracing::warn!("no miner serves an axon on this subnet; waiting");
            continue;
        }
        let answers = tokio::select! {
            a = fetch_agents(&cfg.dendrite, miners, cfg.fetch_timeout, cfg.fetch_concurrency) => a,
            _ = cancel.cancelled() => break,
        };
        let (submissions, skipped) = submissions(answers, &mut cfg.first_seen, &mut cfg.scores);
        if let Err(e) = cfg.first_seen.save() {
            tracing::warn!(error = %e, "cannot keep when the agents were first seen");
        }
        if submissions.is_empty() {
            cfg.scores.save()?;
            tracing::warn!(round = %round_id, "no miner served an agent; waiting");
            continue;
        }
        let picked = tokio::select! {
            t = pick_tasks(cfg, rotation) => t?,
            _ = cancel.cancelled() => break,
        };
        rotation += (cfg.screening + cfg.tasks) as u64;
        let (screening, full) = picked;
        let mut agents_round = AgentsRound {
            engine: &cfg.engine,
            screening: &screening,
            full: &full,
            code: cfg.code.clone(),
            eval: cfg.eval.clone(),
            vault: Some(&cfg.vault),
            records: Some(&mut cfg.records),
            validator_hotkey: cfg.hotkey.clone(),
            round_id: round_id.clone(),
        };
        let played = tokio::select! {
            s = run_agents_round(&mut agents_round, &submissions) => Some(s),
            _ = cancel.cancelled() => None,
        };
        let Some(agents) = played else {
            tracing::warn!(round = %round_id, "round cut short by the shutdown; the results recorded so far are kept");
            break;
        };
        for a in &agents {
            charge(&mut cfg.scores, a, screening.len());
        }
        cfg.scores.save()?;
        (cfg.report)(&AgentsReport {
            round_id: &round_id,
            screening: screening.iter().map(|t| t.instance_id.as_str()).collect(),
            full: full.iter().map(|t| t.instance_id.as_str()).collect(),
            agents: &agents,
            skipped: &skipped,
        });
        if !set_weights(&on_chain, &cfg.scores, &mg, &round_id, &cancel).await? {
            break;
        }
    }
    Ok(())
}

/// Each miner's answer to `AgentCode` (asking for its current version), by uid.
async fn fetch_agents(
    dendrite: &Dendrite,
    miners: Vec<Neuron>,
    timeout: Duration,
    concurrency: usize,
) -> Vec<(Neuron, crate::subnet::CallResult<AgentCode>)> {
    let mut answers: Vec<_> = futures_util::stream::iter(miners)
        .map(|n| async move {
            let target = AxonTarget {
                ip: n.ip.clone(),
                port: n.port,
                hotkey: n.hotkey.clone(),
            };
            let answer = dendrite.call(&target, AgentCode::default(), timeout).await;
            (n, answer)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    answers.sort_by_key(|(n, _)| n.uid);
    answers
}

/// The submissions among the answers (timed by `first_seen`), and the miners left out with
/// why; a wrong answer is charged a 0 here (see the module's doc).
fn submissions(
    answers: Vec<(Neuron, crate::subnet::CallResult<AgentCode>)>,
    first_seen: &mut FirstSeen,
    scores: &mut Scores,
) -> (Vec<AgentSubmission>, Vec<(u16, String, String)>) {
    let mut subs = Vec::new();
    let mut skipped = Vec::new();
    for (n, call) in answers {
        let why = match (call.synapse, call.failure) {
            (Some(s), _) if s.body.code.is_none() => "serves no agent".to_owned(),
            (Some(s), _) => {
                // Timed once checked: a false claim of a hash leaves no sighting behind.
                match submission_from(&n.hotkey, n.uid, &s.body, 0) {
                    Some(mut sub) => {
                        sub.submitted_at = first_seen.at(&n.hotkey, &s.body.code_sha256);
                        subs.push(sub);
                        continue;
                    }
                    None => {
                        let code = s.body.code.as_deref().unwrap_or_default().as_bytes();
                        scores.update(&n.hotkey, 0.0);
                        scores.health_of(&n.hotkey).malformed += 1;
                        format!(
                            "answered code that is not a valid agent file with its sha256 \
                             (claimed {}, is {}); charged 0",
                            s.body.code_sha256,
                            agent_hash(code)
                        )
                    }
                }
            }
            (None, failure) => {
                let health = scores.health_of(&n.hotkey);
                match failure {
                    Some(CallFailure::Timeout) => health.timeouts += 1,
                    Some(CallFailure::Unreachable) => health.unreachable += 1,
                    _ => health.refused += 1,
                }
                format!(
                    "no answer ({} {})",
                    call.status_code,
                    failure.map_or("", |f| f.as_str())
                )
            }
        };
        tracing::warn!(uid = n.uid, miner = %n.hotkey, "agent not run: {why}");
        skipped.push((n.uid, n.hotkey, why));
    }
    (subs, skipped)
}

/// The round's screening tasks and full set: distinct tasks of the rotation from `rotation`
/// on; when the store holds fewer than both need, the full set takes them again from the
/// start (so a one-task store screens and scores on the same task).
async fn pick_tasks(
    cfg: &AgentsConfig,
    rotation: u64,
) -> Result<(Vec<Task>, Vec<Task>), ValidatorError> {
    let wanted = cfg.screening + cfg.tasks;
    let mut distinct: Vec<Task> = Vec::new();
    for i in 0..wanted as u64 {
        let t = pick_task(&cfg.engine, &cfg.store, &cfg.source, rotation + i).await?;
        if !distinct.iter().any(|d| d.instance_id == t.instance_id) {
            distinct.push(t);
        }
    }
    let screening: Vec<Task> = distinct.iter().take(cfg.screening).cloned().collect();
    let mut full: Vec<Task> = Vec::new();
    for t in distinct.iter().cycle().skip(cfg.screening).take(cfg.tasks) {
        if !full.iter().any(|f| f.instance_id == t.instance_id) {
            full.push(t.clone());
        }
    }
    Ok((screening, full))
}

/// Moves the miner's average by its agent's score and counts its runs.
fn charge(scores: &mut Scores, a: &AgentScore, screening: usize) {
    scores.update(&a.hotkey, a.score);
    let health = scores.health_of(&a.hotkey);
    if a.copy_of.is_some() {
        health.copies += 1;
    } else {
        health.evaluated += (screening + a.attempted) as u64;
        health.resolved += (a.screening_resolved + a.resolved) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::FirstSeen;

    #[test]
    fn the_first_sighting_wins_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.json");
        let mut seen = FirstSeen::load(&path);
        let a = seen.at("alice", "aa");
        let b = seen.at("bob", "aa");
        assert!(b > a, "a later pair is later even within one millisecond");
        assert_eq!(seen.at("alice", "aa"), a);
        seen.save().unwrap();
        let mut again = FirstSeen::load(&path);
        assert_eq!((again.at("alice", "aa"), again.at("bob", "aa")), (a, b));
        assert!(again.at("carol", "cc") > b);
    }
}
