//! The harvest: PyPI packages in, validated tasks from their closed issues out.
//!
//! Per package: its repository (`pypi.rs`), the repository's closed issues and pull requests
//! (one paginated listing: GitHub lists pull requests among issues), the merged pull requests
//! that close an issue (the candidates), and per candidate its pull request, diff and file
//! list, the issue's first comments, a checkout of the base commit (`git/`), the environment
//! (the forge's), the fail → pass check and the gold check (`validate.rs`). A task is stored
//! in one write after all of that; every candidate skipped is logged with its reason, in the
//! store's log and as a log record, and the harvest goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info};

use super::GithubError;
use super::client::{DIFF, GithubClient, JSON, Usage};
use super::pypi::{RepoRef, github_repo_of};
use super::refs::{StatementBounds, closing_refs, split_diff, statement};
use super::validate::{RunLimits, fail_to_pass, gold_resolves};
use super::wire::{Comment, CommitItem, FileItem, IssueItem, Pull, RepoInfo};
use crate::forge::{Forge, ForgeConfig, ForgeError, git_image_name};
use crate::llm::LlmClient;
use crate::sandbox::Engine;
use crate::tasks::Exposure;
use crate::tasks::model::SOURCE_GITHUB;
use crate::tasks::store::ForgeLogEntry;
use crate::tasks::{Task, TaskStore};

/// Knobs of a harvest.
#[derive(Debug, Clone)]
pub struct HarvestConfig {
    /// PyPI package names, in order.
    pub packages: Vec<String>,
    /// Tasks wanted per repository.
    pub per_repo: usize,
    /// Only pull requests merged on or after this date (`YYYY-MM-DD` or RFC 3339).
    pub since: Option<String>,
    /// Most pages of the issue listing read per repository.
    pub max_pages: usize,
    pub bounds: StatementBounds,
    /// The forge's settings: cache, index, limits, run id, test timeout.
    pub forge: ForgeConfig,
}

/// A candidate (or a whole package) left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skip {
    pub package: String,
    /// `owner/name`, when known.
    pub repo: String,
    /// `#<pull request>`, or empty for the whole package.
    pub item: String,
    pub reason: String,
}

/// What a harvest did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HarvestReport {
    pub packages: usize,
    /// Merged pull requests seen (none in a harvest of open issues).
    pub merged_prs: usize,
    /// Merged pull requests that close an issue of their repository; in a harvest of open
    /// issues, the open issues of repositories whose suite is green at HEAD.
    pub candidates: usize,
    pub task_ids: Vec<String>,
    pub skipped: Vec<Skip>,
    pub usage: Usage,
    pub wall_seconds: f64,
}

/// Why a candidate is no task: a reason for the log, or a failure of this machine (Docker,
/// the store) that stops the harvest.
pub(super) enum Refusal {
    Reason(String),
    Machine(ForgeError),
}

impl From<String> for Refusal {
    fn from(s: String) -> Self {
        Refusal::Reason(s)
    }
}

impl From<GithubError> for Refusal {
    fn from(e: GithubError) -> Self {
        Refusal::Reason(e.to_string())
    }
}

/// Harvests tasks from closed issues into `store`. `progress` is called after each package
/// with (package, done, total). Only machine failures are errors; everything else is a
/// [`Skip`].
pub async fn harvest(
    engine: &Engine,
    client: &GithubClient,
    store: &TaskStore,
    cfg: &HarvestConfig,
    progress: impl FnMut(&str, usize, usize),
) -> Result<HarvestReport, ForgeError> {
    run(engine, client, store, cfg, None, progress).await
}

/// Harvests tasks from open issues into `store` (`super::open`): `writer` writes each issue's
/// checklist. As [`harvest`] otherwise.
pub async fn harvest_open(
    engine: &Engine,
    client: &GithubClient,
    writer: &LlmClient,
    store: &TaskStore,
    cfg: &HarvestConfig,
    progress: impl FnMut(&str, usize, usize),
) -> Result<HarvestReport, ForgeError> {
    run(engine, client, store, cfg, Some(writer), progress).await
}

/// The harvest of closed issues, or with a checklist writer of open ones.
async fn run(
    engine: &Engine,
    client: &GithubClient,
    store: &TaskStore,
    cfg: &HarvestConfig,
    open: Option<&LlmClient>,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<HarvestReport, ForgeError> {
    let started = Instant::now();
    let forge = Forge::new(engine, cfg.forge.clone())?;
    let index = cfg
        .forge
        .index_url
        .clone()
        .unwrap_or_else(|| crate::python::DEFAULT_INDEX_URL.to_owned());
    let mut report = HarvestReport::default();
    let h = Harvester {
        engine,
        client,
        store,
        cfg,
        forge: &forge,
    };
    for (i, package) in cfg.packages.iter().enumerate() {
        report.packages += 1;
        let package = crate::python::normalize(package);
        let repo = match github_repo_of(&package, &index, &cfg.forge.cache_dir).await {
            Ok(Ok(repo)) => Some(repo),
            Ok(Err(reason)) => {
                h.skip(&mut report, &package, "", "", reason)?;
                None
            }
            Err(e) => {
                h.skip(&mut report, &package, "", "", e.to_string())?;
                None
            }
        };
        match (repo, open) {
            (Some(repo), None) => h.repository(&package, &repo, &mut report).await?,
            (Some(repo), Some(writer)) => {
                h.open_repository(writer, &package, &repo, &mut report)
                    .await?
            }
            (None, _) => {}
        }
        progress(&package, i + 1, cfg.packages.len());
    }
    report.usage = client.usage();
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

pub(super) struct Harvester<'a> {
    pub(super) engine: &'a Engine,
    pub(super) client: &'a GithubClient,
    pub(super) store: &'a TaskStore,
    pub(super) cfg: &'a HarvestConfig,
    pub(super) forge: &'a Forge<'a>,
}

impl Harvester<'_> {
    pub(super) fn skip(
        &self,
        report: &mut HarvestReport,
        package: &str,
        repo: &str,
        item: &str,
        reason: String,
    ) -> Result<(), ForgeError> {
        info!(%package, %repo, %item, %reason, "harvest: skipped");
        self.store.log(&ForgeLogEntry {
            at: now(),
            package: if repo.is_empty() {
                package.to_owned()
            } else {
                repo.to_owned()
            },
            version: item.to_owned(),
            status: "skipped".into(),
            reason: reason.clone(),
            candidates: 0,
            validated: 0,
            seconds: 0.0,
        })?;
        report.skipped.push(Skip {
            package: package.to_owned(),
            repo: repo.to_owned(),
            item: item.to_owned(),
            reason,
        });
        Ok(())
    }

    /// A repository's description and its issue listing (issues and pull requests) in `state`
    /// (`open` or `closed`, since `--since` when given); `None` once a failure is logged as a
    /// skip.
    pub(super) async fn listing(
        &self,
        package: &str,
        repo: &RepoRef,
        state: &str,
        report: &mut HarvestReport,
    ) -> Result<Option<(RepoInfo, Vec<IssueItem>)>, ForgeError> {
        let full = repo.full_name();
        let base = format!("/repos/{}/{}", repo.owner, repo.name);
        let info: RepoInfo = match self
            .client
            .get(&base, JSON)
            .await
            .and_then(|f| f.json(&base))
        {
            Ok(i) => i,
            Err(e) => {
                self.skip(report, package, &full, "", format!("repository: {e}"))?;
                return Ok(None);
            }
        };
        let mut listing = format!("{base}/issues?state={state}&per_page=100&direction=asc");
        if let Some(since) = &self.cfg.since {
            listing.push_str(&format!("&since={}", since_timestamp(since)));
        }
        match self.client.paginate(&listing, self.cfg.max_pages).await {
            Ok(items) => Ok(Some((info, items))),
            Err(e) => {
                self.skip(report, package, &full, "", format!("issue listing: {e}"))?;
                Ok(None)
            }
        }
    }

    async fn repository(
        &self,
        package: &str,
        repo: &RepoRef,
        report: &mut HarvestReport,
    ) -> Result<(), ForgeError> {
        let full = repo.full_name();
        let base = format!("/repos/{}/{}", repo.owner, repo.name);
        let Some((info, items)) = self.listing(package, repo, "closed", report).await? else {
            return Ok(());
        };
        let issues: BTreeMap<u64, &IssueItem> = items
            .iter()
            .filter(|i| i.pull_request.is_none())
            .map(|i| (i.number, i))
            .collect();
        let merged: Vec<&IssueItem> = items
            .iter()
            .filter(|i| {
                i.pull_request
                    .as_ref()
                    .and_then(|p| p.merged_at.as_deref())
                    .is_some_and(|m| self.cfg.since.as_deref().is_none_or(|s| m >= s))
            })
            .collect();
        info!(repo = %full, items = items.len(), issues = issues.len(), merged = merged.len(), "harvest: listing read");
        let mut made = 0;
        let mut mirror: Option<Result<PathBuf, String>> = None;
        for pr in merged {
            if made >= self.cfg.per_repo {
                break;
            }
            report.merged_prs += 1;
            let item = format!("#{}", pr.number);
            let linked = match self.linked_issue(&base, &full, pr, &issues).await {
                Ok(Some(issue)) => issue,
                Ok(None) => {
                    debug!(repo = %full, %item, "no closed issue linked");
                    continue;
                }
                Err(e) => {
                    self.skip(report, package, &full, &item, e.to_string())?;
                    continue;
                }
            };
            report.candidates += 1;
            let id = format!("{}__{}-{}", repo.owner, repo.name, pr.number);
            if self.store.get(&id)?.is_some() {
                info!(task = %id, "already harvested");
                report.task_ids.push(id);
                made += 1;
                continue;
            }
            let t = Instant::now();
            let cand = Candidate {
                package,
                repo,
                base: &base,
                clone_url: &info.clone_url,
                number: pr.number,
                issue: &linked,
                id: &id,
            };
            match self.candidate(&cand, &mut mirror).await {
                Ok(mut task) => {
                    // Cerebro's prediction, as the forge stores with its tasks.
                    if let Some(model) = &self.cfg.forge.difficulty_model {
                        crate::cerebro::annotate(model, &mut task);
                    }
                    self.store.put(&task)?;
                    self.store.log(&ForgeLogEntry {
                        at: now(),
                        package: full.clone(),
                        version: item.clone(),
                        status: "ok".into(),
                        reason: String::new(),
                        candidates: 1,
                        validated: 1,
                        seconds: t.elapsed().as_secs_f64(),
                    })?;
                    info!(task = %id, f2p = task.fail_to_pass.len(), p2p = task.pass_to_pass.len(), seconds = t.elapsed().as_secs_f64(), "harvest: task validated");
                    report.task_ids.push(id);
                    made += 1;
                }
                Err(Refusal::Reason(r)) => self.skip(report, package, &full, &item, r)?,
                Err(Refusal::Machine(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// The closed issue a merged pull request closes (the first one named), if any.
    async fn linked_issue(
        &self,
        base: &str,
        full: &str,
        pr: &IssueItem,
        issues: &BTreeMap<u64, &IssueItem>,
    ) -> Result<Option<IssueItem>, GithubError> {
        let text = format!("{}\n{}", pr.title, pr.body.as_deref().unwrap_or(""));
        let mut refs = closing_refs(&text, full);
        if refs.is_empty() {
            let url = format!("{base}/pulls/{}/commits?per_page=100", pr.number);
            let commits: Vec<CommitItem> = self.client.paginate(&url, 3).await?;
            for c in commits {
                refs.extend(closing_refs(&c.commit.message, full));
            }
        }
        for n in refs {
            if let Some(issue) = issues.get(&n) {
                return Ok(Some((*issue).clone()));
            }
            // An issue outside the listing (older than `since`, or past its last page).
            let url = format!("{base}/issues/{n}");
            match self.client.get(&url, JSON).await {
                Ok(f) => {
                    let issue: IssueItem = f.json(&url)?;
                    if issue.pull_request.is_none() && issue.state == "closed" {
                        return Ok(Some(issue));
                    }
                }
                Err(GithubError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// An issue's problem statement: its title and body and its first comments, within the
    /// configured bounds (`base`: `/repos/<owner>/<name>`).
    pub(super) async fn issue_statement(
        &self,
        base: &str,
        issue: &IssueItem,
    ) -> Result<String, GithubError> {
        let comments = if issue.comments > 0 && self.cfg.bounds.comments > 0 {
            let url = format!(
                "{base}/issues/{}/comments?per_page={}",
                issue.number,
                self.cfg.bounds.comments.min(100)
            );
            let page: Vec<Comment> = self.client.get(&url, JSON).await?.json(&url)?;
            page.into_iter().filter_map(|c| c.body).collect()
        } else {
            Vec::new()
        };
        Ok(statement(
            &issue.title,
            issue.body.as_deref().unwrap_or(""),
            &comments,
            self.cfg.bounds,
        ))
    }

    async fn candidate(
        &self,
        c: &Candidate<'_>,
        mirror: &mut Option<Result<PathBuf, String>>,
    ) -> Result<Task, Refusal> {
        let url = format!("{}/pulls/{}", c.base, c.number);
        let pull: Pull = self.client.get(&url, JSON).await?.json(&url)?;
        if pull.merged_at.is_none() {
            return Err("the pull request was not merged".to_owned().into());
        }
        let diff = self.client.get(&url, DIFF).await?.body;
        let files_url = format!("{url}/files?per_page=100");
        let files: Vec<FileItem> = self.client.paginate(&files_url, 30).await?;
        let split = split_diff(&diff).map_err(|e| format!("diff: {e}"))?;
        let mut listed: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
        let mut in_diff: Vec<&str> = split
            .patch_files
            .iter()
            .chain(&split.test_files)
            .map(String::as_str)
            .collect();
        listed.sort();
        in_diff.sort();
        if listed != in_diff {
            return Err(format!(
                "diff: its files {in_diff:?} differ from the pull request's {listed:?}"
            )
            .into());
        }
        if split.test_patch.is_empty() {
            return Err("the pull request changes no tests (no test_patch)"
                .to_owned()
                .into());
        }
        if split.patch.is_empty() {
            return Err("the pull request changes only tests (no fix)"
                .to_owned()
                .into());
        }
        let problem = self.issue_statement(c.base, c.issue).await?;
        // The checkout: a bare mirror in the cache (once per repository), then the base tree.
        let cache = &self.cfg.forge.cache_dir;
        let mirror = mirror
            .get_or_insert_with(|| {
                crate::git::mirror(cache, c.clone_url).map_err(|e| format!("clone: {e}"))
            })
            .clone()?;
        let sha = pull.base.sha.to_lowercase();
        let short = &sha[..sha.len().min(12)];
        let tree = checkout_dir(cache, &c.repo.full_name(), &sha);
        crate::git::checkout(&mirror, c.clone_url, &sha, &tree).map_err(|e| e.to_string())?;
        let image_name = git_image_name(&c.repo.full_name());
        let (_, image) = match self
            .forge
            .environment_of_tree(c.package, &image_name, short, &tree)
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_environment() => return Err(Refusal::Machine(e)),
            Err(e) => return Err(format!("environment: {e}").into()),
        };
        let lim = RunLimits {
            limits: &self.cfg.forge.limits,
            run_id: &self.cfg.forge.run_id,
            test_timeout: self.cfg.forge.candidate_timeout,
        };
        let lists = fail_to_pass(self.engine, &image, &split, &lim).await?;
        let task = Task {
            instance_id: c.id.to_owned(),
            repo: c.repo.full_name(),
            base_commit: sha.clone(),
            patch: split.patch,
            test_patch: split.test_patch,
            problem_statement: problem,
            hints_text: String::new(),
            created_at: pull.created_at,
            version: String::new(),
            fail_to_pass: lists.fail_to_pass,
            pass_to_pass: lists.pass_to_pass,
            environment_setup_commit: sha,
            package: c.package.to_owned(),
            pypi_version: String::new(),
            image,
            mutation_kind: String::new(),
            bug_patch: String::new(),
            test_files: split.test_files,
            difficulty: String::new(),
            difficulty_features: None,
            source: SOURCE_GITHUB.into(),
            exposure: Some(Exposure::PublicAnswer),
            issue_url: c.issue.html_url.clone(),
            checklist: Vec::new(),
            predicted_difficulty: None,
            f2p_capped: None,
            decoys_refused: Vec::new(),
            regression: None,
            repair: None,
        };
        gold_resolves(self.engine, &task, &lim).await?;
        Ok(task)
    }
}

/// What one candidate is.
struct Candidate<'a> {
    package: &'a str,
    repo: &'a RepoRef,
    /// `/repos/<owner>/<name>`.
    base: &'a str,
    clone_url: &'a str,
    number: u64,
    issue: &'a IssueItem,
    id: &'a str,
}

/// Where a harvest checks `owner/name` out at `sha`: `<cache>/github/src/<owner>-<name>-<sha12>`,
/// the tree its environment is built from and a description of its task is made from.
pub(super) fn checkout_dir(cache: &Path, repo: &str, sha: &str) -> PathBuf {
    let short = &sha[..sha.len().min(12)];
    cache
        .join("github")
        .join("src")
        .join(format!("{}-{short}", repo.replacen('/', "-", 1)))
}

/// `since` as GitHub's `since` parameter wants it (ISO 8601).
pub(super) fn since_timestamp(since: &str) -> String {
    if since.len() == 10 {
        format!("{since}T00:00:00Z")
    } else {
        since.to_owned()
    }
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The default wait cap and page limit, for callers that build a config by hand.
pub const DEFAULT_MAX_PAGES: usize = 30;
/// Longest a harvest waits for a rate limit before giving up on a request.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(3600);
