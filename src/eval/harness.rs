//! One evaluation: a fresh container from the task's image, the bug applied, the patch checked
//! and applied, the selected tests run, a verdict out.
//!
//! The container's setup (`prepare.sh`) commits the task's bug and test patch; a container
//! from the engine's warm pool (when [`warm`] announced it) did that while it waited. Then two
//! execs, the harness files arriving on the first one's stdin (no separate upload), and the
//! container is removed in the background once the verdict is read. The apply phase (`apply.sh`, root, before any code of the repository runs)
//! applies the patch in a scratch clone and reports what applying changed; the host refuses
//! forbidden changes (`policy.rs`) and tampering code (`tamper.rs`) on that change list, not on
//! the patch's text. The test phase runs as an unprivileged user through `pytest/`,
//! whose signed records are the only source of test results. Anything odd after the patch was
//! applied (forged or missing records, tampering seen at run time, a full disk) counts against
//! the patch; only the machine's own failures are environment errors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::markers::{Applied, read_markers};
use super::patch::{PatchError, check_patch};
use super::widen::{P2pSelection, added_tests};
use super::{policy, tamper};
use crate::pytest::{PytestRun, RecordReader, RunKey, TestStatus};
use crate::sandbox::{
    Engine, ExecRequest, ExecStatus, Limits, OutputStream, Sandbox, SandboxError, SandboxSpec,
    Setup,
};
use crate::tasks::Task;

/// Changes whenever a verdict for the same (task, patch) could come out differently; part of
/// every cache key, so a new harness never serves an old verdict.
pub const HARNESS_VERSION: &str = "agentao-eval-4";

/// Where the harness files go (the container's own file system; see `pytest::HARNESS_DIR`).
const WORK: &str = "/agentao";
/// The in-container apply phase.
const APPLY_SH: &str = include_str!("apply.sh");
/// The evaluation container's setup: the task's own patches, committed before a request.
const PREPARE_SH: &str = include_str!("prepare.sh");
/// Time allowed for applying patches.
const APPLY_BUDGET: Duration = Duration::from_secs(60);
/// Largest change (the canonical diff) a patch may make once applied.
const MAX_CHANGE_BYTES: usize = 2 << 20;
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
    /// Which PASS_TO_PASS runs: the stored list, or widened to what the patch touches.
    pub p2p: P2pSelection,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            max_patch_bytes: 1 << 20,
            test_timeout: Duration::from_secs(300),
            limits: Limits::default(),
            run_id: crate::config::new_run_id(),
            p2p: P2pSelection::default(),
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
    /// The test run filled its scratch space (`/tmp`, capped).
    DiskLimitExceeded,
    /// The test run's results cannot be trusted: forged or out-of-order records, or
    /// tampering seen at run time. Counts against the patch.
    Tampered { reason: String },
    /// The test run ended without its final record (the interpreter died or exited early).
    /// Counts against the patch.
    Crashed { reason: String },
    /// The machine failed (engine, image, broken task), not the patch.
    EnvironmentError { message: String },
}

impl Outcome {
    /// Why, for the outcomes that carry a reason.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::PatchRejected { reason } => Some(reason.to_string()),
            Outcome::Tampered { reason } | Outcome::Crashed { reason } => Some(reason.clone()),
            Outcome::EnvironmentError { message } => Some(message.clone()),
            _ => None,
        }
    }

    /// The outcome's name, as serialised (`resolved`, `patch_rejected`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Resolved => "resolved",
            Outcome::Unresolved => "unresolved",
            Outcome::EmptyPatch => "empty_patch",
            Outcome::PatchRejected { .. } => "patch_rejected",
            Outcome::ApplyFailed => "apply_failed",
            Outcome::TimedOut => "timed_out",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::DiskLimitExceeded => "disk_limit_exceeded",
            Outcome::Tampered { .. } => "tampered",
            Outcome::Crashed { .. } => "crashed",
            Outcome::EnvironmentError { .. } => "environment_error",
        }
    }
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
    /// Status of every PASS_TO_PASS test (the stored ones and those the patch's change
    /// added).
    pub pass_to_pass: BTreeMap<String, TestStatus>,
    /// PASS_TO_PASS tests added for what the patch touched.
    #[serde(default)]
    pub p2p_added: usize,
    /// Sandboxes lost under this evaluation (a node that died) before the one that gave the
    /// verdict: at most one, the evaluation is retried once in a fresh sandbox.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
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
            p2p_added: 0,
            retries: 0,
            timings: Timings::default(),
            log: String::new(),
        }
    }

    /// True when the failure lies with the machine or the task, not the patch.
    pub fn is_environment_error(&self) -> bool {
        matches!(self.outcome, Outcome::EnvironmentError { .. })
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    // A cheap first look at the text; what applying changes is judged later, in the sandbox.
    if let Err(reason) = check_patch(patch, cfg.max_patch_bytes, &task.protected_files()) {
        let outcome = match reason {
            PatchError::Empty => Outcome::EmptyPatch,
            reason => Outcome::PatchRejected { reason },
        };
        return Verdict::new(task, patch, outcome);
    }
    let mut verdict = Verdict::new(task, patch, Outcome::Unresolved);
    let mut ran = run_in_sandbox(engine, task, patch, cfg, &mut verdict).await;
    if let Err(e) = &ran
        && e.is_lost()
    {
        // The machine's failure, not the patch's: once more, in a fresh sandbox (on a cluster,
        // wherever the scheduler puts it now).
        warn!(instance = %task.instance_id, error = %e, "sandbox lost mid-evaluation; retrying once");
        verdict = Verdict::new(task, patch, Outcome::Unresolved);
        verdict.retries = 1;
        ran = run_in_sandbox(engine, task, patch, cfg, &mut verdict).await;
    }
    if let Err(e) = ran {
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
    let sandbox = Sandbox::start(engine, &sandbox_spec(task, cfg)).await?;
    verdict.timings.start_s = t.elapsed().as_secs_f64();
    let result = evaluate_inside(&sandbox, task, patch, cfg, verdict).await;
    // The container goes whatever happened (a timeout already killed it), after the verdict
    // is out: removal runs in the background, under the budget, awaited at exit.
    sandbox.release();
    result
}

/// The sandbox an evaluation of `task` runs in (what the warm pool is asked for).
///
/// Its setup commits the task's bug and test patch, so a container from the warm pool comes
/// with the task's starting point ready; the files are dated 0, so that announcing a task and
/// starting it make the same setup.
pub fn sandbox_spec(task: &Task, cfg: &EvalConfig) -> SandboxSpec {
    let mut spec = SandboxSpec::new(task.image.clone(), cfg.run_id.clone());
    spec.limits = cfg.limits.clone();
    spec.workdir = Some("/repo".to_owned());
    let files: [(&str, &[u8], u32); 3] = [
        ("agentao/prepare.sh", PREPARE_SH.as_bytes(), 0o755),
        ("agentao/bug.diff", task.bug_patch.as_bytes(), 0o644),
        ("agentao/test.diff", task.test_patch.as_bytes(), 0o644),
    ];
    // A tar of three in-memory files cannot fail to build; if it did, no setup would run and
    // the apply phase would find no `prepared` stamp (an environment error).
    if let Ok(tar) = crate::sandbox::tar_files(&files, 0) {
        spec.setup = Some(Setup::new(
            vec![
                "sh".to_owned(),
                "-c".to_owned(),
                format!("tar -x -f - -C / && exec bash {WORK}/prepare.sh"),
            ],
            tar,
            APPLY_BUDGET,
        ));
    }
    spec
}

/// Tells the engine's warm pool which evaluations come next, in order: one sandbox for each
/// (task, patch) that passes the first look at its text (the others start none).
pub fn warm(engine: &Engine, items: &[(&Task, &str)], cfg: &EvalConfig) {
    let specs = items
        .iter()
        .filter(|(task, patch)| {
            check_patch(patch, cfg.max_patch_bytes, &task.protected_files()).is_ok()
        })
        .map(|(task, _)| sandbox_spec(task, cfg))
        .collect();
    engine.warm(specs);
}

/// The selected tests and every test the evaluation may add (the regression index's).
fn all_tests(task: &Task) -> Vec<String> {
    let mut tests = task.selected_tests();
    if let Some(index) = &task.regression {
        tests.extend(index.tests.iter().cloned());
    }
    tests
}

/// The folders of the selected tests, one per line (`.` for the root).
fn test_dirs(task: &Task) -> String {
    let tests = all_tests(task);
    let mut dirs: Vec<&str> = tests
        .iter()
        .map(|id| id.split("::").next().unwrap_or(id))
        .map(|file| file.rsplit_once('/').map_or(".", |(d, _)| d))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    dirs.retain(|d| !d.contains('\n'));
    dirs.join("\n") + "\n"
}

/// Every folder holding a selected test, with all its ancestors (`.` is the root).
fn test_dirs_and_ancestors(task: &Task) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::from([".".to_owned()]);
    for id in all_tests(task) {
        let file = id.split("::").next().unwrap_or(&id);
        let mut dir = file;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            out.insert(parent.to_owned());
            dir = parent;
        }
    }
    out
}

async fn evaluate_inside(
    sandbox: &Sandbox,
    task: &Task,
    patch: &str,
    cfg: &EvalConfig,
    verdict: &mut Verdict,
) -> Result<(), SandboxError> {
    let t = Instant::now();
    let key = RunKey::random();
    let mut run = PytestRun::new(
        task.selected_tests(),
        cfg.test_timeout.max(Duration::from_secs(1)),
    );
    run.added_diff = Some(format!("{WORK}/r/canonical.diff"));
    run.output_cap = LOG_CAP;
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        ("agentao/apply.sh".into(), APPLY_SH.into(), 0o755),
        ("agentao/model.diff".into(), patch.to_owned().into(), 0o644),
        ("agentao/testdirs".into(), test_dirs(task).into(), 0o644),
    ];
    files.extend(run.files());
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let tar = crate::sandbox::tar_files(&files, mtime)?;

    // Phase 1, as root: unpack the harness files (one round trip: they come on stdin), apply,
    // and report what changed.
    let out = sandbox
        .exec(
            &ExecRequest::new([
                "sh".to_owned(),
                "-c".to_owned(),
                format!("tar -x -f - -C / && exec bash {WORK}/apply.sh"),
            ])
            .stdin(tar)
            .workdir("/repo")
            .env(format!("AGENTAO_MAX_CHANGE_BYTES={MAX_CHANGE_BYTES}"))
            .timeout(APPLY_BUDGET)
            .output_cap(4 * MAX_CHANGE_BYTES),
        )
        .await?;
    verdict.timings.apply_s = t.elapsed().as_secs_f64();
    if out.status != ExecStatus::Exited(0) && out.status != ExecStatus::Exited(90) {
        verdict.log = apply_log(sandbox).await;
    }
    let applied = match out.status {
        ExecStatus::TimedOut => {
            verdict.outcome = Outcome::TimedOut;
            return Ok(());
        }
        ExecStatus::OutOfMemory => {
            verdict.outcome = Outcome::OutOfMemory;
            return Ok(());
        }
        ExecStatus::Exited(_) => read_markers(&out.stdout),
    };
    let (method, listing, canonical, mut roots) = match applied {
        Applied::TaskBroken(step) => {
            return Err(SandboxError::Tool {
                tool: "applying the task's own patches".into(),
                reason: format!("{step}: {}", apply_log(sandbox).await),
            });
        }
        Applied::Failed => {
            verdict.outcome = Outcome::ApplyFailed;
            return Ok(());
        }
        Applied::TooLarge(size) => {
            verdict.outcome = Outcome::PatchRejected {
                reason: PatchError::TooLarge {
                    size,
                    limit: MAX_CHANGE_BYTES,
                },
            };
            return Ok(());
        }
        Applied::Changed {
            method,
            listing,
            canonical,
            roots,
        } => (method, listing, canonical, roots),
    };
    verdict.apply_method = method;

    // The host's judgement on what applying changed.
    // The listing is git's, but the names in it are the patch's: an unreadable one is the
    // patch's fault.
    let changes = match policy::parse_listing(&listing) {
        Ok(c) => c,
        Err(e) => {
            verdict.outcome = Outcome::PatchRejected {
                reason: PatchError::Malformed {
                    line: 0,
                    reason: format!("after applying: {e}"),
                },
            };
            return Ok(());
        }
    };
    roots.test_dirs = test_dirs_and_ancestors(task);
    if changes.is_empty() {
        verdict.outcome = Outcome::EmptyPatch;
        return Ok(());
    }
    if let Err(reason) = policy::check_changes(&changes, &task.protected_files(), &roots) {
        verdict.outcome = Outcome::PatchRejected { reason };
        return Ok(());
    }
    if let Err(finding) = tamper::scan(&canonical, &task.patch, &task.package) {
        verdict.outcome = Outcome::PatchRejected {
            reason: PatchError::Tampering {
                finding: finding.to_string(),
            },
        };
        return Ok(());
    }

    // Phase 2, as the test user: the selected tests, widened to what the change touches,
    // results from signed records only.
    let mut pass_to_pass = task.pass_to_pass.clone();
    if cfg.p2p == P2pSelection::FollowPatch {
        let added = added_tests(task, &canonical);
        verdict.p2p_added = added.len();
        pass_to_pass.extend(added);
    }
    let mut tests = task.fail_to_pass.clone();
    tests.extend(pass_to_pass.iter().cloned());
    run.targets = tests.clone();
    let t = Instant::now();
    let mut reader = RecordReader::new(key.clone()).expecting(&tests);
    let out = sandbox
        .exec_with(&run.request(&key), |stream, bytes| {
            if stream == OutputStream::Stdout {
                reader.feed(bytes);
            }
        })
        .await?;
    verdict.timings.tests_s = t.elapsed().as_secs_f64();
    let records = reader.finish();
    verdict.log = format!("{}{}", out.stdout, out.stderr)
        .lines()
        .filter(|l| !l.starts_with("AGENTAO1 "))
        .collect::<Vec<_>>()
        .join("\n");
    verdict.fail_to_pass = records.statuses(&task.fail_to_pass);
    verdict.pass_to_pass = records.statuses(&pass_to_pass);
    verdict.outcome = match out.status {
        ExecStatus::TimedOut => Outcome::TimedOut,
        ExecStatus::OutOfMemory => Outcome::OutOfMemory,
        ExecStatus::Exited(code) => {
            if records.disk_full() || (records.end.is_none() && tmp_is_full(sandbox).await) {
                Outcome::DiskLimitExceeded
            } else if let Some(why) = records.untrusted() {
                if !records.tamper.is_empty() || !records.anomalies.is_empty() {
                    Outcome::Tampered { reason: why }
                } else if code == 124 || code == 137 {
                    Outcome::TimedOut
                } else {
                    Outcome::Crashed {
                        reason: format!("{why} (exit status {code})"),
                    }
                }
            } else {
                let all_pass = verdict
                    .fail_to_pass
                    .values()
                    .chain(verdict.pass_to_pass.values())
                    .all(|s| s.passed());
                if all_pass && !tests.is_empty() {
                    Outcome::Resolved
                } else {
                    Outcome::Unresolved
                }
            }
        }
    };
    verdict.resolved = verdict.outcome == Outcome::Resolved;
    debug!(instance = %task.instance_id, outcome = ?verdict.outcome, "evaluated");
    Ok(())
}

/// The apply phase's log (bounded).
async fn apply_log(sandbox: &Sandbox) -> String {
    match sandbox
        .read_file(&format!("{WORK}/apply.log"), 1 << 20)
        .await
    {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let start = text.len().saturating_sub(LOG_CAP);
            let mut start = start;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text[start..].to_owned()
        }
        Err(e) => format!("(no apply log: {e})"),
    }
}

/// Whether `/tmp` is (nearly) full, asked as root after a run that ended without its final
/// record.
async fn tmp_is_full(sandbox: &Sandbox) -> bool {
    let Ok(out) = sandbox
        .exec(&ExecRequest::new(["stat", "-f", "-c", "%a %S", "/tmp"]))
        .await
    else {
        return false;
    };
    let mut it = out.stdout.split_whitespace().map(|n| n.parse::<i64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(blocks), Some(size)) => blocks * size < crate::pytest::DISK_FULL_BYTES,
        _ => false,
    }
}
