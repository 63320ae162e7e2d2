//! A task harvested from GitHub (a closed issue with its merged fix, or an open issue) as a
//! portable description: the repository under the validator's git base URL
//! (`AGENTAO_GIT_BASE_URL`, `https://github.com` unless set) at the task's base commit, the
//! tree as it is there, and the environment recipe of the task's own image
//! (`Forge::describe_checkout`). The tree is the harvest's checkout when it is still in the
//! cache, else the base commit checked out again from a mirror of that URL (`git/`). A miner
//! materialises it from the same URL, at the same commit, into the same image tag.

use std::path::Path;

use super::harvest::checkout_dir;
use crate::forge::{Described, Forge, ForgeError};
use crate::tasks::Task;
use crate::tasks::spec::{is_commit_id, is_owner_name};

/// Describes a GitHub task for miners on other machines; `git_base_url` is where miners clone
/// `owner/name` from (theirs must be the same).
pub async fn describe(
    forge: &Forge<'_>,
    task: &Task,
    git_base_url: &str,
    time_limit: f64,
) -> Result<Described, ForgeError> {
    let refused = |reason: String| ForgeError::Describe {
        task: task.instance_id.clone(),
        reason,
    };
    if !is_owner_name(&task.repo) {
        return Err(refused(format!("repo {:?} is not owner/name", task.repo)));
    }
    let commit = task.base_commit.to_ascii_lowercase();
    if !is_commit_id(&commit) {
        return Err(refused("its base commit is not a full commit id".into()));
    }
    let cache_dir = &forge.config().cache_dir;
    let url = format!("{}/{}", git_base_url.trim_end_matches('/'), task.repo);
    let tree = checkout_dir(cache_dir, &task.repo, &commit);
    if !tree.is_dir() {
        let (cache, url, tree, commit) = (
            cache_dir.to_path_buf(),
            url.clone(),
            tree.clone(),
            commit.clone(),
        );
        tokio::task::spawn_blocking(move || check_out(&cache, &url, &commit, &tree))
            .await
            .map_err(|e| refused(e.to_string()))?
            .map_err(refused)?;
    }
    forge.describe_checkout(task, &url, &tree, time_limit).await
}

/// `commit` of `url` written to `tree` through a scratch folder renamed into place.
fn check_out(cache: &Path, url: &str, commit: &str, tree: &Path) -> Result<(), String> {
    let mirror = crate::git::mirror(cache, url).map_err(|e| e.to_string())?;
    let scratch = crate::python::unique_partial(tree);
    if let Err(e) = crate::git::checkout(&mirror, url, commit, &scratch) {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(e.to_string());
    }
    if std::fs::rename(&scratch, tree).is_err() {
        // Checked out meanwhile by another process: the same commit, the same files.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}
