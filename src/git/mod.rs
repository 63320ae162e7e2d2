//! Git repositories through git2 (libgit2; no git binary, no shell): a bare mirror of a remote
//! kept in the cache and fetched again on each use, a checkout of one commit's tree into a
//! folder (the work tree an environment is built from), and a branch pushed to a remote.
//! `tree.rs`: the same for a stranger's repository (the miner's materialiser): a mirror fetched
//! with given refspecs, a commit by id or the remote's HEAD, its regular files written out with
//! checked names and size caps.
//!
//! Knows nothing of GitHub's API, tasks or Docker: it takes URLs, commits and folders. Only
//! this module imports git2 (`tests/it/architecture.rs`).

use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, Repository, build::CheckoutBuilder};

mod tree;
pub use tree::{TreeLimits, fetch_mirror, find_commit, write_plain_tree};

/// What went wrong with a repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cloning {url}: {reason}")]
    Clone { url: String, reason: String },
    #[error("commit {commit} is not in {url} (force-pushed away or never fetched)")]
    CommitGone { url: String, commit: String },
    #[error("checking out {commit}: {reason}")]
    Checkout { commit: String, reason: String },
    #[error("{context}: {reason}")]
    Other { context: String, reason: String },
    /// A tree that may not be written (a name leaving it, over the size caps).
    #[error("{0}")]
    Refused(String),
}

fn other(context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let context = context.into();
    move |e| GitError::Other {
        context,
        reason: e.message().to_owned(),
    }
}

/// The cache folder of a remote's mirror: `<cache>/git/<host-and-path>.git`, with every
/// character that is not plain turned into `_`.
pub fn mirror_dir(cache_dir: &Path, url: &str) -> PathBuf {
    let tail = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
        .trim_end_matches(".git");
    let name: String = tail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_dir.join("git").join(format!("{name}.git"))
}

/// Makes `<cache>/git/…` a bare mirror of `url` (every ref, pull request heads included on
/// GitHub) and brings it up to date. Returns the mirror's folder.
pub fn mirror(cache_dir: &Path, url: &str) -> Result<PathBuf, GitError> {
    let dir = mirror_dir(cache_dir, url);
    let fail = |e: git2::Error| GitError::Clone {
        url: url.to_owned(),
        reason: e.message().to_owned(),
    };
    let repo = match Repository::open_bare(&dir) {
        Ok(r) => r,
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| GitError::Clone {
                url: url.to_owned(),
                reason: format!("{}: {e}", dir.display()),
            })?;
            Repository::init_bare(&dir).map_err(fail)?
        }
    };
    let mut remote = repo.remote_anonymous(url).map_err(fail)?;
    let mut opts = FetchOptions::new();
    opts.download_tags(git2::AutotagOption::All);
    remote
        .fetch(&["+refs/*:refs/*"], Some(&mut opts), None)
        .map_err(|e| {
            // A first fetch that failed leaves an empty mirror: drop it.
            if repo.is_empty().unwrap_or(false) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            fail(e)
        })?;
    Ok(dir)
}

/// Writes the tree of `commit` (full hex id) from the mirror at `mirror` into `dest` (created;
/// emptied first), without a `.git`. A commit the mirror does not hold is [`GitError::CommitGone`].
pub fn checkout(mirror: &Path, url: &str, commit: &str, dest: &Path) -> Result<(), GitError> {
    let repo = Repository::open_bare(mirror).map_err(other(mirror.display().to_string()))?;
    let gone = || GitError::CommitGone {
        url: url.to_owned(),
        commit: commit.to_owned(),
    };
    let oid = Oid::from_str(commit).map_err(|_| gone())?;
    let found = repo.find_commit(oid).map_err(|_| gone())?;
    let tree = found.tree().map_err(other(commit))?;
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).map_err(|e| GitError::Checkout {
        commit: commit.to_owned(),
        reason: format!("{}: {e}", dest.display()),
    })?;
    let mut cb = CheckoutBuilder::new();
    cb.target_dir(dest)
        .force()
        .recreate_missing(true)
        .update_index(false);
    repo.checkout_tree(tree.as_object(), Some(&mut cb))
        .map_err(|e| GitError::Checkout {
            commit: commit.to_owned(),
            reason: e.message().to_owned(),
        })
}

/// The commit a ref of the mirror points at (`refs/heads/main`, `HEAD`, …).
pub fn resolve(mirror: &Path, reference: &str) -> Result<String, GitError> {
    let repo = Repository::open_bare(mirror).map_err(other(mirror.display().to_string()))?;
    let obj = repo.revparse_single(reference).map_err(other(reference))?;
    let commit = obj.peel_to_commit().map_err(other(reference))?;
    Ok(commit.id().to_string())
}

/// What a proposed change is: a branch made of one commit on top of `base`.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    pub base: &'a str,
    pub branch: &'a str,
    pub message: &'a str,
    pub author_name: &'a str,
    pub author_email: &'a str,
}

/// Applies `patch` (a unified diff) to the tree of `proposal.base` in the mirror, commits the
/// result on `refs/heads/<branch>` and returns the new commit's id. Nothing is pushed.
pub fn commit_patch(
    mirror: &Path,
    proposal: &Proposal<'_>,
    patch: &str,
) -> Result<String, GitError> {
    let repo = Repository::open_bare(mirror).map_err(other(mirror.display().to_string()))?;
    let base = repo
        .find_commit(Oid::from_str(proposal.base).map_err(other(proposal.base))?)
        .map_err(other(proposal.base))?;
    let diff = git2::Diff::from_buffer(patch.as_bytes()).map_err(other("reading the patch"))?;
    let mut index = repo
        .apply_to_tree(&base.tree().map_err(other("base tree"))?, &diff, None)
        .map_err(other("applying the patch"))?;
    let tree_id = index
        .write_tree_to(&repo)
        .map_err(other("writing the tree"))?;
    let tree = repo.find_tree(tree_id).map_err(other("writing the tree"))?;
    let sig = git2::Signature::now(proposal.author_name, proposal.author_email)
        .map_err(other("signature"))?;
    let refname = format!("refs/heads/{}", proposal.branch);
    let id = repo
        .commit(None, &sig, &sig, proposal.message, &tree, &[&base])
        .map_err(other("committing"))?;
    // The branch is made anew each time (a dry run before leaves one behind).
    repo.reference(&refname, id, true, "agentao: proposal")
        .map_err(other("branch"))?;
    Ok(id.to_string())
}

/// Pushes `refs/heads/<branch>` of the mirror to `url` (a fork), forcing it. `token`, when
/// given, answers an HTTPS credential request (as GitHub takes a token: user `x-access-token`).
pub fn push_branch(
    mirror: &Path,
    url: &str,
    branch: &str,
    token: Option<&str>,
) -> Result<(), GitError> {
    let repo = Repository::open_bare(mirror).map_err(other(mirror.display().to_string()))?;
    let mut remote = repo.remote_anonymous(url).map_err(other(url))?;
    let spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
    let mut callbacks = git2::RemoteCallbacks::new();
    let refused = std::rc::Rc::new(std::cell::RefCell::new(None::<String>));
    let seen = refused.clone();
    if let Some(token) = token {
        let token = token.to_owned();
        callbacks
            .credentials(move |_, _, _| git2::Cred::userpass_plaintext("x-access-token", &token));
    }
    callbacks.push_update_reference(move |name, status| {
        if let Some(why) = status {
            *seen.borrow_mut() = Some(format!("{name}: {why}"));
        }
        Ok(())
    });
    let mut opts = git2::PushOptions::new();
    opts.remote_callbacks(callbacks);
    remote
        .push(&[spec.as_str()], Some(&mut opts))
        .map_err(other(format!("pushing to {url}")))?;
    match refused.borrow_mut().take() {
        Some(why) => Err(GitError::Other {
            context: format!("pushing to {url}"),
            reason: why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_folders_are_plain_names() {
        let d = mirror_dir(Path::new("/c"), "https://github.com/pallets/click.git");
        assert_eq!(d, Path::new("/c/git/github.com_pallets_click.git"));
        let d = mirror_dir(Path::new("/c"), "file:///tmp/x y/repo");
        assert_eq!(d, Path::new("/c/git/_tmp_x_y_repo.git"));
    }
}
