//! Materialisation: a task description from a stranger (`tasks::spec`) turned into a task the
//! miner's agent can run, on the miner's own machine: the sdist from the miner's own index
//! (sha256 checked) or a git checkout (a bare mirror in the cache, the tree at the commit), the
//! environment image built from the recipe (the same tag as the sender's), and the workspace
//! (the bundle laid over the pristine source, as the bug patch the agent's sandbox applies).
//! Also the original subnet's task, `repo` + `problem_statement` only: the repository cloned
//! at its HEAD (`original`).
//!
//! Nothing of a description runs on the host: host-side downloads take wheels only, pinned by
//! sha256 and from the configured index only (no dependencies, no direct URLs); archives and
//! bundles are unpacked with the forge's refusals and size caps; builds and installs happen in
//! image builds with the network off. Everything is cached by hash, and concurrent requests
//! for one description materialise it once (a lock per hash); cold and warm times are logged.
//!
//! Used by the miner (`neurons/miner.rs`); the validator's scoring never uses it: it judges on
//! its own tasks and images.

mod git;
mod pypi;
mod workspace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

use crate::python::{PypiError, WheelhouseError};
use crate::sandbox::{Engine, SandboxError};
use crate::tasks::Task;
use crate::tasks::bundle::{self, BundleError};
use crate::tasks::spec::{Source, SpecError, TaskSpec, Workspace, sha256_hex};

pub use git::{DEFAULT_GIT_BASE_URL, checkout};

/// Where a miner materialises from.
#[derive(Debug, Clone)]
pub struct MaterializeConfig {
    /// Root of the caches (`<cache>/materialize/...`).
    pub cache_dir: PathBuf,
    /// The package index sdists and wheels come from (the public one when unset).
    pub index_url: Option<String>,
    /// Where `owner/name` repositories are cloned from (`AGENTAO_GIT_BASE_URL`); a git source
    /// elsewhere is refused.
    pub git_base_url: String,
    /// Largest bundle taken.
    pub max_bundle_bytes: u64,
}

impl MaterializeConfig {
    pub fn new(cache_dir: &std::path::Path) -> MaterializeConfig {
        MaterializeConfig {
            cache_dir: cache_dir.to_path_buf(),
            index_url: None,
            git_base_url: DEFAULT_GIT_BASE_URL.to_owned(),
            max_bundle_bytes: bundle::MAX_INLINE_BYTES,
        }
    }

    fn dir(&self, part: &str) -> PathBuf {
        self.cache_dir.join("materialize").join(part)
    }
}

/// Why a task could not be materialised. Each is one line for the miner's log.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("description refused: {0}")]
    Spec(#[from] SpecError),
    #[error("bundle refused: {0}")]
    Bundle(#[from] BundleError),
    #[error("sdist: {0}")]
    Pypi(#[from] PypiError),
    #[error("wheels: {0}")]
    Wheels(#[from] WheelhouseError),
    #[error("git: {0}")]
    Git(String),
    #[error("environment image: {0}")]
    Image(#[from] SandboxError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> MaterializeError {
    let context = context.to_string();
    move |source| MaterializeError::Io { context, source }
}

/// A task ready for the agent.
#[derive(Debug, Clone)]
pub struct Materialized {
    pub task: Task,
    /// The description's hash (the key of the caches).
    pub hash: String,
    /// Whether it came from the cache.
    pub warm: bool,
    pub seconds: f64,
}

/// The miner's materialiser: its engine, caches and per-hash locks.
pub struct Materializer {
    engine: Engine,
    cfg: MaterializeConfig,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Materializer {
    pub fn new(engine: Engine, cfg: MaterializeConfig) -> Materializer {
        Materializer {
            engine,
            cfg,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &MaterializeConfig {
        &self.cfg
    }

    /// Materialises a description received over the wire, with its inline bundle (empty when
    /// none). The description is checked first (version, hash, names), then the bundle
    /// (size, sha256), before anything is fetched.
    pub async fn from_wire(
        &self,
        spec: &serde_json::Value,
        bundle_bytes: &[u8],
    ) -> Result<Materialized, MaterializeError> {
        let spec = TaskSpec::from_wire(spec)?;
        let overlay = match &spec.workspace {
            Workspace::Pristine => Vec::new(),
            Workspace::Bundle { sha256, .. } => {
                bundle::unpack(bundle_bytes, sha256, self.cfg.max_bundle_bytes)?
            }
        };
        let hash = spec.hash.clone();
        self.once(&hash, || async {
            let (source, package, version, repo, image_name) = match &spec.source {
                Source::Pypi {
                    name,
                    version,
                    filename,
                    sha256,
                } => {
                    let dir = pypi::source(&self.cfg, name, version, filename, sha256).await?;
                    let package = crate::python::normalize(name);
                    let repo = format!("pypi:{package}=={version}");
                    let image_name = format!("agentao/env-{package}");
                    (dir, package, version.clone(), repo, image_name)
                }
                Source::Git { url, commit } => {
                    let (commit, dir) = self.git_tree(url, Some(commit)).await?;
                    let repo = repo_of_url(url);
                    // The validator's name for a checkout of this repository (its harvest's).
                    let image_name = crate::forge::git_image_name(&repo);
                    let version = commit[..12].to_owned();
                    (dir, git_package(&repo), version, repo, image_name)
                }
            };
            let image = pypi::environment(
                &self.engine,
                &self.cfg,
                &image_name,
                &version,
                &source,
                &spec.environment,
            )
            .await?;
            let bug_patch = workspace::bug_patch(&source, &overlay)?;
            Ok(Ready {
                id: &spec.instance_id,
                repo: &repo,
                statement: &spec.problem_statement,
                hints: &spec.hints,
                package: &package,
                version: &version,
                image: &image,
                bug_patch: &bug_patch,
            }
            .json())
        })
        .await
    }

    /// The original subnet's task: `owner/name` cloned at its HEAD from the configured git
    /// base URL, its environment built from the checkout (its declared test requirements as
    /// wheels), the statement as it came. HEAD is read once per (repository, statement).
    pub async fn original(
        &self,
        repo: &str,
        problem_statement: &str,
    ) -> Result<Materialized, MaterializeError> {
        let repo = repo.trim();
        if !crate::tasks::spec::is_owner_name(repo) {
            return Err(MaterializeError::Refused(format!(
                "repo {repo:?} is not owner/name"
            )));
        }
        let url = format!("{}/{repo}", self.cfg.git_base_url.trim_end_matches('/'));
        let hash = sha256_hex(format!("original\n{url}\n{problem_statement}").as_bytes());
        self.once(&hash, || async {
            let (commit, dir) = self.git_tree(&url, None).await?;
            let package = git_package(repo);
            let image =
                pypi::environment_from_tree(&self.engine, &self.cfg, &package, &commit, &dir)
                    .await?;
            let id = format!("{}-{}", repo.replace('/', "__"), &commit[..12]);
            Ok(Ready {
                id: &id,
                repo,
                statement: problem_statement,
                hints: "",
                package: &package,
                version: &commit[..12],
                image: &image,
                bug_patch: "",
            }
            .json())
        })
        .await
    }

    async fn git_tree(
        &self,
        url: &str,
        commit: Option<&str>,
    ) -> Result<(String, PathBuf), MaterializeError> {
        let base = self.cfg.git_base_url.trim_end_matches('/');
        if !url.starts_with(&format!("{base}/")) {
            return Err(MaterializeError::Refused(format!(
                "git source {url} is not under the configured base URL {base}"
            )));
        }
        let root = self.cfg.dir("git");
        let (url, commit) = (url.to_owned(), commit.map(str::to_owned));
        tokio::task::spawn_blocking(move || checkout(&root, &url, commit.as_deref()))
            .await
            .map_err(|e| MaterializeError::Git(e.to_string()))?
    }

    /// Runs `make` once per hash (a per-hash lock; the result is cached on disk as the task's
    /// JSON and reused while its image exists), logging cold and warm times.
    async fn once<F, Fut>(&self, hash: &str, make: F) -> Result<Materialized, MaterializeError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<serde_json::Value, MaterializeError>>,
    {
        let started = Instant::now();
        let lock = self
            .locks
            .lock()
            .expect("materialise locks")
            .entry(hash.to_owned())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let dir = self.cfg.dir("tasks");
        let cached = dir.join(format!("{hash}.json"));
        if let Some(task) = std::fs::read(&cached)
            .ok()
            .and_then(|b| serde_json::from_slice::<Task>(&b).ok())
            && self.engine.image_exists(&task.image).await.unwrap_or(false)
        {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(%hash, task = %task.instance_id, seconds, "materialised (warm)");
            return Ok(Materialized {
                task,
                hash: hash.to_owned(),
                warm: true,
                seconds,
            });
        }
        let value = make().await?;
        let task: Task = serde_json::from_value(value)
            .map_err(|e| MaterializeError::Refused(format!("task: {e}")))?;
        std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
        let tmp = crate::python::unique_partial(&cached);
        std::fs::write(&tmp, serde_json::to_vec(&task).expect("a task serialises"))
            .map_err(io(tmp.display()))?;
        std::fs::rename(&tmp, &cached).map_err(io(cached.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(%hash, task = %task.instance_id, image = %task.image, seconds, "materialised (cold)");
        Ok(Materialized {
            task,
            hash: hash.to_owned(),
            warm: false,
            seconds,
        })
    }
}

/// `owner/name` from a git URL's last two segments.
fn repo_of_url(url: &str) -> String {
    let parts: Vec<&str> = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit('/')
        .take(2)
        .collect();
    match parts.as_slice() {
        [name, owner] => format!("{owner}/{name}"),
        _ => url.to_owned(),
    }
}

/// The Python package name a repository is taken to hold: its name, normalised.
fn git_package(repo: &str) -> String {
    crate::python::normalize(repo.rsplit('/').next().unwrap_or(repo))
}

/// What a materialised task is made of: no reference fix, no tests to judge by (the miner
/// only needs the tree).
struct Ready<'a> {
    id: &'a str,
    repo: &'a str,
    statement: &'a str,
    hints: &'a str,
    package: &'a str,
    version: &'a str,
    image: &'a str,
    bug_patch: &'a str,
}

impl Ready<'_> {
    /// As task JSON, read through `Task`'s own defaults.
    fn json(&self) -> serde_json::Value {
        json!({
            "instance_id": self.id, "repo": self.repo, "patch": "",
            "problem_statement": self.statement, "hints_text": self.hints,
            "version": self.version, "FAIL_TO_PASS": [], "PASS_TO_PASS": [],
            "package": self.package, "pypi_version": self.version, "image": self.image,
            "bug_patch": self.bug_patch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_named_from_their_urls() {
        assert_eq!(
            repo_of_url("https://github.com/psf/requests.git"),
            "psf/requests"
        );
        assert_eq!(
            repo_of_url("file:///tmp/x/acme/tiny_calc/"),
            "acme/tiny_calc"
        );
        assert_eq!(git_package("acme/Tiny_Calc"), "tiny-calc");
    }
}
