//! Real GitHub issues as tasks, beside the forge's synthetic ones.
//!
//! From a PyPI package to its repository (`pypi.rs`: `project_urls`, cached), a REST client
//! over octocrab with an ETag cache, `Link` pagination and rate limits (`client.rs`), the
//! SWE-bench way of reading a merged pull request (`refs.rs`: "fixes #N" links, the split of
//! its diff into `patch` and `test_patch`, the statement from the issue alone), and the
//! harvest (`harvest.rs`) that checks a candidate out with `git/`, builds its environment with
//! the forge's machinery and validates it in fresh containers (`validate.rs`: FAIL_TO_PASS
//! fail → pass, PASS_TO_PASS green, the gold patch resolving it in `eval::evaluate`) before
//! the task is stored in one write. Open issues become tasks without a gold patch (`open.rs`:
//! the suite green at HEAD is PASS_TO_PASS, a checklist written from the issue for the judge,
//! `exposure = none`). `describe.rs` makes either kind a portable description for miners on other
//! machines (the repository under the validator's git base URL at the base commit, the task's
//! own image). `propose.rs` takes a winning patch of an open-issue task
//! upstream (a branch on a fork with git2, a pull request with octocrab), only when asked.
//!
//! The only module that imports octocrab (`tests/it/architecture.rs`). Knows nothing of
//! miners, scores or the subnet.

pub mod client;
mod describe;
pub mod harvest;
mod open;
pub mod propose;
pub mod pypi;
pub mod refs;
mod validate;
mod wire;

pub use client::{DEFAULT_API_URL, Fetched, GithubClient, GithubConfig, Usage};
pub use describe::describe;
pub use harvest::{HarvestConfig, HarvestReport, Skip, harvest, harvest_open};
pub use open::CHECKLIST_BUDGET;
pub use propose::{Proposal, ProposeError, Winner, propose};
pub use pypi::{RepoRef, github_repo_of};

/// What went wrong talking to GitHub or the index. One line each: harvest logs carry them.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub client: {0}")]
    Config(String),
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: not found (404)")]
    NotFound { url: String },
    #[error("{url}: forbidden: {message}")]
    Forbidden { url: String, message: String },
    #[error("{url}: rate limited, reset in {wait_secs} s (longer than allowed)")]
    RateLimited { url: String, wait_secs: u64 },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: unexpected answer: {reason}")]
    Decode { url: String, reason: String },
}
