//! The task forge: a PyPI package in, validated coding tasks out.
//!
//! Per package: resolve and download its sdist, unpack it, gather test requirements into a
//! wheelhouse, build its environment image, take the baseline (stable passing tests and
//! per-test coverage), generate candidate bugs with tree-sitter, and validate each one in a
//! fresh container on the tests that can observe it. A candidate becomes a task only if at
//! least one test goes from pass to fail, the run stays within its timeout, and the gold
//! patch then resolves it in the evaluation harness, in yet another fresh container.
//!
//! Owns the orchestration (`mod.rs`), the package's test requirements (`deps.rs`) and their
//! wheelhouse (`wheelhouse.rs`), its environment image (`env.rs`), the baseline
//! (`baseline.rs`), candidate bugs (`mutate.rs`) and the pool drawn from them
//! (`candidates.rs`), the validation of one candidate (`validate.rs`), its decoy fixes
//! (`decoy.rs`), the per-function regression index stored in each task (`regression.rs`),
//! the model-free repair baseline (`repair.rs`), problem statements (`statement.rs`) and a
//! task's portable description for remote miners (`describe.rs`). Uses `python/` for the index and sdists, `pytest/` to run tests,
//! `sandbox/` for containers and `eval::evaluate` for the gold check; stores tasks through
//! `tasks/`. Must not touch miners, scoring or the subnet, and nothing below it may import it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info};

use crate::python::{PypiClient, PypiError, Sdist, normalize, unpack_sdist};
use crate::sandbox::{Engine, Limits, Sandbox, SandboxError, SandboxSpec};
use crate::tasks::store::{ForgeLogEntry, StoreError};
use crate::tasks::{Task, TaskStore};
use baseline::{BaselineError, take_baseline};
use candidates::count_source_files;
use mutate::Mutation;
use validate::PackageCtx;
use wheelhouse::drop_own_wheels;

pub mod baseline;
mod candidates;
pub mod decoy;
pub mod deps;
pub mod describe;
pub mod env;
pub mod mutate;
pub mod regression;
pub mod repair;
pub mod statement;
mod validate;
mod wheelhouse;

pub use candidates::is_source_file;
pub use describe::Described;
pub use env::{ENV_RECIPE_VERSION, EnvSpec, build_env_image, git_image_name};

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
    /// Only candidates whose `file:function` contains this text (all when `None`).
    pub focus: Option<String>,
    /// Runs the repair baseline on each validated task and stores how it fared
    /// (`Task::repair`); `None` skips it.
    pub repair: Option<repair::RepairConfig>,
    /// Predicts each task's difficulty before it is stored (`cerebro::annotate`); the shipped
    /// model by default.
    pub difficulty_model: Option<std::sync::Arc<crate::cerebro::Model>>,
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
            focus: None,
            repair: Some(repair::RepairConfig {
                budget: 30,
                wall: Duration::from_secs(150),
                ..repair::RepairConfig::default()
            }),
            difficulty_model: crate::cerebro::shipped_model().ok(),
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
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("no source file parses or none is covered by a passing test")]
    NoCandidates,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task that cannot be described for miners on other machines.
    #[error("{task}: cannot be described: {reason}")]
    Describe { task: String, reason: String },
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
    /// The bug broke collection or import: the failing tests did not even run.
    CollectionFailed,
    /// No selected test still passed with the bug in: no regression check.
    NoRegressionCheck,
    /// The tests accepted a wrong fix (a decoy: the check deleted, an early return, another
    /// operator at the spot, ...).
    WeakTests,
    /// The container failed.
    Environment,
}

/// One rejected candidate, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedCandidate {
    pub file: String,
    pub function: String,
    pub kind: String,
    pub line: u32,
    pub rejection: Rejection,
    /// The decoy the tests accepted, or what else explains the rejection.
    pub detail: String,
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
    /// Every rejected candidate with its reason (and the decoy the tests accepted).
    pub rejections: Vec<RejectedCandidate>,
    /// Decoy fixes run against candidates that broke tests cleanly.
    pub decoys_run: usize,
    /// Candidates rejected for weak tests / those that broke tests cleanly and reached the
    /// decoy check (validated, weak, gold failed or leaky).
    pub weak_tests_share: f64,
    /// How the repair baseline fared on each validated task (when it ran).
    pub repair: Vec<crate::tasks::RepairOutcome>,
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
            rejections: Vec::new(),
            decoys_run: 0,
            weak_tests_share: 0.0,
            repair: Vec::new(),
            task_ids: Vec::new(),
            wall_seconds: 0.0,
            cpu_seconds: 0.0,
        };
        let result = self.forge_inner(name, version, store, &mut report).await;
        report.wall_seconds = started.elapsed().as_secs_f64();
        let weak = report
            .rejected
            .get(&Rejection::WeakTests)
            .copied()
            .unwrap_or(0);
        let reached = weak
            + report.validated
            + [Rejection::GoldFailed, Rejection::Leaky]
                .iter()
                .map(|r| report.rejected.get(r).copied().unwrap_or(0))
                .sum::<usize>();
        report.weak_tests_share = if reached == 0 {
            0.0
        } else {
            weak as f64 / reached as f64
        };
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
        let index = regression::PackageIndex::build(&source, &baseline);
        let ctx = PackageCtx {
            index: index.as_ref(),
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
            for (m, (result, cpu, decoys_run)) in batch.iter().zip(results) {
                report.cpu_seconds += cpu;
                report.decoys_run += decoys_run;
                match result {
                    Ok(task) if report.validated < self.cfg.per_package => {
                        if done_functions.contains(&(m.file.clone(), m.function.clone())) {
                            continue;
                        }
                        done_functions.insert((m.file.clone(), m.function.clone()));
                        let mut task = task;
                        if let Some(model) = &self.cfg.difficulty_model {
                            crate::cerebro::annotate(model, &mut task);
                        }
                        if let Some(store) = store {
                            store.put(&task)?;
                        }
                        info!(task = %task.instance_id, kind = %m.kind, f2p = task.fail_to_pass.len(), "task validated");
                        report.validated += 1;
                        report.repair.extend(task.repair.clone());
                        report.task_ids.push(task.instance_id);
                    }
                    Ok(_) => {}
                    Err((r, detail)) => {
                        if matches!(
                            r,
                            Rejection::WeakTests
                                | Rejection::CollectionFailed
                                | Rejection::NoRegressionCheck
                        ) {
                            info!(file = %m.file, function = %m.function, kind = %m.kind, line = m.lines.0, rejection = ?r, %detail, "candidate rejected");
                        } else {
                            debug!(file = %m.file, function = %m.function, kind = %m.kind, line = m.lines.0, rejection = ?r, %detail, "candidate rejected");
                        }
                        *report.rejected.entry(r).or_default() += 1;
                        report.rejections.push(RejectedCandidate {
                            file: m.file.clone(),
                            function: m.function.clone(),
                            kind: m.kind.as_str().to_owned(),
                            line: m.lines.0,
                            rejection: r,
                            detail,
                        });
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
        sdist: &Sdist,
    ) -> Result<(PathBuf, Vec<String>, String), ForgeError> {
        let archive = self.pypi.download(sdist).await?;
        let key = format!("{package}-{}", sdist.version);
        let source = unpack_sdist(&archive, &self.cfg.cache_dir.join("src").join(&key))?;
        let (locations, image) = self
            .environment_of_tree(
                package,
                &format!("agentao/env-{package}"),
                &sdist.version,
                &source,
            )
            .await?;
        Ok((source, locations, image))
    }

    /// The test locations and environment image (`<name>:<tag>-<recipe>`) of any source tree
    /// of `package`: an unpacked sdist, or a git checkout (the GitHub harvest). Its test
    /// requirements are gathered into a wheelhouse the same way either way.
    pub async fn environment_of_tree(
        &self,
        package: &str,
        name: &str,
        tag: &str,
        source: &Path,
    ) -> Result<(Vec<String>, String), ForgeError> {
        let (locations, image, _) = self.environment_parts(package, name, tag, source).await?;
        Ok((locations, image))
    }

    /// [`Forge::environment_of_tree`], with the wheelhouse the image holds.
    async fn environment_parts(
        &self,
        package: &str,
        name: &str,
        tag: &str,
        source: &Path,
    ) -> Result<(Vec<String>, String, PathBuf), ForgeError> {
        let locations = deps::test_locations(source);
        if locations.is_empty() {
            return Err(ForgeError::NoTests);
        }
        let key = format!("{package}-{tag}");
        let wheels = self.wheelhouse(source, package, &key).await?;
        // A test dependency may depend on the package itself; its released wheel would shadow
        // the source under test.
        drop_own_wheels(&wheels, package);
        let image = build_env_image(
            self.engine,
            &EnvSpec {
                name,
                version: tag,
                source_dir: source,
                wheels_dir: Some(&wheels),
            },
        )
        .await
        .map_err(ForgeError::Environment)?;
        Ok((locations, image, wheels))
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
