//! The task forge: a PyPI package in, validated coding tasks out.
//!
//! Per package: resolve and download its sdist, unpack it, gather test requirements into a
//! wheelhouse, build its environment image, take the baseline (stable passing tests and
//! per-test coverage), generate candidate bugs with tree-sitter, and validate each one in a
//! fresh container on the tests that can observe it. A candidate becomes a task only if at
//! least one test goes from pass to fail, the run stays within its timeout, and the gold
//! patch then resolves it in the evaluation harness, in yet another fresh container.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info, warn};

use super::baseline::{Baseline, BaselineError, run_pytest, take_baseline};
use super::deps;
use super::env::{EnvSpec, build_env_image};
use super::model::{Difficulty, Task};
use super::mutate::{Mutation, candidates, unified_diff};
use super::pypi::{PypiClient, PypiError, normalize};
use super::statement::{Secrets, leaks, template_statement};
use super::store::{ForgeLogEntry, StoreError, TaskStore};
use crate::eval::pytest_run::PytestRun;
use crate::eval::{self, EvalConfig, Outcome, TestResult, TestStatus};
use crate::sandbox::{self, Engine, Limits, Sandbox, SandboxError, SandboxSpec};

/// How tests are chosen for a candidate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The tests whose coverage touches the mutated function (whole suite without coverage).
    Coverage,
    /// The whole suite for every candidate (the benchmark's baseline).
    WholeSuite,
}

/// Knobs of the forge.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// Tasks wanted per package.
    pub per_package: usize,
    /// Candidates tried per package before giving up.
    pub max_candidates: usize,
    /// Time one full run of a suite may take in the baseline.
    pub suite_timeout: Duration,
    /// Time the selected tests may take for one candidate.
    pub candidate_timeout: Duration,
    pub selection: Selection,
    /// Most tests selected for one candidate (those covering the mutated line first).
    pub max_selected: usize,
    /// Candidates validated at once.
    pub workers: usize,
    pub limits: Limits,
    pub run_id: String,
    pub cache_dir: PathBuf,
    pub index_url: Option<String>,
    /// Rewrites problem statements when set (`prompts/issue_writer.md`); the template is kept
    /// whenever a rewrite would leak the bug.
    pub issue_writer: Option<crate::llm::LlmClient>,
}

impl ForgeConfig {
    /// Defaults for a cache directory.
    pub fn new(cache_dir: &Path) -> ForgeConfig {
        ForgeConfig {
            per_package: 5,
            max_candidates: 40,
            suite_timeout: Duration::from_secs(300),
            candidate_timeout: Duration::from_secs(90),
            selection: Selection::Coverage,
            max_selected: 200,
            workers: crate::config::default_parallelism(),
            limits: Limits::default(),
            run_id: crate::config::new_run_id(),
            cache_dir: cache_dir.to_path_buf(),
            index_url: None,
            issue_writer: None,
        }
    }
}

/// Why a package gave no tasks.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(transparent)]
    Pypi(#[from] PypiError),
    #[error("the sdist ships no tests")]
    NoTests,
    #[error("preparing test requirements: {0}")]
    Requirements(String),
    #[error("environment image: {0}")]
    Environment(SandboxError),
    #[error("baseline: {0}")]
    Baseline(#[from] BaselineError),
    #[error("no source file parses or none is covered by a passing test")]
    NoCandidates,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ForgeError {
    /// True when the failure lies with this machine (Docker down, disk), not the package:
    /// the forge stops instead of skipping every package for the same reason.
    pub fn is_environment(&self) -> bool {
        match self {
            ForgeError::Environment(e) => {
                matches!(
                    e,
                    SandboxError::EngineUnavailable { .. } | SandboxError::ImageMissing(_)
                )
            }
            ForgeError::Baseline(BaselineError::Sandbox(e)) => {
                matches!(e, SandboxError::EngineUnavailable { .. })
            }
            ForgeError::Store(_) => true,
            _ => false,
        }
    }
}

/// Why a candidate was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// Every selected test still passed.
    Survived,
    /// The tests outlived their timeout with the bug in.
    TimedOut,
    /// The gold patch did not resolve the task in the harness.
    GoldFailed,
    /// The statement could not be written without giving the bug away.
    Leaky,
    /// The container failed.
    Environment,
}

/// What the forge did with one package.
#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    pub package: String,
    pub version: String,
    pub selection: Selection,
    /// `None` when tasks were made; else why the package was skipped.
    pub skipped: Option<String>,
    pub candidates_generated: usize,
    pub candidates_tried: usize,
    pub validated: usize,
    pub rejected: BTreeMap<Rejection, usize>,
    pub task_ids: Vec<String>,
    pub wall_seconds: f64,
    /// CPU seconds of every container the package used (baseline, candidates, gold checks).
    pub cpu_seconds: f64,
}

/// The forge over one engine and index.
pub struct Forge<'a> {
    engine: &'a Engine,
    pypi: PypiClient,
    cfg: ForgeConfig,
}

impl<'a> Forge<'a> {
    pub fn new(engine: &'a Engine, cfg: ForgeConfig) -> Result<Forge<'a>, PypiError> {
        let pypi = PypiClient::new(cfg.index_url.as_deref(), &cfg.cache_dir)?;
        Ok(Forge { engine, pypi, cfg })
    }

    pub fn config(&self) -> &ForgeConfig {
        &self.cfg
    }

    /// Forges tasks from one package, storing each accepted task as soon as it is validated.
    /// A package that cannot give tasks comes back with `skipped` set; only machine failures
    /// are errors.
    pub async fn forge_package(
        &self,
        name: &str,
        version: Option<&str>,
        store: Option<&TaskStore>,
    ) -> Result<PackageReport, ForgeError> {
        let started = Instant::now();
        let mut report = PackageReport {
            package: normalize(name),
            version: version.unwrap_or("").to_owned(),
            selection: self.cfg.selection,
            skipped: None,
            candidates_generated: 0,
            candidates_tried: 0,
            validated: 0,
            rejected: BTreeMap::new(),
            task_ids: Vec::new(),
            wall_seconds: 0.0,
            cpu_seconds: 0.0,
        };
        let result = self.forge_inner(name, version, store, &mut report).await;
        report.wall_seconds = started.elapsed().as_secs_f64();
        if let Err(e) = result {
            if e.is_environment() {
                return Err(e);
            }
            report.skipped = Some(e.to_string());
        } else if report.validated == 0 {
            report.skipped = Some(format!(
                "no candidate validated ({} tried: {})",
                report.candidates_tried,
                rejection_summary(&report.rejected)
            ));
        }
        if let Some(store) = store {
            store.log(&ForgeLogEntry {
                at: now(),
                package: report.package.clone(),
                version: report.version.clone(),
                status: if report.skipped.is_some() {
                    "skipped"
                } else {
                    "ok"
                }
                .into(),
                reason: report.skipped.clone().unwrap_or_default(),
                candidates: report.candidates_tried as u32,
                validated: report.validated as u32,
                seconds: report.wall_seconds,
            })?;
        }
        Ok(report)
    }

    async fn forge_inner(
        &self,
        name: &str,
        version: Option<&str>,
        store: Option<&TaskStore>,
        report: &mut PackageReport,
    ) -> Result<(), ForgeError> {
        let sdist = self.pypi.resolve_sdist(name, version).await?;
        report.version = sdist.version.clone();
        if let Some(store) = store {
            let have = store.count_for(&report.package, &sdist.version)? as usize;
            if have >= self.cfg.per_package {
                info!(package = %report.package, version = %sdist.version, have, "already forged");
                report.validated = have;
                return Ok(());
            }
        }
        info!(package = %report.package, version = %sdist.version, "forging");
        let (source, locations, image) = self.environment(&report.package, &sdist).await?;
        debug!(%image, "environment ready");

        let scratch = self.cfg.cache_dir.join("scratch").join(&self.cfg.run_id);
        std::fs::create_dir_all(&scratch)
            .map_err(|e| ForgeError::Environment(SandboxError::io("scratch dir", e)))?;
        let baseline = {
            let mut spec = SandboxSpec::new(image.clone(), self.cfg.run_id.clone());
            spec.limits = self.cfg.limits.clone();
            spec.limits.wall = self.cfg.suite_timeout * 2 + Duration::from_secs(600);
            // Trusted code whose files the host reads back: scratch stays on the container.
            spec.limits.tmp_mb = 0;
            spec.workdir = Some("/repo".into());
            let sb = Sandbox::start(self.engine, &spec)
                .await
                .map_err(ForgeError::Environment)?;
            let b = take_baseline(&sb, &locations, self.cfg.suite_timeout, &scratch).await;
            let _ = sb.remove().await;
            b?
        };
        report.cpu_seconds += baseline.cpu_seconds;
        info!(
            package = %report.package,
            collected = baseline.collected.len(),
            passing = baseline.passing.len(),
            flaky = baseline.flaky.len(),
            coverage = baseline.coverage.is_some(),
            "baseline taken"
        );

        let pool = self.candidate_pool(&source, &baseline);
        report.candidates_generated = pool.len();
        if pool.is_empty() {
            return Err(ForgeError::NoCandidates);
        }
        let ctx = PackageCtx {
            package: &report.package,
            version: &sdist.version,
            image: &image,
            source: &source,
            baseline: &baseline,
            locations: &locations,
            source_files: count_source_files(&source),
        };
        let mut done_functions: HashSet<(String, String)> = HashSet::new();
        let mut queue = pool.into_iter();
        while report.validated < self.cfg.per_package
            && report.candidates_tried < self.cfg.max_candidates
        {
            let room = (self.cfg.max_candidates - report.candidates_tried)
                .min(self.cfg.workers.max(1))
                .min(self.cfg.per_package - report.validated + 1);
            let batch: Vec<Mutation> = queue
                .by_ref()
                .filter(|m| !done_functions.contains(&(m.file.clone(), m.function.clone())))
                .take(room)
                .collect();
            if batch.is_empty() {
                break;
            }
            report.candidates_tried += batch.len();
            let results =
                futures_util::future::join_all(batch.iter().map(|m| self.validate(&ctx, m))).await;
            for (m, (result, cpu)) in batch.iter().zip(results) {
                report.cpu_seconds += cpu;
                match result {
                    Ok(task) if report.validated < self.cfg.per_package => {
                        if done_functions.contains(&(m.file.clone(), m.function.clone())) {
                            continue;
                        }
                        done_functions.insert((m.file.clone(), m.function.clone()));
                        if let Some(store) = store {
                            store.put(&task)?;
                        }
                        info!(task = %task.instance_id, kind = %m.kind, f2p = task.fail_to_pass.len(), "task validated");
                        report.validated += 1;
                        report.task_ids.push(task.instance_id);
                    }
                    Ok(_) => {}
                    Err(r) => {
                        debug!(file = %m.file, function = %m.function, kind = %m.kind, rejection = ?r, "candidate rejected");
                        *report.rejected.entry(r).or_default() += 1;
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(())
    }

    /// The package version's source tree, test locations and environment image (built unless
    /// an image of the same recipe exists).
    async fn environment(
        &self,
        package: &str,
        sdist: &super::pypi::Sdist,
    ) -> Result<(PathBuf, Vec<String>, String), ForgeError> {
        let archive = self.pypi.download(sdist).await?;
        let key = format!("{package}-{}", sdist.version);
        let source =
            super::pypi::unpack_sdist(&archive, &self.cfg.cache_dir.join("src").join(&key))?;
        let locations = deps::test_locations(&source);
        if locations.is_empty() {
            return Err(ForgeError::NoTests);
        }
        let wheels = self.wheelhouse(&source, package, &key).await?;
        // A test dependency may depend on the package itself; its released wheel would shadow
        // the source under test.
        drop_own_wheels(&wheels, package);
        let image = build_env_image(
            self.engine,
            &EnvSpec {
                name: &format!("agentao/env-{package}"),
                version: &sdist.version,
                source_dir: &source,
                wheels_dir: Some(&wheels),
            },
        )
        .await
        .map_err(ForgeError::Environment)?;
        Ok((source, locations, image))
    }

    /// Makes sure every stored task's environment image exists, rebuilding it from the same
    /// sdist when it was removed or its recipe changed, and points the tasks at it. Returns
    /// (package, version, image, tasks updated) per package version.
    pub async fn prepare_store(
        &self,
        store: &TaskStore,
    ) -> Result<Vec<(String, String, String, usize)>, ForgeError> {
        let tasks = store.all(None)?;
        let mut versions: Vec<(String, String)> = tasks
            .iter()
            .filter(|t| !t.package.is_empty() && !t.pypi_version.is_empty())
            .map(|t| (t.package.clone(), t.pypi_version.clone()))
            .collect();
        versions.sort();
        versions.dedup();
        let mut out = Vec::new();
        for (package, version) in versions {
            let sdist = self.pypi.resolve_sdist(&package, Some(&version)).await?;
            let (_, _, image) = self.environment(&package, &sdist).await?;
            let mut updated = 0;
            for t in tasks
                .iter()
                .filter(|t| t.package == package && t.pypi_version == version && t.image != image)
            {
                let mut t = t.clone();
                t.image = image.clone();
                store.put(&t)?;
                updated += 1;
            }
            info!(%package, %version, %image, updated, "environment ready");
            out.push((package, version, image, updated));
        }
        Ok(out)
    }

    /// Downloads the package's requirements as wheels (once per package version).
    async fn wheelhouse(
        &self,
        source: &Path,
        package: &str,
        key: &str,
    ) -> Result<PathBuf, ForgeError> {
        let reqs = deps::discover(source).all(package);
        // Keyed by the requirement list too, so a change in discovery fetches anew.
        let key = format!("{key}-{}", &sandbox::hash_parts(&[&reqs.join("\n")])[..8]);
        let key = key.as_str();
        let dir = self.cfg.cache_dir.join("wheels").join(key);
        if dir.join(".complete").is_file() {
            return Ok(dir);
        }
        debug!(?reqs, "test requirements");
        let index = self.cfg.index_url.as_deref();
        if reqs.is_empty() {
            std::fs::create_dir_all(&dir).map_err(|e| ForgeError::Requirements(e.to_string()))?;
            let _ = std::fs::write(dir.join(".complete"), b"");
            return Ok(dir);
        }
        if sandbox::download_wheels(&dir, &reqs.join("\n"), index)
            .await
            .is_ok()
        {
            return Ok(dir);
        }
        // Some requirement has no wheel for this Python: take what can be had, one by one.
        let parts = self
            .cfg
            .cache_dir
            .join("wheels")
            .join(format!("{key}.parts"));
        let _ = std::fs::remove_dir_all(&parts);
        let mut missing = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let one = parts.join(i.to_string());
            if let Err(e) = sandbox::download_wheels(&one, r, index).await {
                missing.push(format!("{r} ({e})"));
            }
        }
        if !missing.is_empty() {
            warn!(package, missing = ?missing, "some test requirements have no wheel; going on without them");
        }
        let staging = dir.with_extension("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| ForgeError::Requirements(e.to_string()))?;
        for entry in std::fs::read_dir(&parts).into_iter().flatten().flatten() {
            for wheel in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = wheel.file_name();
                if name.to_string_lossy().ends_with(".whl") {
                    let _ = std::fs::rename(wheel.path(), staging.join(&name));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&parts);
        std::fs::write(staging.join(".complete"), b"")
            .map_err(|e| ForgeError::Requirements(e.to_string()))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(|e| ForgeError::Requirements(e.to_string()))?;
        Ok(dir)
    }

    /// Every candidate bug in the package's covered source, in a deterministic order that
    /// spreads over files, functions and kinds.
    fn candidate_pool(&self, source: &Path, baseline: &Baseline) -> Vec<Mutation> {
        let files: Vec<String> = match &baseline.coverage {
            Some(cov) => {
                let mut f: Vec<String> = cov.files().map(str::to_owned).collect();
                f.sort();
                f
            }
            None => python_files(source),
        };
        let mut all = Vec::new();
        for file in files.iter().filter(|f| is_source_file(f)) {
            let Ok(text) = std::fs::read_to_string(source.join(file)) else {
                continue;
            };
            if text.len() > 400_000 {
                continue;
            }
            let Ok(muts) = candidates(file, &text) else {
                continue;
            };
            for m in muts {
                let observed = match &baseline.coverage {
                    Some(cov) => cov
                        .tests_covering(&m.file, m.lines.0, m.lines.1)
                        .iter()
                        .any(|t| baseline.passing.contains(*t)),
                    None => true,
                };
                if observed {
                    all.push(m);
                }
            }
        }
        // Deterministic shuffle keyed by the bug's content, then one of each kind in turn so
        // the pool is not all operator swaps.
        all.sort_by_key(|m| sandbox::hash_parts(&[&m.file, &m.start.to_string(), &m.replacement]));
        let mut by_kind: BTreeMap<_, std::collections::VecDeque<Mutation>> = BTreeMap::new();
        for m in all {
            by_kind.entry(m.kind).or_default().push_back(m);
        }
        let mut out = Vec::new();
        loop {
            let mut any = false;
            for q in by_kind.values_mut() {
                if let Some(m) = q.pop_front() {
                    out.push(m);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        out
    }

    /// Validates one candidate; returns the task or why not, and the CPU seconds spent.
    async fn validate(&self, ctx: &PackageCtx<'_>, m: &Mutation) -> (Result<Task, Rejection>, f64) {
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
        let mut task = match self.make_task(ctx, m, &original, &buggy, &secrets, f2p, p2p, &results)
        {
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
            if let Some(d) = task.difficulty.as_mut() {
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
        if let Some(d) = task.difficulty.as_mut() {
            d.test_seconds = verdict.timings.tests_s;
        }
        (Ok(task), cpu)
    }

    /// The tests for a candidate: `None` means the whole suite.
    fn select_tests(&self, ctx: &PackageCtx<'_>, m: &Mutation) -> Option<Vec<String>> {
        if self.cfg.selection == Selection::WholeSuite {
            return None;
        }
        let cov = ctx.baseline.coverage.as_ref()?;
        let on_line = cov.tests_covering(&m.file, m.lines.0, m.lines.1);
        let in_function = cov.tests_covering(&m.file, m.function_lines.0, m.function_lines.1);
        let mut picked: Vec<String> = on_line
            .iter()
            .chain(in_function.difference(&on_line))
            .filter(|t| ctx.baseline.passing.contains(**t))
            .map(|t| (*t).to_owned())
            .take(self.cfg.max_selected)
            .collect();
        picked.sort();
        Some(picked)
    }

    #[allow(clippy::too_many_arguments)]
    fn make_task(
        &self,
        ctx: &PackageCtx<'_>,
        m: &Mutation,
        original: &str,
        buggy: &str,
        secrets: &Secrets<'_>,
        f2p: Vec<String>,
        p2p: Vec<String>,
        results: &BTreeMap<String, TestResult>,
    ) -> Option<Task> {
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
            difficulty: Some(difficulty),
        })
    }
}

struct PackageCtx<'a> {
    package: &'a str,
    version: &'a str,
    image: &'a str,
    source: &'a Path,
    baseline: &'a Baseline,
    locations: &'a [String],
    source_files: u32,
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

fn drop_own_wheels(dir: &Path, package: &str) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(dist) = name.strip_suffix(".whl").and_then(|n| n.split('-').next())
            && normalize(dist) == package
        {
            debug!(wheel = %name, "dropping the package's own wheel");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn line_range(text: &str, (first, last): (u32, u32)) -> Vec<&str> {
    text.lines()
        .skip(first.saturating_sub(1) as usize)
        .take((last - first + 1) as usize)
        .collect()
}

/// Whether a path (relative to the repository) is package code the forge may mutate.
pub fn is_source_file(rel: &str) -> bool {
    const SKIP_DIRS: &[&str] = &[
        "tests",
        "test",
        "testing",
        "docs",
        "doc",
        "examples",
        "example",
        "benchmarks",
        "bench",
        "scripts",
        "tools",
        "_vendor",
        "vendor",
        "build",
        "ci",
        ".github",
    ];
    if !rel.ends_with(".py") {
        return false;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let name = parts.last().copied().unwrap_or("");
    if parts[..parts.len() - 1]
        .iter()
        .any(|p| SKIP_DIRS.contains(p))
    {
        return false;
    }
    !(name.starts_with("test_")
        || name.ends_with("_test.py")
        || matches!(
            name,
            "conftest.py"
                | "setup.py"
                | "noxfile.py"
                | "__main__.py"
                | "_version.py"
                | "version.py"
                | "__about__.py"
        ))
}

fn python_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let rel = rel.to_string_lossy().into_owned();
                if rel.ends_with(".py") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

fn count_source_files(root: &Path) -> u32 {
    python_files(root)
        .iter()
        .filter(|f| is_source_file(f))
        .count() as u32
}

fn rejection_summary(r: &BTreeMap<Rejection, usize>) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|(k, n)| {
            format!(
                "{n} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The set of distinct packages among tasks.
pub fn packages_of(tasks: &[Task]) -> BTreeSet<&str> {
    tasks.iter().map(|t| t.package.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_package_code_is_mutated() {
        for ok in [
            "src/attr/_make.py",
            "idna/core.py",
            "more_itertools/more.py",
        ] {
            assert!(is_source_file(ok), "{ok}");
        }
        for no in [
            "tests/test_a.py",
            "src/pkg/tests/helpers.py",
            "conftest.py",
            "setup.py",
            "docs/conf.py",
            "pkg/test_thing.py",
            "pkg/_vendor/six.py",
            "README.md",
        ] {
            assert!(!is_source_file(no), "{no}");
        }
    }
}
