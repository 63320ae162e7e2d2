//! Upstream: the best resolved patch of an open-issue task proposed to the project as a pull
//! request. Opt-in (`agentao github propose --task ID`): the patch is committed on the task's
//! base commit with git2 (`git/`), the branch pushed to the token owner's fork, and the pull
//! request opened with octocrab, its body from `prompts/pull_request.md`, crediting the
//! miner's hotkey. A dry run builds the branch and commit locally and sends nothing.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::GithubError;
use super::client::{GithubClient, JSON};
use crate::tasks::Exposure;
use crate::tasks::Task;

/// The patch to propose and whom it credits.
#[derive(Debug, Clone)]
pub struct Winner<'a> {
    pub patch: &'a str,
    pub hotkey: &'a str,
    pub score: f64,
}

/// What was (or, in a dry run, would be) sent.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub branch: String,
    pub commit: String,
    /// `owner/name` of the fork the branch goes to.
    pub fork: String,
    /// The pull request as sent to `POST /repos/{owner}/{repo}/pulls`.
    pub payload: serde_json::Value,
    pub dry_run: bool,
    /// The pull request's page, once opened.
    pub pr_url: Option<String>,
    pub pr_number: Option<u64>,
}

/// Why a task cannot be proposed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error(
        "task {0} has a public answer (its fix is merged upstream); only open-issue tasks (exposure none) are proposed"
    )]
    NotOpen(String),
    #[error("task {id}: repository {repo:?} is not owner/name on GitHub")]
    NotGithub { id: String, repo: String },
    #[error("a pull request needs a GitHub token (GITHUB_TOKEN)")]
    NoToken,
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// The branch a task's proposal goes on.
pub fn branch_name(task: &Task) -> String {
    let id: String = task
        .instance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("agentao/{id}")
}

/// Files a unified diff touches.
fn files_of(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .filter_map(|l| l.rsplit_once(" b/").map(|(_, b)| b.to_owned()))
        .collect()
}

/// Refuses a task whose fix is public: only open-issue tasks go upstream.
pub fn ensure_open(task: &Task) -> Result<(), ProposeError> {
    if task.exposure != Some(Exposure::None) {
        return Err(ProposeError::NotOpen(task.instance_id.clone()));
    }
    Ok(())
}

/// Proposes `winner`'s patch for `task` upstream (or only prepares it when `dry_run`).
pub async fn propose(
    client: &GithubClient,
    cache_dir: &Path,
    task: &Task,
    winner: &Winner<'_>,
    dry_run: bool,
) -> Result<Proposal, ProposeError> {
    ensure_open(task)?;
    let (owner, name) = task
        .repo
        .split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| ProposeError::NotGithub {
            id: task.instance_id.clone(),
            repo: task.repo.clone(),
        })?;
    if !dry_run && client.token().is_none() {
        return Err(ProposeError::NoToken);
    }
    let upstream = format!("/repos/{owner}/{name}");
    let info: serde_json::Value = client.get(&upstream, JSON).await?.json(&upstream)?;
    let clone_url = info["clone_url"].as_str().unwrap_or_default().to_owned();
    let default_branch = info["default_branch"].as_str().unwrap_or("main").to_owned();

    let title_line = task.problem_statement.lines().next().unwrap_or("").trim();
    let issue_number = task.issue_url.rsplit('/').next().unwrap_or("").to_owned();
    let issue_ref = if issue_number.parse::<u64>().is_ok() {
        format!("#{issue_number}")
    } else {
        task.issue_url.clone()
    };
    let title = format!("Fix {issue_ref}: {title_line}");
    let branch = branch_name(task);
    let mirror = crate::git::mirror(cache_dir, &clone_url)?;
    let message = format!(
        "{title}\n\nProposed by agentao for miner {}.\n\nCloses {issue_ref}",
        winner.hotkey
    );
    let commit = crate::git::commit_patch(
        &mirror,
        &crate::git::Proposal {
            base: &task.base_commit,
            branch: &branch,
            message: &message,
            author_name: "agentao",
            author_email: "agentao@users.noreply.github.com",
        },
        winner.patch,
    )?;
    let files = files_of(winner.patch)
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = crate::prompts::render(
        crate::prompts::get("pull_request"),
        &[
            ("issue_ref", issue_ref.as_str()),
            ("summary", title_line),
            ("hotkey", winner.hotkey),
            ("instance_id", task.instance_id.as_str()),
            ("score", format!("{:.3}", winner.score).as_str()),
            ("files", files.as_str()),
        ],
    );
    let mut proposal = Proposal {
        branch: branch.clone(),
        commit,
        fork: String::new(),
        payload: json!({
            "title": title,
            "head": "",
            "base": default_branch,
            "body": body,
            "maintainer_can_modify": true,
        }),
        dry_run,
        pr_url: None,
        pr_number: None,
    };
    if dry_run {
        proposal.payload["head"] = json!(format!("<fork owner>:{branch}"));
        return Ok(proposal);
    }
    // The token owner's fork (created when missing; GitHub answers 202 with the fork).
    let fork = client
        .post(&format!("{upstream}/forks"), &json!({}))
        .await?;
    let fork_owner = fork["owner"]["login"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let fork_url = fork["clone_url"].as_str().unwrap_or_default().to_owned();
    proposal.fork = fork["full_name"].as_str().unwrap_or_default().to_owned();
    crate::git::push_branch(&mirror, &fork_url, &branch, client.token())?;
    proposal.payload["head"] = json!(format!("{fork_owner}:{branch}"));
    let pr = client
        .post(&format!("{upstream}/pulls"), &proposal.payload)
        .await?;
    proposal.pr_url = pr["html_url"].as_str().map(str::to_owned);
    proposal.pr_number = pr["number"].as_u64();
    Ok(proposal)
}
