//! Trees from strangers' repositories (the miner's materialiser): a bare mirror at a given
//! folder fetched with given refspecs (the remote's HEAD read on the way), a commit found by
//! id or by that HEAD, and the commit's tree written out as plain files. Only regular files
//! are written (symlinks and submodules are skipped), every name is checked (no `..`, `.git`,
//! separators), and sizes are capped. No hook, filter or checkout machinery of git runs.

use std::path::Path;

use git2::{Direction, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::{GitError, other};

/// The most a written tree may hold.
#[derive(Debug, Clone, Copy)]
pub struct TreeLimits {
    pub max_bytes: u64,
    pub max_files: usize,
}

fn io(context: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |e| GitError::Other {
        context: context.display().to_string(),
        reason: e.to_string(),
    }
}

/// Fetches `refspecs` of `url` into the bare mirror at `dir` (made when missing; a copy made
/// meanwhile by another process is as good). Returns the ref the remote names as its HEAD,
/// when it names one.
pub fn fetch_mirror(dir: &Path, url: &str, refspecs: &[&str]) -> Result<Option<String>, GitError> {
    let fail = |e: git2::Error| GitError::Clone {
        url: url.to_owned(),
        reason: e.message().to_owned(),
    };
    let repo = match Repository::open_bare(dir) {
        Ok(r) => r,
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let tmp = dir.with_extension(format!("partial-{}-{nanos}", std::process::id()));
            Repository::init_bare(&tmp).map_err(fail)?;
            if std::fs::rename(&tmp, dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Repository::open_bare(dir).map_err(fail)?
        }
    };
    let mut remote = repo.remote_anonymous(url).map_err(fail)?;
    remote.connect(Direction::Fetch).map_err(fail)?;
    let head = remote
        .default_branch()
        .ok()
        .and_then(|b| b.as_str().ok().map(str::to_owned));
    remote.disconnect().map_err(fail)?;
    remote.fetch(refspecs, None, None).map_err(fail)?;
    Ok(head)
}

/// The full id of `commit` (hex) in the mirror, or, when `None`, of the commit the ref `head`
/// points at.
pub fn find_commit(
    mirror: &Path,
    url: &str,
    commit: Option<&str>,
    head: Option<&str>,
) -> Result<String, GitError> {
    let repo = Repository::open_bare(mirror).map_err(other(mirror.display().to_string()))?;
    let oid = match (commit, head) {
        (Some(c), _) => Oid::from_str(c).map_err(other(c))?,
        (None, Some(head)) => repo.refname_to_id(head).map_err(other(head))?,
        (None, None) => {
            return Err(GitError::Other {
                context: url.to_owned(),
                reason: "the remote names no HEAD".into(),
            });
        }
    };
    let found = repo.find_commit(oid).map_err(|_| GitError::CommitGone {
        url: url.to_owned(),
        commit: oid.to_string(),
    })?;
    Ok(found.id().to_string())
}

/// Writes the regular files of `commit`'s tree from the mirror under `dest` (created), within
/// `limits`; a name that leaves the tree or a tree over the limits is [`GitError::Refused`].
pub fn write_plain_tree(
    mirror: &Path,
    commit: &str,
    dest: &Path,
    limits: TreeLimits,
) -> Result<(), GitError> {
    let repo = Repository::open_bare(mirror).map_err(other(mirror.display().to_string()))?;
    let oid = Oid::from_str(commit).map_err(other(commit))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(other(commit))?;
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut failure = None;
    let (mut bytes, mut files) = (0u64, 0usize);
    tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let name = entry.name().unwrap_or("");
        let mut fail = |e: GitError| {
            failure = Some(e);
            TreeWalkResult::Abort
        };
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.eq_ignore_ascii_case(".git")
            || name.contains(['/', '\\', '\0'])
        {
            return fail(GitError::Refused(format!(
                "tree entry {parent}{name:?} leaves the tree"
            )));
        }
        let path = dest.join(parent).join(name);
        match entry.kind() {
            Some(ObjectType::Tree) => match std::fs::create_dir_all(&path) {
                Ok(()) => TreeWalkResult::Ok,
                Err(e) => fail(io(&path)(e)),
            },
            Some(ObjectType::Blob) if matches!(entry.filemode(), 0o100644 | 0o100755) => {
                let blob = match repo.find_blob(entry.id()) {
                    Ok(b) => b,
                    Err(e) => return fail(other("reading a blob")(e)),
                };
                bytes += blob.content().len() as u64;
                files += 1;
                if bytes > limits.max_bytes || files > limits.max_files {
                    return fail(GitError::Refused(format!(
                        "the tree is over {} bytes or {} files",
                        limits.max_bytes, limits.max_files
                    )));
                }
                if let Err(e) = std::fs::write(&path, blob.content()) {
                    return fail(io(&path)(e));
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
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| other("walking the tree")(e))
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
