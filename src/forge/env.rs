//! Task environments: one image per (package, version), layered on `agentao/base`, with the
//! source as a one-commit git repository at `/repo`, installed in editable form with its test
//! dependencies from a host-side wheelhouse. Bugs are applied at run time, never baked in.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::sandbox::{self, Engine, SandboxError};

/// Bump when the environment recipe below changes.
pub const ENV_RECIPE_VERSION: &str = "3";

const DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE}
COPY wheels /tmp/agentao/wheels
COPY src /repo
WORKDIR /repo
# A fixed author and date make the clean commit's id a function of the source alone.
ENV GIT_AUTHOR_NAME=agentao GIT_AUTHOR_EMAIL=forge@agentao.invalid \
    GIT_COMMITTER_NAME=agentao GIT_COMMITTER_EMAIL=forge@agentao.invalid \
    GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z
RUN git init -q \
 && printf '*.egg-info/\n__pycache__/\n.pytest_cache/\nbuild/\n.coverage*\n' >> .git/info/exclude \
 && git add -A && git commit -qm "agentao: clean source" \
 && cd /tmp/agentao/wheels \
 && if ls *.whl >/dev/null 2>&1; then \
      pip install -q --no-index --find-links . ./*.whl \
      || for w in ./*.whl; do pip install -q --no-index --no-deps "$w" || true; done; fi \
 && cd /repo \
 && if [ -f pyproject.toml ] || [ -f setup.py ]; then \
      pip install -q --no-index --no-build-isolation --no-deps -e . \
      || { d=/repo; [ -d src ] && d=/repo/src; \
           echo "$d" > "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/agentao-src.pth"; \
           echo "agentao: editable install failed; the source is on sys.path instead"; }; fi \
 && rm -rf /tmp/agentao
"#;

/// The image repository of the environments of `owner/name`'s git checkouts: the validator's
/// (a task harvested from GitHub) and a miner's (the description of one, materialised) use this
/// one spelling, so the same tree and wheels give the same tag on both sides. The tag is the
/// commit's first 12 hex digits (then the recipe's hash, as for every environment).
pub fn git_image_name(repo: &str) -> String {
    let (owner, name) = repo.split_once('/').unwrap_or(("", repo));
    if owner.is_empty() {
        format!("agentao/env-gh-{}", plain(name))
    } else {
        format!("agentao/env-gh-{}-{}", plain(owner), plain(name))
    }
}

/// A name Docker takes as part of an image repository.
fn plain(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// What to put in an environment image.
#[derive(Debug, Clone)]
pub struct EnvSpec<'a> {
    /// Repository name of the image, e.g. `agentao/env-packaging`.
    pub name: &'a str,
    /// Tag, usually the package version.
    pub version: &'a str,
    /// Unpacked source tree (becomes `/repo`).
    pub source_dir: &'a Path,
    /// Directory of wheels (test dependencies) to install, or `None`.
    pub wheels_dir: Option<&'a Path>,
}

/// Builds the environment image unless an image with the same recipe hash exists; returns its
/// reference (`<name>:<version>-<hash8>`).
pub async fn build_env_image(engine: &Engine, spec: &EnvSpec<'_>) -> Result<String, SandboxError> {
    let base = sandbox::base_image_tag().reference;
    let (files, content_hash) = collect_context(spec)?;
    let recipe = sandbox::hash_parts(&[ENV_RECIPE_VERSION, &base, DOCKERFILE, &content_hash]);
    let reference = format!("{}:{}-{}", spec.name, spec.version, &recipe[..8]);
    if engine.image_exists(&reference).await? {
        return Ok(reference);
    }
    if !engine.image_exists(&base).await? {
        return Err(SandboxError::ImageMissing(base));
    }
    let context = sandbox::tar_files(&files, 0)?;
    sandbox::build_image_from_context(
        engine,
        context,
        &reference,
        HashMap::from([("BASE".to_owned(), base)]),
        &recipe,
        |line| tracing::debug!(target: "agentao::build", "{line}"),
    )
    .await?;
    Ok(reference)
}

type Files = Vec<(String, Vec<u8>, u32)>;

/// The build context's files and a hash of their names, modes and contents.
fn collect_context(spec: &EnvSpec<'_>) -> Result<(Files, String), SandboxError> {
    let mut files: Files = vec![("Dockerfile".into(), DOCKERFILE.as_bytes().to_vec(), 0o644)];
    // An empty wheels directory must exist for COPY.
    files.push(("wheels/.keep".into(), Vec::new(), 0o644));
    if let Some(dir) = spec.wheels_dir {
        walk(dir, dir, "wheels", &mut files)?;
        // Only the wheels name the image: a cache's markers and notes beside them do not, so
        // a miner that fetched the same pinned wheels gets the same tag.
        files.retain(|(name, ..)| {
            !name.starts_with("wheels/") || name == "wheels/.keep" || name.ends_with(".whl")
        });
    }
    walk(spec.source_dir, spec.source_dir, "src", &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (name, bytes, mode) in &files {
        h.update(name.as_bytes());
        h.update(mode.to_le_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    Ok((files, hex::encode(h.finalize())))
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Files) -> Result<(), SandboxError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| SandboxError::io(dir.display().to_string(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SandboxError::io(dir.display().to_string(), e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| SandboxError::io(path.display().to_string(), e))?;
        let rel = path
            .strip_prefix(root)
            .map_err(|_| SandboxError::BadPath(path.display().to_string()))?;
        let name = format!("{prefix}/{}", rel.to_string_lossy());
        if meta.is_dir() {
            if entry.file_name() == ".git" {
                continue;
            }
            walk(root, &path, prefix, out)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let bytes = std::fs::read(&path)
                .map_err(|e| SandboxError::io(path.display().to_string(), e))?;
            out.push((name, bytes, mode));
        }
        // Symlinks are skipped: they could point outside the tree.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_checkouts_of_a_repository_share_one_image_name() {
        assert_eq!(
            git_image_name("Fixture-Org/tiny_lib"),
            "agentao/env-gh-fixture-org-tiny-lib"
        );
        assert_eq!(
            git_image_name("psf/requests"),
            "agentao/env-gh-psf-requests"
        );
        assert_eq!(git_image_name("lonely"), "agentao/env-gh-lonely");
    }
}
