//! Git sources through libgit2 (git2): a bare mirror per URL in the cache, fetched on every
//! cold materialisation, and the tree of one commit written out as plain files. Only regular
//! files are written (symlinks and submodules are skipped, as the environment build skips
//! them), each name is checked (no `..`, `.git` or separators), and sizes are capped. No hook,
//! filter or checkout machinery of git runs.

use std::path::{Path, PathBuf};

use git2::{Direction, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::MaterializeError;
use crate::tasks::spec::sha256_hex;

/// Where `owner/name` repositories are cloned from unless `AGENTAO_GIT_BASE_URL` says otherwise.
pub const DEFAULT_GIT_BASE_URL: &str = "https://github.com";
/// Largest checked-out tree.
const MAX_TREE_BYTES: u64 = 512 << 20;
const MAX_TREE_FILES: usize = 50_000;

fn git_err(e: git2::Error) -> MaterializeError {
    MaterializeError::Git(e.message().to_owned())
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
    let repo = match Repository::open_bare(&mirror) {
        Ok(r) => r,
        Err(_) => {
            let tmp = crate::python::unique_partial(&mirror);
            Repository::init_bare(&tmp).map_err(git_err)?;
            // Another process may have made it meanwhile: either copy is a fine start.
            if std::fs::rename(&tmp, &mirror).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Repository::open_bare(&mirror).map_err(git_err)?
        }
    };
    let mut remote = repo.remote_anonymous(url).map_err(git_err)?;
    remote.connect(Direction::Fetch).map_err(git_err)?;
    let head = remote
        .default_branch()
        .ok()
        .and_then(|b| b.as_str().ok().map(str::to_owned));
    remote.disconnect().map_err(git_err)?;
    remote
        .fetch(
            &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
            None,
            None,
        )
        .map_err(git_err)?;
    let oid = match commit {
        Some(c) => Oid::from_str(c).map_err(git_err)?,
        None => {
            let head = head
                .ok_or_else(|| MaterializeError::Git(format!("{url}: the remote names no HEAD")))?;
            repo.refname_to_id(&head).map_err(git_err)?
        }
    };
    let commit = repo
        .find_commit(oid)
        .map_err(|e| MaterializeError::Git(format!("{url}: commit {oid}: {}", e.message())))?;
    let id = commit.id().to_string();
    let trees = root.join("trees");
    let dest = trees.join(&id);
    if dest.is_dir() {
        return Ok((id, dest));
    }
    std::fs::create_dir_all(&trees).map_err(super::io(trees.display()))?;
    let tmp = crate::python::unique_partial(&dest);
    let written = write_tree(&repo, &commit.tree().map_err(git_err)?, &tmp);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dest).is_err() {
        // Written meanwhile by another process: the same commit, the same files.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok((id, dest))
}

/// Writes a tree's regular files under `dest`.
fn write_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    dest: &Path,
) -> Result<(), MaterializeError> {
    std::fs::create_dir_all(dest).map_err(super::io(dest.display()))?;
    let mut failure = None;
    let (mut bytes, mut files) = (0u64, 0usize);
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let name = entry.name().unwrap_or("");
        let mut fail = |e: MaterializeError| {
            failure = Some(e);
            TreeWalkResult::Abort
        };
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.eq_ignore_ascii_case(".git")
            || name.contains(['/', '\\', '\0'])
        {
            return fail(MaterializeError::Refused(format!(
                "tree entry {parent}{name:?} leaves the tree"
            )));
        }
        let path = dest.join(parent).join(name);
        match entry.kind() {
            Some(ObjectType::Tree) => match std::fs::create_dir_all(&path) {
                Ok(()) => TreeWalkResult::Ok,
                Err(e) => fail(super::io(path.display())(e)),
            },
            Some(ObjectType::Blob) if matches!(entry.filemode(), 0o100644 | 0o100755) => {
                let blob = match repo.find_blob(entry.id()) {
                    Ok(b) => b,
                    Err(e) => return fail(git_err(e)),
                };
                bytes += blob.content().len() as u64;
                files += 1;
                if bytes > MAX_TREE_BYTES || files > MAX_TREE_FILES {
                    return fail(MaterializeError::Refused(format!(
                        "the tree is over {MAX_TREE_BYTES} bytes or {MAX_TREE_FILES} files"
                    )));
                }
                if let Err(e) = std::fs::write(&path, blob.content()) {
                    return fail(super::io(path.display())(e));
                }
                use std::os::unix::fs::PermissionsExt;
                let mode = if entry.filemode() == 0o100755 {
                    0o755
                } else {
                    0o644
                };
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
                TreeWalkResult::Ok
            }
            // Symlinks and submodules are not written.
            _ => TreeWalkResult::Skip,
        }
    })
    .map_err(|e| failure.take().unwrap_or_else(|| git_err(e)))?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
