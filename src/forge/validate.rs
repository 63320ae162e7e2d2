//! Validation of one candidate: the buggy file in a fresh container on the selected tests, the
//! fail-to-pass and pass-to-pass lists, a statement that does not give the bug away, and the
//! gold patch resolving the task in the evaluation harness, in another fresh container.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::baseline::Baseline;
use super::decoy::decoys;
use super::mutate::{Mutation, unified_diff};
use super::regression::PackageIndex;
use super::repair::{RepairConfig, repair};
use super::statement::{Secrets, leaks, template_statement};
use super::{Forge, Rejection, now};
use crate::eval::{self, EvalConfig, Outcome};
use crate::pytest::{PytestRun, RunRecords, TestResult, TestStatus, run_pytest};
use crate::sandbox::{Sandbox, SandboxError, SandboxSpec};
use crate::tasks::{Difficulty, F2pCap, RepairOutcome, Task};

/// What a package's candidates share.
pub(super) struct PackageCtx<'a> {
    /// Which stable tests run which function (with coverage only).
    pub(super) index: Option<&'a PackageIndex>,
    pub(super) package: &'a str,
    pub(super) version: &'a str,
    pub(super) image: &'a str,
    pub(super) source: &'a Path,
    pub(super) baseline: &'a Baseline,
    pub(super) locations: &'a [String],
    pub(super) source_files: u32,
}

/// Why a candidate was not kept, with what explains it (the decoy the tests accepted, the
/// collection error).
pub(super) type Rejected = (Rejection, String);

impl Forge<'_> {
    /// Validates one candidate; returns the task or why not, the CPU seconds spent and the
    /// decoy fixes run.
    pub(super) async fn validate(
        &self,
        ctx: &PackageCtx<'_>,
        m: &Mutation,
    ) -> (Result<Task, Rejected>, f64, usize) {
        let original = match std::fs::read_to_string(ctx.source.join(&m.file)) {
            Ok(t) => t,
            Err(e) => return (Err((Rejection::Environment, e.to_string())), 0.0, 0),
        };
        let buggy = m.apply(&original);
        let selected = self.select_tests(ctx, m);
        let mut spec = SandboxSpec::new(ctx.image.to_owned(), self.cfg.run_id.clone());
        spec.limits = self.cfg.limits.clone();
        // The bug's run, the decoys within one more candidate timeout, and the widened run of
        // an accepted decoy.
        spec.limits.wall = self.cfg.candidate_timeout * 3 + Duration::from_secs(120);
        spec.limits.tmp_mb = 0;
        spec.workdir = Some("/repo".into());
        let sb = match Sandbox::start(self.engine, &spec).await {
            Ok(sb) => sb,
            Err(e) => {
                warn!("candidate container: {e}");
                return (Err((Rejection::Environment, e.to_string())), 0.0, 0);
            }
        };
        let tests = selected.as_ref().map(|s| s.tests.clone());
        let checked = self
            .check_candidate(ctx, &sb, m, &original, &buggy, &tests)
            .await;
        let cpu = sb.cpu_seconds().await.unwrap_or(0.0);
        let _ = sb.remove().await;
        let (f2p, p2p, results, refused) = match checked {
            Ok(c) => c,
            Err((r, decoys)) => return (Err(r), cpu, decoys),
        };
        let decoys_run = refused.len();
        let f2p_capped = selected
            .as_ref()
            .filter(|s| s.covering > self.cfg.max_selected)
            .map(|s| F2pCap {
                at: "forge.selection".into(),
                limit: self.cfg.max_selected as u32,
                covering: s.covering as u32,
            });
        // What the statement may not reveal: the mutated lines before and after, and the file.
        let secrets = Secrets {
            file: &m.file,
            lines: line_range(&original, m.lines)
                .into_iter()
                .chain(line_range(&buggy, m.lines))
                .collect(),
        };
        let found = Found {
            mutation: m,
            original: &original,
            buggy: &buggy,
            secrets: &secrets,
            fail_to_pass: f2p,
            pass_to_pass: p2p,
            results: &results,
        };
        let mut task = match make_task(ctx, found) {
            Some(t) => t,
            None => {
                return (
                    Err((Rejection::Leaky, "the statement names the bug".into())),
                    cpu,
                    decoys_run,
                );
            }
        };
        task.f2p_capped = f2p_capped;
        task.decoys_refused = refused;
        task.regression = ctx.index.map(|i| i.for_task(&task.fail_to_pass, &m.file));
        if let Some(writer) = &self.cfg.issue_writer {
            let mut budget = crate::llm::Budget::new(0.05);
            let (text, _) = super::statement::rewrite(
                writer,
                ctx.package,
                &task.problem_statement,
                &secrets,
                &mut budget,
            )
            .await;
            if let Some(d) = task.difficulty_features.as_mut() {
                d.statement_words = text.split_whitespace().count() as u32;
            }
            task.problem_statement = text;
        }
        // The gold patch must resolve the task in the real harness, in a fresh container.
        // Its PASS_TO_PASS is widened to what the gold patch touches (up to
        // `eval::widen::MAX_ADDED` tests): more time than the candidate's own run.
        let eval_cfg = EvalConfig {
            test_timeout: self.cfg.candidate_timeout * 3,
            limits: self.cfg.limits.clone(),
            run_id: self.cfg.run_id.clone(),
            ..EvalConfig::default()
        };
        let verdict = eval::evaluate(self.engine, &task, &task.patch, &eval_cfg).await;
        let cpu = cpu + verdict.timings.tests_s;
        if verdict.outcome != Outcome::Resolved {
            debug!(task = %task.instance_id, outcome = ?verdict.outcome, log = %verdict.log, "gold patch did not resolve");
            let r = if verdict.is_environment_error() {
                Rejection::Environment
            } else {
                Rejection::GoldFailed
            };
            return (Err((r, verdict.outcome.kind().into())), cpu, decoys_run);
        }
        if let Some(d) = task.difficulty_features.as_mut() {
            d.test_seconds = verdict.timings.tests_s;
        }
        // How the model-free baseline fares: a task it solves in a handful of candidates is a
        // weak test of an AI agent (validators may filter on it).
        if let Some(rc) = &self.cfg.repair {
            let rc = RepairConfig {
                limits: self.cfg.limits.clone(),
                run_id: self.cfg.run_id.clone(),
                ..rc.clone()
            };
            match repair(self.engine, &task, &rc).await {
                Ok(r) => {
                    // Solved means resolved by the harness, as any miner's patch is judged.
                    let solved = r.solved
                        && eval::evaluate(self.engine, &task, &r.patch, &eval_cfg)
                            .await
                            .resolved;
                    task.repair = Some(RepairOutcome {
                        solved,
                        repair_candidates: r.candidates,
                        seconds: r.seconds,
                    })
                }
                Err(e) => warn!(task = %task.instance_id, "repair baseline: {e}"),
            }
        }
        (Ok(task), cpu, decoys_run)
    }

    /// The candidate's run in `sb`: F2P, P2P, the results with the bug in and the decoys the
    /// tests refused; or why not (with the decoys run so far).
    async fn check_candidate(
        &self,
        ctx: &PackageCtx<'_>,
        sb: &Sandbox,
        m: &Mutation,
        original: &str,
        buggy: &str,
        selected: &Option<Vec<String>>,
    ) -> Result<Checked, (Rejected, usize)> {
        let started = Instant::now();
        let no_decoys = |r: Rejected| (r, 0);
        let run = run_candidate(
            sb,
            &m.file,
            buggy,
            selected,
            ctx.locations,
            self.cfg.candidate_timeout,
        )
        .await
        .map_err(no_decoys)?;
        // F2P: stable passing tests that the bug breaks. P2P: selected tests that still pass.
        let mut f2p = Vec::new();
        let mut p2p = Vec::new();
        let pool: Vec<&String> = match selected {
            Some(s) => s.iter().collect(),
            None => ctx.baseline.passing.iter().collect(),
        };
        for id in pool {
            let status = run
                .results
                .get(id)
                .map_or(TestStatus::Missing, |r| r.status);
            if status.passed() {
                p2p.push(id.clone());
            } else {
                f2p.push(id.clone());
            }
        }
        if f2p.is_empty() {
            return Err(no_decoys((Rejection::Survived, String::new())));
        }
        // A bug that breaks collection or import fails whole modules at once and points at
        // itself in the traceback: nothing for an agent to find.
        let missing = f2p
            .iter()
            .filter(|id| {
                run.results
                    .get(*id)
                    .is_none_or(|r| r.status == TestStatus::Missing)
            })
            .count();
        if let Some((id, message)) = run.collect_errors.first() {
            let last = message.lines().last().unwrap_or("");
            return Err(no_decoys((
                Rejection::CollectionFailed,
                format!("{id}: {last}"),
            )));
        }
        if missing > 0 {
            return Err(no_decoys((
                Rejection::CollectionFailed,
                format!("{missing} failing tests did not run"),
            )));
        }
        if selected.is_none() {
            // The whole suite ran: keep the P2P list to tests near the bug when coverage knows
            // them, and bounded either way.
            if let Some(cov) = &ctx.baseline.coverage {
                let near = cov.tests_covering(&m.file, m.function_lines.0, m.function_lines.1);
                p2p.retain(|t| near.contains(t.as_str()));
            }
            p2p.truncate(self.cfg.max_selected);
        }
        if p2p.is_empty() {
            return Err(no_decoys((
                Rejection::NoRegressionCheck,
                format!("all {} selected tests fail with the bug", f2p.len()),
            )));
        }
        // The wrong fixes, within one more candidate timeout: the tests must refuse each.
        let mut tests = f2p.clone();
        tests.extend(p2p.iter().cloned());
        let mut refused = Vec::new();
        let budget = self.cfg.candidate_timeout * 2;
        for d in decoys(m, original, buggy) {
            let left = budget.saturating_sub(started.elapsed());
            if left < Duration::from_secs(5) {
                debug!(file = %m.file, decoy = %d.name, "decoy budget spent");
                break;
            }
            let decoy_run = run_candidate(
                sb,
                &m.file,
                &d.text,
                &Some(tests.clone()),
                ctx.locations,
                left,
            )
            .await;
            let accepted = match decoy_run {
                Ok(r) => tests
                    .iter()
                    .all(|id| r.results.get(id).is_some_and(|t| t.status.passed())),
                Err((Rejection::Environment, why)) => {
                    return Err(((Rejection::Environment, why), refused.len()));
                }
                // Timed out or broke collection: refused.
                Err(_) => false,
            };
            // Accepted by the task's own lists: judged again on what an evaluation of that
            // decoy would run (PASS_TO_PASS widened to what it touches).
            let weak = accepted
                && match self
                    .widened_accepts(ctx, m, (original, buggy, &d.text), (&f2p, &p2p), sb)
                    .await
                {
                    Ok(accepts) => accepts,
                    Err(why) => return Err(((Rejection::Environment, why), refused.len() + 1)),
                };
            if weak {
                let n = refused.len() + 1;
                return Err((
                    (Rejection::WeakTests, format!("accepted decoy {}", d.name)),
                    n,
                ));
            }
            refused.push(d.name);
        }
        Ok((f2p, p2p, run.results, refused))
    }
}

impl Forge<'_> {
    /// Whether every test an evaluation of the decoy would run passes (the task's F2P and
    /// P2P passed already): the P2P widening of `eval::widen` on the decoy's change, with the
    /// index the task would store. Without coverage there is nothing to add.
    async fn widened_accepts(
        &self,
        ctx: &PackageCtx<'_>,
        m: &Mutation,
        (original, buggy, decoy): (&str, &str, &str),
        (f2p, p2p): (&[String], &[String]),
        sb: &Sandbox,
    ) -> Result<bool, String> {
        let Some(index) = ctx.index.map(|i| i.for_task(f2p, &m.file)) else {
            return Ok(true);
        };
        let bug_patch = unified_diff(&m.file, original, buggy);
        let change = unified_diff(&m.file, buggy, decoy);
        let added = eval::widen::added_for(&index, f2p, p2p, &bug_patch, &change);
        if added.is_empty() {
            return Ok(true);
        }
        let run = run_candidate(
            sb,
            &m.file,
            decoy,
            &Some(added.clone()),
            ctx.locations,
            self.cfg.candidate_timeout,
        )
        .await;
        match run {
            Ok(r) => Ok(added
                .iter()
                .all(|id| r.results.get(id).is_some_and(|t| t.status.passed()))),
            Err((Rejection::Environment, why)) => Err(why),
            Err(_) => Ok(false),
        }
    }
}

/// F2P, P2P, the results with the bug in, the decoys refused.
type Checked = (
    Vec<String>,
    Vec<String>,
    BTreeMap<String, TestResult>,
    Vec<String>,
);

/// A candidate that broke at least one test: what [`make_task`] turns into a task.
struct Found<'a> {
    mutation: &'a Mutation,
    /// The file before and after the mutation.
    original: &'a str,
    buggy: &'a str,
    /// What the statement may not reveal.
    secrets: &'a Secrets<'a>,
    fail_to_pass: Vec<String>,
    pass_to_pass: Vec<String>,
    /// The selected tests' results with the bug in.
    results: &'a BTreeMap<String, TestResult>,
}

/// The task for a candidate, or `None` when its statement would give the bug away.
fn make_task(ctx: &PackageCtx<'_>, found: Found<'_>) -> Option<Task> {
    let Found {
        mutation: m,
        original,
        buggy,
        secrets,
        fail_to_pass: f2p,
        pass_to_pass: p2p,
        results,
    } = found;
    let bug_patch = unified_diff(&m.file, original, buggy);
    let gold = unified_diff(&m.file, buggy, original);
    let missing = TestResult {
        status: TestStatus::Missing,
        message: "the test did not run (collection failed)".into(),
        ..TestResult::default()
    };
    let failures: Vec<(&str, &TestResult)> = f2p
        .iter()
        .map(|id| (id.as_str(), results.get(id).unwrap_or(&missing)))
        .collect();
    let statement = template_statement(ctx.package, ctx.version, &failures, secrets);
    if statement.is_empty() || leaks(&statement, secrets) {
        return None;
    }
    let gold_lines = gold
        .lines()
        .filter(|l| {
            (l.starts_with('+') && !l.starts_with("+++"))
                || (l.starts_with('-') && !l.starts_with("---"))
        })
        .count() as u32;
    let difficulty = Difficulty {
        gold_lines,
        gold_files: 1,
        fail_to_pass: f2p.len() as u32,
        pass_to_pass: p2p.len() as u32,
        function_lines: m.function_lines.1 - m.function_lines.0 + 1,
        source_files: ctx.source_files,
        test_seconds: 0.0,
        statement_words: statement.split_whitespace().count() as u32,
    };
    let mut test_files: Vec<String> = ctx
        .locations
        .iter()
        .filter(|l| l.as_str() != ".")
        .map(|l| format!("{}/", l.trim_end_matches('/')))
        .collect();
    test_files.push("*/conftest.py".into());
    let hash = &eval::harness::sha256(&bug_patch)[..8];
    Some(Task {
        instance_id: format!("{}__{}-{hash}", ctx.package, ctx.version),
        repo: format!("pypi/{}", ctx.package),
        base_commit: ctx.baseline.base_commit.clone(),
        patch: gold,
        test_patch: String::new(),
        problem_statement: statement,
        hints_text: String::new(),
        created_at: now(),
        version: ctx.version.to_owned(),
        fail_to_pass: f2p,
        pass_to_pass: p2p,
        environment_setup_commit: ctx.baseline.base_commit.clone(),
        package: ctx.package.to_owned(),
        pypi_version: ctx.version.to_owned(),
        image: ctx.image.to_owned(),
        mutation_kind: m.kind.as_str().to_owned(),
        bug_patch,
        test_files,
        difficulty: difficulty.level().to_owned(),
        difficulty_features: Some(difficulty),
        source: String::new(),
        exposure: None,
        issue_url: String::new(),
        checklist: Vec::new(),
        predicted_difficulty: None,
        f2p_capped: None,
        decoys_refused: Vec::new(),
        regression: None,
        repair: None,
    })
}

/// Writes `text` as `file` and runs the tests; the results by node id and collection errors.
async fn run_candidate(
    sb: &Sandbox,
    file: &str,
    text: &str,
    selected: &Option<Vec<String>>,
    locations: &[String],
    timeout: Duration,
) -> Result<RunRecords, Rejected> {
    sb.write_files("/repo", &[(file, text.as_bytes(), 0o644)])
        .await
        .map_err(|e| (Rejection::Environment, e.to_string()))?;
    let mut run = match selected {
        Some(ids) => PytestRun::new(ids.clone(), timeout),
        None => {
            let mut run = PytestRun::new(locations.to_vec(), timeout);
            run.continue_on_collection_errors = true;
            run
        }
    };
    run.output_cap = 8 << 10;
    match run_pytest(sb, &run).await {
        Ok(Some(records)) => Ok(records),
        Ok(None) => Err((Rejection::TimedOut, format!("over {timeout:?}"))),
        // pytest could not even start with this file in: nothing ran.
        Err(SandboxError::Tool { reason, .. }) => Err((Rejection::CollectionFailed, reason)),
        Err(e) => Err((Rejection::Environment, e.to_string())),
    }
}

fn line_range(text: &str, (first, last): (u32, u32)) -> Vec<&str> {
    text.lines()
        .skip(first.saturating_sub(1) as usize)
        .take((last - first + 1) as usize)
        .collect()
}
