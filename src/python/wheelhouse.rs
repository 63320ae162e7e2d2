//! Wheelhouses: folders of wheels for the sandbox's interpreter (CPython 3.11, x86_64 glibc),
//! gathered on the host with `pip download` so that images install offline. Used for the base
//! image's pinned tools and for each package's test requirements.

use std::path::Path;

/// Why a wheelhouse could not be filled.
#[derive(Debug, thiserror::Error)]
pub enum WheelhouseError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pip download failed: {reason}")]
    Pip { reason: String },
}

impl WheelhouseError {
    fn io(context: impl Into<String>, source: std::io::Error) -> WheelhouseError {
        WheelhouseError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Downloads wheels for the image's Python (CPython 3.11, x86_64 glibc) into `dest`, marking
/// it complete only when pip succeeded.
pub async fn download_wheels(
    dest: &Path,
    requirements: &str,
    index_url: Option<&str>,
) -> Result<(), WheelhouseError> {
    pip_download(dest, requirements, index_url, &[]).await
}

/// Downloads exactly the wheels pinned by `(name==version, sha256)` into `dest`, from
/// `index_url` only, without their dependencies, in pip's hash-checking mode: a file whose
/// sha256 differs, an sdist in place of a wheel, or a requirement that is not a plain pin fails
/// the whole download and nothing is kept.
pub async fn download_pinned_wheels(
    dest: &Path,
    pins: &[(String, String)],
    index_url: Option<&str>,
) -> Result<(), WheelhouseError> {
    let mut requirements = String::new();
    for (requirement, sha256) in pins {
        let plain = requirement.split_once("==").is_some_and(|(n, v)| {
            let ok = |s: &str, extra: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
            };
            ok(n, "._-") && ok(v, ".+!_")
        });
        if !plain || sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WheelhouseError::Pip {
                reason: format!(
                    "refused requirement {requirement:?}: not a pinned name==version with a sha256"
                ),
            });
        }
        requirements.push_str(&format!("{requirement} --hash=sha256:{sha256}\n"));
    }
    pip_download(
        dest,
        &requirements,
        index_url,
        &["--no-deps", "--require-hashes"],
    )
    .await
}

async fn pip_download(
    dest: &Path,
    requirements: &str,
    index_url: Option<&str>,
    extra: &[&str],
) -> Result<(), WheelhouseError> {
    let tmp = super::unique_partial(dest);
    tokio::fs::create_dir_all(&tmp)
        .await
        .map_err(|e| WheelhouseError::io(tmp.display().to_string(), e))?;
    // The requirements file sits beside the wheels' folder, not in it.
    let req_file = tmp.with_extension("requirements.txt");
    tokio::fs::write(&req_file, requirements)
        .await
        .map_err(|e| WheelhouseError::io(req_file.display().to_string(), e))?;
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args(["-m", "pip", "download", "--quiet", "--only-binary=:all:"])
        .args([
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ])
        .args([
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "linux_x86_64",
        ])
        .args(extra)
        .args(["--no-input", "--disable-pip-version-check"])
        .arg("--dest")
        .arg(&tmp)
        .arg("-r")
        .arg(&req_file)
        .kill_on_drop(true);
    if let Some(url) = index_url {
        cmd.args(["--index-url", url]);
    }
    let out = cmd.output().await;
    let _ = tokio::fs::remove_file(&req_file).await;
    let out = out.map_err(|e| WheelhouseError::io("spawn python3 -m pip", e))?;
    if !out.status.success() {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(WheelhouseError::Pip {
            reason: String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_owned(),
        });
    }
    tokio::fs::write(tmp.join(".complete"), b"")
        .await
        .map_err(|e| WheelhouseError::io("wheelhouse marker", e))?;
    if tokio::fs::rename(&tmp, dest).await.is_err() {
        // Filled meanwhile by another process, or stale: ours replaces it.
        let old = super::unique_partial(dest);
        let _ = tokio::fs::rename(dest, &old).await;
        let placed = tokio::fs::rename(&tmp, dest).await;
        let _ = tokio::fs::remove_dir_all(&old).await;
        if let Err(e) = placed {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            if !dest.join(".complete").is_file() {
                return Err(WheelhouseError::io(dest.display().to_string(), e));
            }
        }
    }
    Ok(())
}
