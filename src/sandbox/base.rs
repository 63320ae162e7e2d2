//! The offline base image `agentao/base`: a debootstrap root imported into Docker, plus a
//! Python venv with pytest and the build backends, installed from a host-side wheelhouse.
//!
//! The recipe lives in `docker/base/` and is compiled into the binary, so the image tag
//! (`agentao/base:<recipe hash>`) is known without reading the disk, and a build is skipped
//! when that tag exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::info;

use super::image::{build_image_from_context, import_rootfs, tag, tar_files};
use super::{Engine, SandboxError};
use crate::python::{WheelhouseError, download_wheels};

const DOCKERFILE: &str = include_str!("../../docker/base/Dockerfile");
const PACKAGES: &str = include_str!("../../docker/base/packages.txt");
const REQUIREMENTS: &str = include_str!("../../docker/base/requirements.txt");
const SUITE: &str = "bookworm";
/// Bump when the build procedure changes in a way the recipe files do not show.
const PROCEDURE_VERSION: &str = "1";

/// Repository name of the base image.
pub const BASE_REPO: &str = "agentao/base";
const ROOTFS_REPO: &str = "agentao/rootfs";

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct BaseImageOptions {
    /// Cache directory (rootfs scratch space and the wheelhouse live below it).
    pub cache_dir: PathBuf,
    /// Debian mirror for debootstrap.
    pub mirror: String,
    /// Python index for `pip download` (`None`: pip's own configuration).
    pub pip_index_url: Option<String>,
    pub rebuild: Rebuild,
}

/// Whether an image whose tag exists is built again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuild {
    /// Build only when the recipe's tag is missing.
    IfMissing,
    /// Build even when the tag exists.
    Always,
}

/// The base image's identity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaseImage {
    /// `agentao/base:<hash>`.
    pub reference: String,
    /// Full recipe hash.
    pub recipe: String,
}

/// What a build did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub image: BaseImage,
    /// True when the image already existed and nothing was built.
    pub skipped: bool,
    pub rootfs_built: bool,
    pub wheels_downloaded: bool,
    pub seconds: f64,
}

/// sha256 (hex) of `parts` joined by NUL bytes: the recipe hash behind image tags.
pub fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

fn packages() -> Vec<&'static str> {
    PACKAGES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn rootfs_hash() -> String {
    hash_parts(&["rootfs", PROCEDURE_VERSION, SUITE, "minbase", PACKAGES])
}

/// The base image this binary's recipe describes.
pub fn base_image_tag() -> BaseImage {
    let recipe = hash_parts(&[
        "base",
        PROCEDURE_VERSION,
        &rootfs_hash(),
        DOCKERFILE,
        REQUIREMENTS,
    ]);
    BaseImage {
        reference: format!("{BASE_REPO}:{}", &recipe[..12]),
        recipe,
    }
}

/// Builds the base image unless it exists (idempotent), then tags it `agentao/base:latest`.
/// `on_step` receives one human line per step.
pub async fn build_base_image(
    engine: &Engine,
    opts: &BaseImageOptions,
    on_step: &mut (dyn FnMut(&str) + Send),
) -> Result<BuildReport, SandboxError> {
    let begun = Instant::now();
    let image = base_image_tag();
    let mut report = BuildReport {
        image: image.clone(),
        skipped: false,
        rootfs_built: false,
        wheels_downloaded: false,
        seconds: 0.0,
    };
    if opts.rebuild == Rebuild::IfMissing && engine.image_exists(&image.reference).await? {
        tag(engine, &image.reference, &format!("{BASE_REPO}:latest")).await?;
        report.skipped = true;
        report.seconds = begun.elapsed().as_secs_f64();
        return Ok(report);
    }

    let rootfs_hash = rootfs_hash();
    let rootfs_ref = format!("{ROOTFS_REPO}:{}", &rootfs_hash[..12]);
    if opts.rebuild == Rebuild::Always || !engine.image_exists(&rootfs_ref).await? {
        on_step(&format!(
            "debootstrap {SUITE} root filesystem (about a minute)"
        ));
        let dir = opts
            .cache_dir
            .join(format!("rootfs-{}", &rootfs_hash[..12]));
        debootstrap(&dir, &opts.mirror).await?;
        on_step(&format!("importing root filesystem as {rootfs_ref}"));
        let imported = import_rootfs(engine, &dir, &rootfs_ref, &rootfs_hash).await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        imported?;
        report.rootfs_built = true;
    }

    let wheels = opts
        .cache_dir
        .join("wheelhouse")
        .join(format!("base-{}", &hash_parts(&[REQUIREMENTS])[..12]));
    if !wheels.join(".complete").exists() {
        on_step("downloading wheels for the base image");
        download_wheels(&wheels, REQUIREMENTS, opts.pip_index_url.as_deref())
            .await
            .map_err(|e| match e {
                WheelhouseError::Io { context, source } => SandboxError::io(context, source),
                WheelhouseError::Pip { reason } => SandboxError::Tool {
                    tool: "pip download".into(),
                    reason,
                },
            })?;
        report.wheels_downloaded = true;
    }

    on_step(&format!("building {}", image.reference));
    let context = base_context(&wheels)?;
    build_image_from_context(
        engine,
        context,
        &image.reference,
        HashMap::from([("ROOTFS".to_owned(), rootfs_ref)]),
        &image.recipe,
        |line| tracing::debug!(target: "agentao::build", "{line}"),
    )
    .await?;
    tag(engine, &image.reference, &format!("{BASE_REPO}:latest")).await?;
    report.seconds = begun.elapsed().as_secs_f64();
    info!(image = %image.reference, seconds = report.seconds, "base image built");
    Ok(report)
}

fn base_context(wheels: &Path) -> Result<Vec<u8>, SandboxError> {
    let mut files = vec![
        (
            "Dockerfile".to_owned(),
            DOCKERFILE.as_bytes().to_vec(),
            0o644,
        ),
        (
            "requirements.txt".to_owned(),
            REQUIREMENTS.as_bytes().to_vec(),
            0o644,
        ),
    ];
    let entries =
        std::fs::read_dir(wheels).map_err(|e| SandboxError::io(wheels.display().to_string(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SandboxError::io("wheelhouse", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".whl") {
            let bytes = std::fs::read(entry.path())
                .map_err(|e| SandboxError::io(entry.path().display().to_string(), e))?;
            files.push((format!("wheels/{name}"), bytes, 0o644));
        }
    }
    tar_files(&files, 0)
}

/// Runs debootstrap into `dir` (replacing whatever is there).
async fn debootstrap(dir: &Path, mirror: &str) -> Result<(), SandboxError> {
    which("debootstrap").ok_or_else(|| SandboxError::Tool {
        tool: "debootstrap".into(),
        reason: "not installed (apt-get install debootstrap)".into(),
    })?;
    if dir.exists() {
        tokio::fs::remove_dir_all(dir)
            .await
            .map_err(|e| SandboxError::io(dir.display().to_string(), e))?;
    }
    if let Some(parent) = dir.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| SandboxError::io(parent.display().to_string(), e))?;
    }
    let out = tokio::process::Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", packages().join(",")),
            SUITE,
        ])
        .arg(dir)
        .arg(mirror)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| SandboxError::io("spawn debootstrap", e))?;
    if !out.status.success() {
        let mut tail = super::BoundedBuf::new(2000);
        tail.push(&out.stdout);
        tail.push(&out.stderr);
        return Err(SandboxError::Tool {
            tool: "debootstrap".into(),
            reason: tail.to_string_lossy(),
        });
    }
    Ok(())
}

/// The full path of `program` on `PATH`, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|p| p.join(program))
        .find(|p| p.is_file())
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(program))
                .find(|p| p.is_file())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_recipe() {
        let a = base_image_tag();
        assert!(a.reference.starts_with("agentao/base:"));
        assert_eq!(a.reference.len(), "agentao/base:".len() + 12);
        assert_eq!(a.reference, base_image_tag().reference);
        assert_ne!(hash_parts(&["a", "b"]), hash_parts(&["ab"]));
    }

    #[test]
    fn packages_include_the_tools_evaluation_needs() {
        let p = packages();
        for needed in ["python3", "git", "patch"] {
            assert!(p.contains(&needed), "{needed} missing from packages.txt");
        }
    }
}
