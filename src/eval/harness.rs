//! One evaluation: a fresh container from the task's image, the bug applied, the patch checked
//! and applied, the selected tests run with JUnit output, a verdict out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::junit::{TestStatus, parse_junit, statuses_for};
use super::patch::{PatchError, check_patch};
use crate::sandbox::{Engine, ExecRequest, ExecStatus, Limits, Sandbox, SandboxError, SandboxSpec};
use crate::tasks::Task;

/// Changes whenever a verdict for the same (task, patch) could come out differently; part of
/// every cache key, so a new harness never serves an old verdict.
pub const HARNESS_VERSION: &str = "agentao-eval-2";

const WORK: &str = "/tmp/agentao";
/// The in-container script: bug, test patch, apply chain, pytest.
const EVALUATE_SH: &str = include_str!("evaluate.sh");
/// Time allowed for applying patches, on top of the test timeout.
const APPLY_BUDGET: Duration = Duration::from_secs(60);
const LOG_CAP: usize = 64 * 1024;

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Largest patch accepted, in bytes.
    pub max_patch_bytes: usize,
    /// Time the test run may take.
    pub test_timeout: Duration,
    /// Limits of the evaluation container.
    pub limits: Limits,
    /// `agentao.run` label of the containers.
    pub run_id: String,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            max_patch_bytes: 1 << 20,
            test_timeout: Duration::from_secs(300),
            limits: Limits::default(),
            run_id: crate::config::new_run_id(),
        }
    }
}

/// How an evaluation ended. Only `Resolved` pays; `EnvironmentError` must never count
/// against a miner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Every FAIL_TO_PASS and PASS_TO_PASS test passed.
    Resolved,
    /// Tests ran; at least one selected test did not pass.
    Unresolved,
    /// The patch was empty.
    EmptyPatch,
    /// The patch was refused before touching anything.
    PatchRejected { reason: PatchError },
    /// No apply method could apply the patch.
    ApplyFailed,
    /// The test run outlived its timeout (the container was removed).
    TimedOut,
    /// The test run was killed by the memory limit.
    OutOfMemory,
    /// The machine failed (engine, image, broken task), not the patch.
    EnvironmentError { message: String },
}

/// How the patch went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMethod {
    GitApply,
    GitApply3way,
    PatchFuzz,
}

/// Seconds spent in each phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub start_s: f64,
    pub apply_s: f64,
    pub tests_s: f64,
    pub total_s: f64,
}

/// The verdict on one (task, patch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub instance_id: String,
    /// sha256 of the patch text.
    pub patch_sha256: String,
    pub harness_version: String,
    pub outcome: Outcome,
    pub resolved: bool,
    pub apply_method: Option<ApplyMethod>,
    /// Status of every FAIL_TO_PASS test.
    pub fail_to_pass: BTreeMap<String, TestStatus>,
    /// Status of every PASS_TO_PASS test.
    pub pass_to_pass: BTreeMap<String, TestStatus>,
    pub timings: Timings,
    /// Tail of the apply and test output.
    pub log: String,
}

impl Verdict {
    fn new(task: &Task, patch: &str, outcome: Outcome) -> Verdict {
        Verdict {
            instance_id: task.instance_id.clone(),
            patch_sha256: sha256(patch),
            harness_version: HARNESS_VERSION.to_owned(),
            resolved: outcome == Outcome::Resolved,
            outcome,
            apply_method: None,
            fail_to_pass: BTreeMap::new(),
            pass_to_pass: BTreeMap::new(),
            timings: Timings::default(),
            log: String::new(),
        }
    }

    /// True when the failure lies with the machine or the task, not the patch.
    pub fn is_environment_error(&self) -> bool {
        matches!(self.outcome, Outcome::EnvironmentError { .. })
    }
}

/// Hex sha256 of a text.
pub fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The cache key of a verdict: task, patch and harness version.
pub fn verdict_key(instance_id: &str, patch: &str) -> String {
    sha256(&format!(
        "{instance_id}\0{}\0{HARNESS_VERSION}",
        sha256(patch)
    ))
}

/// Evaluates `patch` on `task`. Never fails: every problem is an [`Outcome`].
pub async fn evaluate(engine: &Engine, task: &Task, patch: &str, cfg: &EvalConfig) -> Verdict {
    let begun = Instant::now();
    if let Err(reason) = check_patch(patch, cfg.max_patch_bytes, &task.protected_files()) {
        let outcome = match reason {
            PatchError::Empty => Outcome::EmptyPatch,
            reason => Outcome::PatchRejected { reason },
        };
        return Verdict::new(task, patch, outcome);
    }
    let mut verdict = Verdict::new(task, patch, Outcome::Unresolved);
    if let Err(e) = run_in_sandbox(engine, task, patch, cfg, &mut verdict).await {
        verdict.outcome = match e {
            SandboxError::WallClockExceeded { .. } => Outcome::TimedOut,
            e => Outcome::EnvironmentError {
                message: e.to_string(),
            },
        };
        verdict.resolved = false;
    }
    verdict.timings.total_s = begun.elapsed().as_secs_f64();
    verdict
}

async fn run_in_sandbox(
    engine: &Engine,
    task: &Task,
    patch: &str,
    cfg: &EvalConfig,
    verdict: &mut Verdict,
) -> Result<(), SandboxError> {
    let t = Instant::now();
    let mut spec = SandboxSpec::new(task.image.clone(), cfg.run_id.clone());
    spec.limits = cfg.limits.clone();
    spec.workdir = Some("/repo".to_owned());
    let sandbox = Sandbox::start(engine, &spec).await?;
    verdict.timings.start_s = t.elapsed().as_secs_f64();
    let result = evaluate_inside(&sandbox, task, patch, cfg, verdict).await;
    // The container goes whatever happened; a timeout already killed it.
    let removed = sandbox.remove().await;
    result?;
    removed
}

async fn evaluate_inside(
    sandbox: &Sandbox,
    task: &Task,
    patch: &str,
    cfg: &EvalConfig,
    verdict: &mut Verdict,
) -> Result<(), SandboxError> {
    // One upload and one exec: round trips to the engine are most of the overhead.
    let t = Instant::now();
    sandbox
        .write_files(
            "/tmp",
            &[
                ("agentao/evaluate.sh", EVALUATE_SH.as_bytes(), 0o755),
                ("agentao/bug.diff", task.bug_patch.as_bytes(), 0o644),
                ("agentao/test.diff", task.test_patch.as_bytes(), 0o644),
                ("agentao/model.diff", patch.as_bytes(), 0o644),
            ],
        )
        .await?;
    let mut cmd = vec!["bash".to_owned(), format!("{WORK}/evaluate.sh")];
    let tests = task.selected_tests();
    cmd.extend(tests.iter().cloned());
    let mut applied_at = None;
    let out = sandbox
        .exec_with(
            &ExecRequest::new(cmd)
                .workdir("/repo")
                .env(format!(
                    "AGENTAO_TEST_TIMEOUT={}",
                    cfg.test_timeout.as_secs().max(1)
                ))
                .timeout(cfg.test_timeout + APPLY_BUDGET)
                .output_cap(LOG_CAP),
            |_, bytes| {
                if applied_at.is_none() && bytes.windows(15).any(|w| w == b"AGENTAO_APPLIED") {
                    applied_at = Some(t.elapsed());
                }
            },
        )
        .await?;
    let total = t.elapsed();
    let apply = applied_at.unwrap_or(total);
    verdict.timings.apply_s = apply.as_secs_f64();
    verdict.timings.tests_s = (total - apply).as_secs_f64();
    verdict.log = format!("{}{}", out.stdout, out.stderr);
    verdict.apply_method = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("AGENTAO_APPLIED "))
        .and_then(|m| match m.trim() {
            "git_apply" => Some(ApplyMethod::GitApply),
            "git_apply3way" => Some(ApplyMethod::GitApply3way),
            "patch_fuzz" => Some(ApplyMethod::PatchFuzz),
            _ => None,
        });
    match out.status {
        ExecStatus::TimedOut => {
            verdict.outcome = Outcome::TimedOut;
            return Ok(());
        }
        ExecStatus::OutOfMemory => {
            verdict.outcome = Outcome::OutOfMemory;
            return Ok(());
        }
        ExecStatus::Exited(90) if out.stdout.contains("AGENTAO_TASK_BROKEN") => {
            return Err(SandboxError::Tool {
                tool: "applying the task's own patches".into(),
                reason: verdict.log.clone(),
            });
        }
        // The in-container `timeout` stopped the tests (124, or 137 after its -k grace).
        ExecStatus::Exited(124 | 137)
            if verdict.apply_method.is_some()
                && verdict.timings.tests_s + 1.0 >= cfg.test_timeout.as_secs_f64() =>
        {
            verdict.outcome = Outcome::TimedOut;
            return Ok(());
        }
        ExecStatus::Exited(91) if verdict.apply_method.is_none() => {
            verdict.outcome = Outcome::ApplyFailed;
            return Ok(());
        }
        ExecStatus::Exited(_) => {}
    }
    let xml = match sandbox
        .read_file(&format!("{WORK}/junit.xml"), 32 << 20)
        .await
    {
        Ok(xml) => String::from_utf8_lossy(&xml).into_owned(),
        // No report: pytest died before writing it (a patch that breaks import, or exit()).
        Err(SandboxError::BadPath(_)) => String::from("<testsuites/>"),
        Err(e) => return Err(e),
    };
    let report = parse_junit(&xml).map_err(|e| SandboxError::Tool {
        tool: "pytest".into(),
        reason: e.to_string(),
    })?;
    verdict.fail_to_pass = statuses_for(&report, &task.fail_to_pass);
    verdict.pass_to_pass = statuses_for(&report, &task.pass_to_pass);
    let all_pass = verdict
        .fail_to_pass
        .values()
        .chain(verdict.pass_to_pass.values())
        .all(|s| s.passed());
    verdict.resolved = all_pass && !tests.is_empty();
    verdict.outcome = if verdict.resolved {
        Outcome::Resolved
    } else {
        Outcome::Unresolved
    };
    debug!(instance = %task.instance_id, resolved = verdict.resolved, "evaluated");
    Ok(())
}
