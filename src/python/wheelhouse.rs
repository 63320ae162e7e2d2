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
    let tmp = dest.with_extension("partial");
    let _ = tokio::fs::remove_dir_all(&tmp).await;
    tokio::fs::create_dir_all(&tmp)
        .await
        .map_err(|e| WheelhouseError::io(tmp.display().to_string(), e))?;
    let req_file = tmp.join("requirements.txt");
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
        .arg("--dest")
        .arg(&tmp)
        .arg("-r")
        .arg(&req_file)
        .kill_on_drop(true);
    if let Some(url) = index_url {
        cmd.args(["--index-url", url]);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| WheelhouseError::io("spawn python3 -m pip", e))?;
    if !out.status.success() {
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
    let _ = tokio::fs::remove_dir_all(dest).await;
    tokio::fs::rename(&tmp, dest)
        .await
        .map_err(|e| WheelhouseError::io(dest.display().to_string(), e))
}
