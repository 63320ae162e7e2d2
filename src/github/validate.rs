//! A harvested candidate in a fresh container: the test files of its `test_patch` run with
//! the test changes alone, then with the fix too. FAIL_TO_PASS are the tests that go from not
//! passing to passing; PASS_TO_PASS those that pass both times. The task is then only kept
//! when its gold patch resolves it in `eval::evaluate`, in another fresh container.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::eval::{self, EvalConfig, Outcome};
use crate::pytest::{PytestRun, TestResult, run_pytest};
use crate::sandbox::{Engine, ExecRequest, Limits, Sandbox, SandboxSpec};
use crate::tasks::Task;

use super::refs::SplitDiff;

/// Where the candidate's diffs go in its container.
const WORK: &str = "agentao-gh";

/// The container's budget.
pub(super) struct RunLimits<'a> {
    pub limits: &'a Limits,
    pub run_id: &'a str,
    pub test_timeout: Duration,
}

/// The tests a candidate's fix turns from failing to passing, and those it leaves passing.
pub(super) struct Lists {
    pub fail_to_pass: Vec<String>,
    pub pass_to_pass: Vec<String>,
}

/// Python test files the test patch leaves in the tree (what pytest is pointed at).
fn test_targets(split: &SplitDiff) -> Vec<String> {
    split
        .test_files
        .iter()
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
        })
        .cloned()
        .collect()
}

/// Runs the candidate's tests before and after its fix. `Err` is the reason it is no task.
pub(super) async fn fail_to_pass(
    engine: &Engine,
    image: &str,
    split: &SplitDiff,
    lim: &RunLimits<'_>,
) -> Result<Lists, String> {
    let targets = test_targets(split);
    if targets.is_empty() {
        return Err("the test changes hold no test_*.py file to run".into());
    }
    let mut spec = SandboxSpec::new(image.to_owned(), lim.run_id.to_owned());
    spec.limits = lim.limits.clone();
    spec.limits.wall = lim.test_timeout * 2 + Duration::from_secs(180);
    spec.limits.tmp_mb = 0;
    spec.workdir = Some("/repo".into());
    let sb = Sandbox::start(engine, &spec)
        .await
        .map_err(|e| format!("container: {e}"))?;
    let result = before_and_after(&sb, split, &targets, lim.test_timeout).await;
    let _ = sb.remove().await;
    let (before, after) = result?;
    let mut lists = Lists {
        fail_to_pass: Vec::new(),
        pass_to_pass: Vec::new(),
    };
    for (id, r) in &after {
        if !r.status.passed() {
            continue;
        }
        if before.get(id).is_some_and(|b| b.status.passed()) {
            lists.pass_to_pass.push(id.clone());
        } else {
            lists.fail_to_pass.push(id.clone());
        }
    }
    if lists.fail_to_pass.is_empty() {
        return Err(format!(
            "no test goes from fail to pass ({} ran after the fix, {} passed before)",
            after.len(),
            before.values().filter(|r| r.status.passed()).count()
        ));
    }
    Ok(lists)
}

type Results = BTreeMap<String, TestResult>;

async fn before_and_after(
    sb: &Sandbox,
    split: &SplitDiff,
    targets: &[String],
    timeout: Duration,
) -> Result<(Results, Results), String> {
    sb.write_files(
        "/",
        &[
            (
                format!("{WORK}/test.diff"),
                split.test_patch.as_bytes(),
                0o644,
            ),
            (format!("{WORK}/fix.diff"), split.patch.as_bytes(), 0o644),
        ],
    )
    .await
    .map_err(|e| format!("container: {e}"))?;
    apply(sb, "test.diff", "the test patch").await?;
    let before = tests(sb, targets, timeout).await?;
    apply(sb, "fix.diff", "the fix").await?;
    let after = tests(sb, targets, timeout).await?;
    Ok((before, after))
}

async fn apply(sb: &Sandbox, file: &str, what: &str) -> Result<(), String> {
    let out = sb
        .exec(&ExecRequest::new(["git", "apply", &format!("/{WORK}/{file}")]).workdir("/repo"))
        .await
        .map_err(|e| format!("container: {e}"))?;
    if !out.success() {
        return Err(format!(
            "{what} does not apply at the base commit: {}",
            out.stderr.lines().next().unwrap_or("").trim()
        ));
    }
    Ok(())
}

async fn tests(sb: &Sandbox, targets: &[String], timeout: Duration) -> Result<Results, String> {
    let mut run = PytestRun::new(targets.to_vec(), timeout);
    run.continue_on_collection_errors = true;
    run.output_cap = 16 << 10;
    match run_pytest(sb, &run).await {
        Ok(Some(records)) => Ok(records.results),
        Ok(None) => Err(format!("the tests outlived {} s", timeout.as_secs())),
        Err(e) => Err(format!("running the tests: {e}")),
    }
}

/// The gold patch in the real harness, in a fresh container: `Err` unless it resolves.
pub(super) async fn gold_resolves(
    engine: &Engine,
    task: &Task,
    lim: &RunLimits<'_>,
) -> Result<f64, String> {
    let cfg = EvalConfig {
        test_timeout: lim.test_timeout,
        limits: lim.limits.clone(),
        run_id: lim.run_id.to_owned(),
        ..EvalConfig::default()
    };
    let verdict = eval::evaluate(engine, task, &task.patch, &cfg).await;
    if verdict.outcome == Outcome::Resolved {
        return Ok(verdict.timings.tests_s);
    }
    Err(format!(
        "the gold patch does not resolve the task in the harness: {:?}{}",
        verdict.outcome,
        verdict
            .outcome
            .reason()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ))
}
