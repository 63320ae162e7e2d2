//! Scoring agents run as code (the answer-proof way to mine): every submitted agent file runs,
//! on the validator's machine, on the same tasks behind the model proxy (`agent::code`).
//!
//! - Screening: a few easy tasks first; only an agent resolving at least one goes on to the
//!   full set.
//! - The score is the fraction of the full set resolved; cost breaks ties (the cheaper agent
//!   keeps the score, each dearer one of the same fraction loses a thousandth per place).
//! - A copy (same sha256, or normalised token similarity ≥ 0.98 against any earlier
//!   submission, `agent::code::copy`) is not run and takes no reward; the earliest keeps it.
//! - Every version a validator ran is kept by hash ([`AgentVault`]); results go to the dataset
//!   with `agent = "agent:<sha256>"`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::agent::code::copy::copies_of;
use crate::agent::code::{CodeRunConfig, agent_hash, run_agent_code};
use crate::dataset::{Record, RecordStore};
use crate::eval::{EvalConfig, evaluate};
use crate::sandbox::Engine;
use crate::subnet::AgentCode;
use crate::tasks::Task;

/// One miner's agent file, in submission order.
#[derive(Debug, Clone)]
pub struct AgentSubmission {
    pub hotkey: String,
    pub uid: u16,
    pub version: u32,
    pub code: Vec<u8>,
    /// When it was first seen (unix seconds or block): the earlier keeps a copied agent's
    /// reward.
    pub submitted_at: u64,
}

/// How one agent fared.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentScore {
    pub hotkey: String,
    pub uid: u16,
    pub sha256: String,
    /// The earlier submission (its sha256) this one copies.
    pub copy_of: Option<String>,
    pub screening_resolved: usize,
    pub passed_screening: bool,
    pub resolved: usize,
    pub attempted: usize,
    pub cost_usd: f64,
    pub score: f64,
}

/// Every agent version a validator ran, by hash: `<dir>/<sha256>.py`.
#[derive(Debug, Clone)]
pub struct AgentVault {
    dir: PathBuf,
}

impl AgentVault {
    pub fn new(dir: &Path) -> AgentVault {
        AgentVault {
            dir: dir.to_owned(),
        }
    }

    /// Keeps `code` (written once; later calls with the same code do nothing).
    pub fn keep(&self, code: &[u8]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}.py", agent_hash(code)));
        if !path.exists() {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, code)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(path)
    }

    /// A kept version.
    pub fn get(&self, sha256: &str) -> Option<Vec<u8>> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        std::fs::read(self.dir.join(format!("{sha256}.py"))).ok()
    }
}

/// The miner's submitted agent files (`miner submit-agent`): each version by hash in the
/// folder, `index.json` listing them in order; the last is the current one, served through
/// the `AgentCode` synapse.
#[derive(Debug, Clone)]
pub struct MinerAgents {
    vault: AgentVault,
    index: PathBuf,
}

/// One submitted version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentVersion {
    pub sha256: String,
    pub version: u32,
    pub submitted_at: i64,
}

impl MinerAgents {
    pub fn new(dir: &Path) -> MinerAgents {
        MinerAgents {
            vault: AgentVault::new(dir),
            index: dir.join("index.json"),
        }
    }

    /// The versions submitted, oldest first.
    pub fn versions(&self) -> Vec<AgentVersion> {
        std::fs::read(&self.index)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Keeps `code` as the current version (the same file again keeps its version).
    pub fn submit(&self, code: &[u8]) -> std::io::Result<AgentVersion> {
        self.vault.keep(code)?;
        let sha256 = agent_hash(code);
        let mut versions = self.versions();
        if let Some(last) = versions.last()
            && last.sha256 == sha256
        {
            return Ok(last.clone());
        }
        let v = AgentVersion {
            sha256,
            version: versions.last().map_or(1, |l| l.version + 1),
            submitted_at: chrono::Utc::now().timestamp(),
        };
        versions.push(v.clone());
        let tmp = self.index.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&versions)?)?;
        std::fs::rename(&tmp, &self.index)?;
        Ok(v)
    }

    /// The answer to an `AgentCode` request: the version asked for (the current one when the
    /// request names none); nothing when unknown.
    pub fn answer(&self, mut asked: AgentCode) -> AgentCode {
        let versions = self.versions();
        let found = if asked.sha256.is_empty() {
            versions.last()
        } else {
            versions.iter().find(|v| v.sha256 == asked.sha256)
        };
        if let Some(v) = found
            && let Some(code) = self.vault.get(&v.sha256)
        {
            asked.code = Some(String::from_utf8_lossy(&code).into_owned());
            asked.code_sha256 = v.sha256.clone();
            asked.version = v.version;
        }
        asked
    }
}

/// A miner's answer taken as a submission: the sha256 must be the code's, the file must pass
/// [`crate::agent::code::check_agent_file`].
pub fn submission_from(
    hotkey: &str,
    uid: u16,
    answer: &AgentCode,
    submitted_at: u64,
) -> Option<AgentSubmission> {
    let code = answer.code.as_ref()?.as_bytes().to_vec();
    if agent_hash(&code) != answer.code_sha256
        || crate::agent::code::check_agent_file(&code).is_err()
    {
        return None;
    }
    Some(AgentSubmission {
        hotkey: hotkey.to_owned(),
        uid,
        version: answer.version,
        code,
        submitted_at,
    })
}

/// What an agents round runs on.
pub struct AgentsRound<'a> {
    pub engine: &'a Engine,
    pub screening: &'a [Task],
    pub full: &'a [Task],
    /// The run's template (its run id gets the agent's hash and the task appended).
    pub code: CodeRunConfig,
    pub eval: EvalConfig,
    pub vault: Option<&'a AgentVault>,
    pub records: Option<&'a mut RecordStore>,
    pub validator_hotkey: String,
    pub round_id: String,
}

/// Runs every submission (copies excepted) and scores it.
pub async fn run_agents_round(
    round: &mut AgentsRound<'_>,
    submissions: &[AgentSubmission],
) -> Vec<AgentScore> {
    let mut order: Vec<&AgentSubmission> = submissions.iter().collect();
    order.sort_by_key(|s| s.submitted_at);
    let files: Vec<&[u8]> = order.iter().map(|s| &s.code[..]).collect();
    let copies = copies_of(&files);
    let mut scores = Vec::new();
    for (sub, copy) in order.iter().zip(copies) {
        let sha256 = agent_hash(&sub.code);
        if let Some(vault) = round.vault
            && let Err(e) = vault.keep(&sub.code)
        {
            warn!(error = %e, "cannot keep the agent file");
        }
        let mut score = AgentScore {
            hotkey: sub.hotkey.clone(),
            uid: sub.uid,
            sha256: sha256.clone(),
            copy_of: copy.map(|j| agent_hash(files[j])),
            screening_resolved: 0,
            passed_screening: false,
            resolved: 0,
            attempted: 0,
            cost_usd: 0.0,
            score: 0.0,
        };
        if score.copy_of.is_some() {
            info!(agent = %&sha256[..12], miner = %sub.hotkey, "agent is a copy: not run, no reward");
            scores.push(score);
            continue;
        }
        for task in round.screening {
            let (resolved, cost) = run_one(round, sub, task).await;
            score.screening_resolved += usize::from(resolved);
            score.cost_usd += cost;
        }
        score.passed_screening = score.screening_resolved > 0;
        if score.passed_screening {
            for task in round.full {
                let (resolved, cost) = run_one(round, sub, task).await;
                score.resolved += usize::from(resolved);
                score.attempted += 1;
                score.cost_usd += cost;
            }
        }
        scores.push(score);
    }
    rank(&mut scores);
    scores
}

async fn run_one(round: &mut AgentsRound<'_>, sub: &AgentSubmission, task: &Task) -> (bool, f64) {
    let sha256 = agent_hash(&sub.code);
    let mut cfg = round.code.clone();
    cfg.run_id = format!("{}-{}", round.code.run_id, &sha256[..8]);
    let started = std::time::Instant::now();
    let run = run_agent_code(round.engine, task, &sub.code, &cfg).await;
    let response_seconds = started.elapsed().as_secs_f64();
    let (patch, usage, outcome_note) = match run {
        Ok(run) => (run.patch, run.usage, format!("{:?}", run.exit)),
        Err(e) => {
            warn!(agent = %&sha256[..12], task = %task.instance_id, error = %e, "agent run failed");
            (String::new(), Default::default(), e.to_string())
        }
    };
    let verdict = evaluate(round.engine, task, &patch, &round.eval).await;
    if let Some(records) = round.records.as_deref_mut() {
        let mut record = Record::for_task(task);
        record.round_id = round.round_id.clone();
        record.validator_hotkey = round.validator_hotkey.clone();
        record.miner_hotkey = sub.hotkey.clone();
        record.miner_uid = i64::from(sub.uid);
        record.agent = format!("agent:{sha256}");
        record.model_patch = patch.clone();
        record.resolved = verdict.resolved;
        record.outcome = serde_json::to_value(&verdict.outcome)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", verdict.outcome));
        record.outcome_reason = outcome_note;
        record.cost_usd = usage.cost_usd;
        record.prompt_tokens = usage.prompt_tokens as i64;
        record.completion_tokens = usage.completion_tokens as i64;
        record.response_seconds = response_seconds;
        record.final_score = f64::from(u8::from(verdict.resolved));
        if let Err(e) = records.append(&mut record) {
            warn!(error = %e, "cannot record the agent's result");
        }
    }
    (verdict.resolved, usage.cost_usd)
}

/// Scores: the fraction resolved; copies and agents that failed screening get 0; among equal
/// fractions the cheaper agent ranks first and each later one loses a thousandth per place.
pub fn rank(scores: &mut [AgentScore]) {
    for s in scores.iter_mut() {
        s.score = if s.copy_of.is_none() && s.passed_screening && s.attempted > 0 {
            s.resolved as f64 / s.attempted as f64
        } else {
            0.0
        };
    }
    let mut idx: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i].score > 0.0)
        .collect();
    idx.sort_by(|&a, &b| {
        scores[b]
            .score
            .total_cmp(&scores[a].score)
            .then(scores[a].cost_usd.total_cmp(&scores[b].cost_usd))
    });
    let mut place = 0;
    for w in 0..idx.len() {
        if w > 0 && scores[idx[w]].score == scores[idx[w - 1]].score {
            place += 1;
        } else {
            place = 0;
        }
        let i = idx[w];
        scores[i].score *= 1.0 - 0.001 * f64::from(place.min(999) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sha: &str, resolved: usize, cost: f64, copy: bool) -> AgentScore {
        AgentScore {
            hotkey: sha.into(),
            uid: 0,
            sha256: sha.into(),
            copy_of: copy.then(|| "x".into()),
            screening_resolved: usize::from(resolved > 0),
            passed_screening: resolved > 0,
            resolved,
            attempted: 4,
            cost_usd: cost,
            score: 0.0,
        }
    }

    #[test]
    fn fraction_resolved_with_cost_breaking_ties_and_copies_at_zero() {
        let mut v = vec![
            s("dear", 2, 0.9, false),
            s("cheap", 2, 0.1, false),
            s("best", 3, 2.0, false),
            s("copy", 3, 0.0, true),
            s("none", 0, 0.0, false),
        ];
        rank(&mut v);
        let by: std::collections::HashMap<_, _> =
            v.iter().map(|x| (x.sha256.as_str(), x.score)).collect();
        assert_eq!(by["best"], 0.75);
        assert_eq!(by["cheap"], 0.5);
        assert!(by["dear"] < 0.5 && by["dear"] > 0.49);
        assert_eq!(by["copy"], 0.0);
        assert_eq!(by["none"], 0.0);
    }

    #[test]
    fn the_vault_keeps_each_version_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgentVault::new(dir.path());
        let p = vault.keep(b"def agent_main(i):\n    return ''\n").unwrap();
        let sha = agent_hash(b"def agent_main(i):\n    return ''\n");
        assert!(p.ends_with(format!("{sha}.py")));
        assert_eq!(
            vault.get(&sha).unwrap(),
            b"def agent_main(i):\n    return ''\n"
        );
        assert!(vault.get("../../etc/passwd").is_none());
    }

    #[test]
    fn a_miner_serves_its_current_version_and_a_tampered_answer_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let miner = MinerAgents::new(dir.path());
        let v1 = miner
            .submit(b"def agent_main(i):\n    return ''\n")
            .unwrap();
        let again = miner
            .submit(b"def agent_main(i):\n    return ''\n")
            .unwrap();
        assert_eq!((v1.version, again.version), (1, 1));
        let v2 = miner
            .submit(b"def agent_main(i):\n    return 'x'\n")
            .unwrap();
        assert_eq!(v2.version, 2);
        let current = miner.answer(AgentCode::default());
        assert_eq!(
            (current.version, current.code_sha256.as_str()),
            (2, v2.sha256.as_str())
        );
        let old = miner.answer(AgentCode {
            sha256: v1.sha256.clone(),
            ..AgentCode::default()
        });
        assert_eq!(old.version, 1);
        assert!(submission_from("h", 1, &current, 0).is_some());
        let mut forged = current.clone();
        forged.code = Some("def agent_main(i):\n    return 'y'\n".into());
        assert!(submission_from("h", 1, &forged, 0).is_none());
    }
}
