//! Git sources, on `git/`: a bare mirror per URL in the materialiser's cache (named by the
//! URL's hash), fetched on every cold materialisation (branches and tags), and the tree of one
//! commit written out as plain files under `trees/<commit>` (regular files only, checked names,
//! size caps: `git::write_plain_tree`).

use std::path::{Path, PathBuf};

use super::MaterializeError;
use crate::git::{GitError, TreeLimits, fetch_mirror, find_commit, write_plain_tree};
use crate::tasks::spec::sha256_hex;

/// Where `owner/name` repositories are cloned from unless `AGENTAO_GIT_BASE_URL` says otherwise.
pub const DEFAULT_GIT_BASE_URL: &str = "https://github.com";
/// Largest checked-out tree.
const LIMITS: TreeLimits = TreeLimits {
    max_bytes: 512 << 20,
    max_files: 50_000,
};

impl From<GitError> for MaterializeError {
    fn from(e: GitError) -> MaterializeError {
        match e {
            GitError::Refused(why) => MaterializeError::Refused(why),
            other => MaterializeError::Git(other.to_string()),
        }
    }
}

/// The tree of `commit` (the remote's HEAD when `None`) of `url`, under `root`: the mirror at
/// `root/mirrors/<hash of url>.git`, the files at `root/trees/<commit>`. Returns the commit id
/// and the folder. Blocking: call it from `spawn_blocking`.
pub fn checkout(
    root: &Path,
    url: &str,
    commit: Option<&str>,
) -> Result<(String, PathBuf), MaterializeError> {
    let mirrors = root.join("mirrors");
    std::fs::create_dir_all(&mirrors).map_err(super::io(mirrors.display()))?;
    let mirror = mirrors.join(format!("{}.git", &sha256_hex(url.as_bytes())[..16]));
    let head = fetch_mirror(
        &mirror,
        url,
        &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
    )?;
    let id = find_commit(&mirror, url, commit, head.as_deref())?;
    let trees = root.join("trees");
    let dest = trees.join(&id);
    if dest.is_dir() {
        return Ok((id, dest));
    }
    std::fs::create_dir_all(&trees).map_err(super::io(trees.display()))?;
    let tmp = crate::python::unique_partial(&dest);
    if let Err(e) = write_plain_tree(&mirror, &id, &tmp, LIMITS) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    if std::fs::rename(&tmp, &dest).is_err() {
        // Written meanwhile by another process: the same commit, the same files.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok((id, dest))
}
