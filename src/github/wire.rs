//! The JSON shapes of GitHub's REST API that the harvests read (repository, issue listing,
//! pull request, commits, files, comments): only the fields used, the rest ignored.

use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct RepoInfo {
    pub(super) clone_url: String,
    #[serde(default)]
    pub(super) default_branch: String,
}

#[derive(Deserialize, Clone)]
pub(super) struct IssueItem {
    pub(super) number: u64,
    pub(super) title: String,
    #[serde(default)]
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) state: String,
    #[serde(default)]
    pub(super) html_url: String,
    #[serde(default)]
    pub(super) created_at: String,
    #[serde(default)]
    pub(super) comments: u64,
    #[serde(default)]
    pub(super) pull_request: Option<PrLink>,
}

#[derive(Deserialize, Clone)]
pub(super) struct PrLink {
    #[serde(default)]
    pub(super) merged_at: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Pull {
    #[serde(default)]
    pub(super) merged_at: Option<String>,
    pub(super) created_at: String,
    pub(super) base: Base,
}

#[derive(Deserialize)]
pub(super) struct Base {
    pub(super) sha: String,
}

#[derive(Deserialize)]
pub(super) struct CommitItem {
    pub(super) commit: CommitInner,
}

#[derive(Deserialize)]
pub(super) struct CommitInner {
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Deserialize)]
pub(super) struct FileItem {
    pub(super) filename: String,
}

#[derive(Deserialize)]
pub(super) struct Comment {
    #[serde(default)]
    pub(super) body: Option<String>,
}
