//! Validation of one candidate: the buggy file in a fresh container on the selected tests, the
//! fail-to-pass and pass-to-pass lists, a statement that does not give the bug away, and the
//! gold patch resolving the task in the evaluation harness, in another fresh container.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tracing::{debug, warn};

use super::baseline::Baseline;
use super::mutate::{Mutation, unified_diff};
use super::statement::{Secrets, leaks, template_statement};
use super::{Forge, Rejection, now};
use crate::eval::{self, EvalConfig, Outcome};
use crate::pytest::{PytestRun, TestResult, TestStatus, run_pytest};
use crate::sandbox::{Sandbox, SandboxError, SandboxSpec};
use crate::tasks::{Difficulty, Task};

/// What a package's candidates share.
pub(super) struct PackageCtx<'a> {
    pub(super) package: &'a str,
    pub(super) version: &'a str,
    pub(super) image: &'a str,
    pub(super) source: &'a Path,
    pub(super) baseline: &'a Baseline,
    pub(super) locations: &'a [String],
    pub(super) source_files: u32,
}

impl Forge<'_> {
    /// Validates one candidate; returns the task or why not, and the CPU seconds spent.
    pub(super) async fn validate(
        &self,
        ctx: &PackageCtx<'_>,
        m: &Mutation,
    ) -> (Result<Task, Rejection>, f64) {
        let original = match std::fs::read_to_string(ctx.source.join(&m.file)) {
            Ok(t) => t,
            Err(_) => return (Err(Rejection::Environment), 0.0),
        };
        let buggy = m.apply(&original);
        let selected = self.select_tests(ctx, m);
        let mut spec = SandboxSpec::new(ctx.image.to_owned(), self.cfg.run_id.clone());
        spec.limits = self.cfg.limits.clone();
        spec.limits.wall = self.cfg.candidate_timeout + Duration::from_secs(120);
        spec.limits.tmp_mb = 0;
        spec.workdir = Some("/repo".into());
        let sb = match Sandbox::start(self.engine, &spec).await {
            Ok(sb) => sb,
            Err(e) => {
                warn!("candidate container: {e}");
                return (Err(Rejection::Environment), 0.0);
            }
        };
        let run = run_candidate(
            &sb,
            m,
            &buggy,
            &selected,
            ctx.locations,
            self.cfg.candidate_timeout,
        )
        .await;
        let cpu = sb.cpu_seconds().await.unwrap_or(0.0);
        let _ = sb.remove().await;
        let results = match run {
            Ok(r) => r,
            Err(r) => return (Err(r), cpu),
        };
        // F2P: stable passing tests that the bug breaks. P2P: selected tests that still pass.
        let mut f2p = Vec::new();
        let mut p2p = Vec::new();
        let pool: Vec<&String> = match &selected {
            Some(s) => s.iter().collect(),
            None => ctx.baseline.passing.iter().collect(),
        };
        for id in pool {
            let status = results.get(id).map_or(TestStatus::Missing, |r| r.status);
            if status.passed() {
                p2p.push(id.clone());
            } else {
                f2p.push(id.clone());
            }
        }
        if f2p.is_empty() {
            return (Err(Rejection::Survived), cpu);
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
            None => return (Err(Rejection::Leaky), cpu),
        };
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
        let eval_cfg = EvalConfig {
            test_timeout: self.cfg.candidate_timeout,
            limits: self.cfg.limits.clone(),
            run_id: self.cfg.run_id.clone(),
            ..EvalConfig::default()
        };
        let verdict = eval::evaluate(self.engine, &task, &task.patch, &eval_cfg).await;
        let cpu = cpu + verdict.timings.tests_s;
        if verdict.outcome != Outcome::Resolved {
            debug!(task = %task.instance_id, outcome = ?verdict.outcome, log = %verdict.log, "gold patch did not resolve");
            return (
                Err(if verdict.is_environment_error() {
                    Rejection::Environment
                } else {
                    Rejection::GoldFailed
                }),
                cpu,
            );
        }
        if let Some(d) = task.difficulty_features.as_mut() {
            d.test_seconds = verdict.timings.tests_s;
        }
        (Ok(task), cpu)
    }
}

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
        predicted_difficulty: None,
    })
}

/// Writes the buggy file and runs the tests; the results by node id.
async fn run_candidate(
    sb: &Sandbox,
    m: &Mutation,
    buggy: &str,
    selected: &Option<Vec<String>>,
    locations: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, TestResult>, Rejection> {
    sb.write_files("/repo", &[(m.file.as_str(), buggy.as_bytes(), 0o644)])
        .await
        .map_err(|_| Rejection::Environment)?;
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
        Ok(Some(records)) => Ok(records.results),
        Ok(None) => Err(Rejection::TimedOut),
        // pytest could not even start with the bug in: nothing ran.
        Err(SandboxError::Tool { .. }) => Ok(BTreeMap::new()),
        Err(_) => Err(Rejection::Environment),
    }
}

fn line_range(text: &str, (first, last): (u32, u32)) -> Vec<&str> {
    text.lines()
        .skip(first.saturating_sub(1) as usize)
        .take((last - first + 1) as usize)
        .collect()
}
