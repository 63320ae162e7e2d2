//! Open issues as tasks (`tasks harvest --open`). There is no fix yet, so there is no gold
//! patch and no FAIL_TO_PASS: a patch is graded on PASS_TO_PASS (no regressions) and by the
//! judge against a checklist written from the issue when the task is made
//! (`llm::checklist`; `tasks::Grading::Checklist`). Such a task has no public answer
//! (`exposure = none`): it is the kind a validator on a real chain sends to remote miners.
//!
//! Per repository: its open issues (pull requests left out), a checkout of the default
//! branch's HEAD, the environment (the forge's), and the forge's baseline at HEAD, twice over:
//! a task is made only when every collected test passes in both runs (the suite is green), and
//! those tests are its PASS_TO_PASS. Then per issue: its statement (title, body, first
//! comments), its checklist, one write to the store. Every issue or repository left out is
//! logged with its reason, as in the closed-issue harvest.

use std::time::{Duration, Instant};

use tracing::info;

use super::harvest::{HarvestReport, Harvester, Refusal, checkout_dir, now};
use super::pypi::RepoRef;
use super::wire::{IssueItem, RepoInfo};
use crate::forge::baseline::take_baseline;
use crate::forge::{ForgeError, git_image_name};
use crate::llm::checklist::write_checklist;
use crate::llm::{Budget, LlmClient};
use crate::sandbox::{Sandbox, SandboxSpec};
use crate::tasks::model::SOURCE_GITHUB;
use crate::tasks::store::ForgeLogEntry;
use crate::tasks::{Exposure, Task};

/// Dollars one checklist may cost.
pub const CHECKLIST_BUDGET: f64 = 0.25;

/// The environment of a repository's HEAD, and its green suite.
struct Head {
    sha: String,
    image: String,
    passing: Vec<String>,
}

impl Harvester<'_> {
    /// Tasks from the open issues of one repository.
    pub(super) async fn open_repository(
        &self,
        writer: &LlmClient,
        package: &str,
        repo: &RepoRef,
        report: &mut HarvestReport,
    ) -> Result<(), ForgeError> {
        let full = repo.full_name();
        let base = format!("/repos/{}/{}", repo.owner, repo.name);
        let Some((info, items)) = self.listing(package, repo, "open", report).await? else {
            return Ok(());
        };
        let issues: Vec<&IssueItem> = items.iter().filter(|i| i.pull_request.is_none()).collect();
        info!(repo = %full, items = items.len(), open_issues = issues.len(), "harvest --open: listing read");
        if issues.is_empty() {
            return self.skip(report, package, &full, "", "no open issue".into());
        }
        report.candidates += issues.len();
        let t = Instant::now();
        let head = match self.head(package, repo, &info).await {
            Ok(h) => h,
            Err(Refusal::Machine(e)) => return Err(e),
            Err(Refusal::Reason(reason)) => return self.skip(report, package, &full, "", reason),
        };
        let per_repo_setup = t.elapsed().as_secs_f64();
        let mut made = 0;
        for issue in issues {
            if made >= self.cfg.per_repo {
                break;
            }
            let item = format!("#{}", issue.number);
            let id = format!("{}__{}-{}", repo.owner, repo.name, issue.number);
            if self.store.get(&id)?.is_some() {
                info!(task = %id, "already harvested");
                report.task_ids.push(id);
                made += 1;
                continue;
            }
            let t = Instant::now();
            let problem = match self.issue_statement(&base, issue).await {
                Ok(p) => p,
                Err(e) => {
                    self.skip(report, package, &full, &item, e.to_string())?;
                    continue;
                }
            };
            let mut budget = Budget::new(CHECKLIST_BUDGET);
            let checklist = match write_checklist(writer, &full, &problem, &mut budget).await {
                Ok(c) => c,
                Err(e) => {
                    self.skip(report, package, &full, &item, format!("checklist: {e}"))?;
                    continue;
                }
            };
            let mut task = Task {
                instance_id: id.clone(),
                repo: full.clone(),
                base_commit: head.sha.clone(),
                patch: String::new(),
                test_patch: String::new(),
                problem_statement: problem,
                hints_text: String::new(),
                created_at: issue.created_at.clone(),
                version: String::new(),
                fail_to_pass: Vec::new(),
                pass_to_pass: head.passing.clone(),
                environment_setup_commit: head.sha.clone(),
                package: package.to_owned(),
                pypi_version: String::new(),
                image: head.image.clone(),
                mutation_kind: String::new(),
                bug_patch: String::new(),
                test_files: Vec::new(),
                checklist,
                difficulty: String::new(),
                difficulty_features: None,
                source: SOURCE_GITHUB.into(),
                exposure: Some(Exposure::None),
                issue_url: issue.html_url.clone(),
                predicted_difficulty: None,
                f2p_capped: None,
                decoys_refused: Vec::new(),
                regression: None,
                repair: None,
            };
            if let Some(model) = &self.cfg.forge.difficulty_model {
                crate::cerebro::annotate(model, &mut task);
            }
            self.store.put(&task)?;
            // The repository's share (checkout, environment, suite) goes to its first task.
            let seconds = t.elapsed().as_secs_f64() + if made == 0 { per_repo_setup } else { 0.0 };
            self.store.log(&ForgeLogEntry {
                at: now(),
                package: full.clone(),
                version: item,
                status: "ok".into(),
                reason: String::new(),
                candidates: 1,
                validated: 1,
                seconds,
            })?;
            info!(task = %id, p2p = task.pass_to_pass.len(), checklist = task.checklist.len(), seconds, "harvest --open: task made");
            report.task_ids.push(id);
            made += 1;
        }
        Ok(())
    }

    /// The default branch's HEAD checked out, its environment built and its suite run twice;
    /// refused with the reason no task comes from this repository, or this machine's failure.
    async fn head(&self, package: &str, repo: &RepoRef, info: &RepoInfo) -> Result<Head, Refusal> {
        let cache = &self.cfg.forge.cache_dir;
        let mirror =
            crate::git::mirror(cache, &info.clone_url).map_err(|e| format!("clone: {e}"))?;
        let branch = if info.default_branch.is_empty() {
            "HEAD".to_owned()
        } else {
            format!("refs/heads/{}", info.default_branch)
        };
        let sha = crate::git::resolve(&mirror, &branch)
            .map_err(|e| format!("default branch {branch}: {e}"))?;
        let short = &sha[..sha.len().min(12)];
        let tree = checkout_dir(cache, &repo.full_name(), &sha);
        crate::git::checkout(&mirror, &info.clone_url, &sha, &tree).map_err(|e| e.to_string())?;
        let image_name = git_image_name(&repo.full_name());
        let (locations, image) = match self
            .forge
            .environment_of_tree(package, &image_name, short, &tree)
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_environment() => return Err(Refusal::Machine(e)),
            Err(e) => return Err(format!("environment: {e}").into()),
        };
        let scratch = cache.join("scratch").join(&self.cfg.forge.run_id);
        std::fs::create_dir_all(&scratch).map_err(|e| {
            Refusal::Machine(ForgeError::Environment(crate::sandbox::SandboxError::io(
                "scratch dir",
                e,
            )))
        })?;
        let suite_timeout = self.cfg.forge.candidate_timeout;
        let mut spec = SandboxSpec::new(image.clone(), self.cfg.forge.run_id.clone());
        spec.limits = self.cfg.forge.limits.clone();
        spec.limits.wall = suite_timeout * 3 + Duration::from_secs(180);
        // Trusted code whose files the host reads back: scratch stays on the container.
        spec.limits.tmp_mb = 0;
        spec.workdir = Some("/repo".into());
        let sb = Sandbox::start(self.engine, &spec)
            .await
            .map_err(|e| Refusal::Machine(ForgeError::Environment(e)))?;
        let baseline = take_baseline(&sb, &locations, suite_timeout, &scratch).await;
        let _ = sb.remove().await;
        let baseline = match baseline {
            Ok(b) => b,
            Err(e) => {
                let e = ForgeError::Baseline(e);
                return Err(if e.is_environment() {
                    Refusal::Machine(e)
                } else {
                    Refusal::Reason(format!("the suite at HEAD {short}: {e}"))
                });
            }
        };
        let failing: Vec<&String> = baseline
            .collected
            .iter()
            .filter(|t| !baseline.passing.contains(*t))
            .collect();
        if !failing.is_empty() {
            return Err(Refusal::Reason(format!(
                "the suite is not green at HEAD {short}: {} of {} tests do not pass in both runs ({}{})",
                failing.len(),
                baseline.collected.len(),
                failing
                    .iter()
                    .take(3)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if failing.len() > 3 { ", …" } else { "" }
            )));
        }
        Ok(Head {
            sha,
            image,
            passing: baseline.passing.into_iter().collect(),
        })
    }
}
