//! The repair baseline: program repair by search, without a model (as PraPR or GenProg do).
//! In a sandbox of the task's image with the bug in, the failing tests the problem statement
//! names run with the rest of their files under per-test coverage; lines are ranked by
//! Ochiai suspiciousness (failing tests over passing ones); small edits at the top lines
//! (operators swapped for each other, conditions negated, constants moved by one, arguments
//! swapped, statements dropped) are tried, the failing tests first, then their files, until
//! one passes all of them or the budget is spent. Its patch is an ordinary diff: a miner
//! submits it and the validator judges it like any other.
//!
//! It also measures the forge: a task this search solves within a handful of candidates is a
//! weak test of an AI agent, and the forge stores how it fared (`Task::repair`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::debug;

use super::baseline::Coverage;
use super::candidates::is_source_file;
use super::mutate::{Mutation, MutationKind, candidates, unified_diff};
use super::regression::test_file;
use crate::pytest::{PytestRun, run_pytest};
use crate::sandbox::{Engine, ExecRequest, Limits, Sandbox, SandboxError, SandboxSpec};
use crate::tasks::Task;

/// Where the coverage run writes (the repair sandbox keeps `/tmp` on the container).
const COVERAGE_FILE: &str = "/tmp/agentao-repair-cov.db";
/// Top-ranked lines edits are tried at.
const TOP_LINES: usize = 12;

/// Budget of one repair.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// Candidate patches run at most.
    pub budget: usize,
    /// Wall clock of the whole search.
    pub wall: Duration,
    /// Time one test run may take.
    pub test_timeout: Duration,
    pub limits: Limits,
    pub run_id: String,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            budget: 60,
            wall: Duration::from_secs(300),
            test_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            run_id: crate::config::new_run_id(),
        }
    }
}

/// What the search did.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The patch (empty when nothing passed).
    pub patch: String,
    pub solved: bool,
    /// Candidate patches run.
    pub candidates: u32,
    pub seconds: f64,
    /// The edit that passed, e.g. `compare_swap at idna/codec.py:21`.
    pub fix: Option<String>,
}

/// The failing tests a problem statement names (its ``- `node id` `` lines).
pub fn named_failures(statement: &str) -> Vec<String> {
    statement
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- `")?.strip_suffix('`'))
        .filter(|id| id.contains("::"))
        .map(str::to_owned)
        .collect()
}

/// Searches for a fix of `task` in a fresh sandbox of its image. Uses the task's bug (to set
/// up the buggy tree, as any miner's workspace has it) and its statement, nothing else.
pub async fn repair(
    engine: &Engine,
    task: &Task,
    cfg: &RepairConfig,
) -> Result<Repair, SandboxError> {
    let started = Instant::now();
    let mut spec = SandboxSpec::new(task.image.clone(), cfg.run_id.clone());
    spec.limits = cfg.limits.clone();
    spec.limits.wall = cfg.wall + Duration::from_secs(120);
    spec.limits.tmp_mb = 0;
    spec.workdir = Some("/repo".into());
    let sb = Sandbox::start(engine, &spec).await?;
    let result = search(&sb, task, cfg, started).await;
    let _ = sb.remove().await;
    let (patch, candidates, fix) = result?;
    Ok(Repair {
        solved: !patch.is_empty(),
        patch,
        candidates,
        seconds: started.elapsed().as_secs_f64(),
        fix,
    })
}

async fn search(
    sb: &Sandbox,
    task: &Task,
    cfg: &RepairConfig,
    started: Instant,
) -> Result<(String, u32, Option<String>), SandboxError> {
    sb.write_files(
        "/",
        &[("agentao/bug.diff", task.bug_patch.as_bytes(), 0o644)],
    )
    .await?;
    let out = sb
        .exec(
            &ExecRequest::shell(
                "cd /repo && { [ ! -s /agentao/bug.diff ] || git apply /agentao/bug.diff; }",
            )
            .timeout(Duration::from_secs(60)),
        )
        .await?;
    if !out.success() {
        return Err(SandboxError::Tool {
            tool: "git apply".into(),
            reason: out.stderr,
        });
    }
    let mut failing = named_failures(&task.problem_statement);
    if failing.is_empty() {
        failing = task.fail_to_pass.clone();
    }
    // The failing tests' files, under coverage: the spectrum to rank lines by.
    let files: BTreeSet<String> = failing.iter().map(|t| test_file(t).to_owned()).collect();
    let mut run = PytestRun::new(files.iter().cloned().collect(), cfg.test_timeout);
    run.coverage_file = Some(COVERAGE_FILE.into());
    run.output_cap = 16 << 10;
    let Some(records) = run_pytest(sb, &run).await? else {
        return Ok((String::new(), 0, None));
    };
    let failed: BTreeSet<&str> = records
        .results
        .iter()
        .filter(|(_, r)| !r.status.passed())
        .map(|(id, _)| id.as_str())
        .collect();
    let passed: Vec<String> = records
        .results
        .iter()
        .filter(|(_, r)| r.status.passed())
        .map(|(id, _)| id.clone())
        .collect();
    if failed.is_empty() {
        return Ok((String::new(), 0, None));
    }
    let bytes = sb.read_file(COVERAGE_FILE, 256 << 20).await?;
    let host = std::env::temp_dir().join(format!("agentao-repair-{}.db", uuid::Uuid::new_v4()));
    std::fs::write(&host, bytes).map_err(|e| SandboxError::io("repair coverage", e))?;
    let coverage = Coverage::from_sqlite(&host, "/repo");
    let _ = std::fs::remove_file(&host);
    let Ok(coverage) = coverage else {
        return Ok((String::new(), 0, None));
    };
    let ranked = ochiai(&coverage, &failed);
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for (file, _, _) in ranked.iter().take(TOP_LINES) {
        if !sources.contains_key(file)
            && let Ok(out) = sb
                .exec(
                    &ExecRequest::new(["cat".to_owned(), format!("/repo/{file}")])
                        .output_cap(4 << 20),
                )
                .await
            && out.success()
        {
            sources.insert(file.clone(), out.stdout);
        }
    }
    let edits = edits_at(&ranked, &sources);
    debug!(task = %task.instance_id, lines = ranked.len(), edits = edits.len(), "repair search");
    let failing: Vec<String> = failed.iter().map(|s| (*s).to_owned()).collect();
    let mut tried = 0u32;
    for m in edits {
        if tried as usize >= cfg.budget || started.elapsed() >= cfg.wall {
            break;
        }
        let Some(text) = sources.get(&m.file) else {
            continue;
        };
        let fixed = m.apply(text);
        tried += 1;
        sb.write_files("/repo", &[(m.file.as_str(), fixed.as_bytes(), 0o644)])
            .await?;
        let left = cfg
            .wall
            .saturating_sub(started.elapsed())
            .min(cfg.test_timeout);
        if all_pass(sb, &failing, left).await? && all_pass(sb, &passed, left).await? {
            let fix = format!("{} at {}:{}", m.kind, m.file, m.lines.0);
            return Ok((unified_diff(&m.file, text, &fixed), tried, Some(fix)));
        }
    }
    // Nothing passed: the tree goes back as it was (the sandbox is removed anyway).
    Ok((String::new(), tried, None))
}

async fn all_pass(sb: &Sandbox, tests: &[String], timeout: Duration) -> Result<bool, SandboxError> {
    if tests.is_empty() {
        return Ok(true);
    }
    if timeout < Duration::from_secs(1) {
        return Ok(false);
    }
    let mut run = PytestRun::new(tests.to_vec(), timeout);
    run.output_cap = 8 << 10;
    match run_pytest(sb, &run).await {
        Ok(Some(r)) => Ok(tests
            .iter()
            .all(|t| r.results.get(t).is_some_and(|x| x.status.passed()))),
        Ok(None) | Err(SandboxError::Tool { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Source lines by Ochiai suspiciousness, most suspicious first: ef / sqrt(F · (ef + ep)),
/// with ef and ep the failing and passing tests executing the line, F all failing tests.
pub fn ochiai(coverage: &Coverage, failed: &BTreeSet<&str>) -> Vec<(String, u32, f64)> {
    let total_failed = failed.len() as f64;
    let mut out = Vec::new();
    for file in coverage.files().filter(|f| is_source_file(f)) {
        for (line, tests) in coverage.tests_by_line(file) {
            let ef = tests.iter().filter(|t| failed.contains(**t)).count() as f64;
            if ef == 0.0 {
                continue;
            }
            let ep = tests.len() as f64 - ef;
            out.push((
                file.to_owned(),
                line,
                ef / (total_failed * (ef + ep)).sqrt(),
            ));
        }
    }
    out.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| a.0.cmp(&b.0))
            .then_with(|| a.1.cmp(&b.1))
    });
    out
}

/// The edits tried, in order: per top line (by rank), every small edit touching it; the
/// forge's mutations plus each comparison or arithmetic operator swapped for every other of
/// its family, and constants moved down to zero.
pub fn edits_at(
    ranked: &[(String, u32, f64)],
    sources: &BTreeMap<String, String>,
) -> Vec<Mutation> {
    let mut by_file: BTreeMap<&str, Vec<Mutation>> = BTreeMap::new();
    for (file, text) in sources {
        let Ok(muts) = candidates(file, text) else {
            continue;
        };
        let mut all = Vec::new();
        for m in muts {
            all.extend(variants(&m, text));
            all.push(m);
        }
        by_file.insert(file.as_str(), all);
    }
    let mut out: Vec<Mutation> = Vec::new();
    let mut seen = BTreeSet::new();
    for (file, line, _) in ranked.iter().take(TOP_LINES) {
        let Some(muts) = by_file.get(file.as_str()) else {
            continue;
        };
        let mut here: Vec<&Mutation> = muts
            .iter()
            .filter(|m| m.lines.0 <= *line && *line <= m.lines.1)
            .collect();
        // Cheap, local edits first: operators, then conditions, then deletions.
        here.sort_by_key(|m| (kind_rank(m.kind), m.start));
        for m in here {
            if seen.insert((m.file.clone(), m.start, m.end, m.replacement.clone())) {
                out.push(m.clone());
            }
        }
    }
    out
}

fn kind_rank(k: MutationKind) -> u8 {
    match k {
        MutationKind::CompareSwap => 0,
        MutationKind::BooleanSwap => 1,
        MutationKind::ArithmeticSwap => 2,
        MutationKind::NegationRemoved | MutationKind::ConditionInverted => 3,
        MutationKind::OffByOne => 4,
        MutationKind::ArgumentsSwapped => 5,
        MutationKind::StatementDropped | MutationKind::ReturnValueDropped => 6,
    }
}

/// The rest of an operator's family at a mutation's spot (and `n - 1` for a constant 1).
fn variants(m: &Mutation, text: &str) -> Vec<Mutation> {
    const FAMILIES: &[&[&str]] = &[
        &["<", "<=", ">", ">=", "==", "!="],
        &["+", "-", "*", "/", "//", "%"],
        &["+=", "-=", "*=", "//="],
    ];
    let was = &text[m.start..m.end];
    let mut out = Vec::new();
    if let Some(family) = FAMILIES.iter().find(|f| f.contains(&was)) {
        for op in family
            .iter()
            .filter(|op| **op != was && **op != m.replacement)
        {
            let mut v = m.clone();
            v.replacement = (*op).to_owned();
            out.push(v);
        }
    }
    if m.kind == MutationKind::OffByOne && was == "1" && m.replacement != "0" {
        let mut v = m.clone();
        v.replacement = "0".into();
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_names_the_failing_tests() {
        let s = "demo 1.0: test_a fails: boom\n\nFailing tests:\n- `tests/test_a.py::test_a`\n- `tests/test_a.py::T::test_b[1]`\n- … and 3 more\n";
        assert_eq!(
            named_failures(s),
            vec!["tests/test_a.py::test_a", "tests/test_a.py::T::test_b[1]"]
        );
    }

    #[test]
    fn edits_at_the_top_line_include_the_inverse_of_a_flipped_comparison() {
        let buggy = "def f(errors):\n    if errors == \"strict\":\n        raise ValueError(errors)\n    return 1\n";
        let sources = BTreeMap::from([("p.py".to_owned(), buggy.to_owned())]);
        let ranked = vec![("p.py".to_owned(), 2, 1.0), ("p.py".to_owned(), 3, 0.5)];
        let edits = edits_at(&ranked, &sources);
        let first = &edits[0];
        assert_eq!(first.kind, MutationKind::CompareSwap);
        assert!(
            edits
                .iter()
                .any(|m| m.apply(buggy).contains("if errors != \"strict\":"))
        );
        assert!(edits.iter().all(|m| m.lines.0 <= 3));
    }
}
