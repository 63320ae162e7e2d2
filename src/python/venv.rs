//! Host-side Python virtualenvs in the cache directory, for the Python programs agentao runs
//! beside itself (the embedded model server, the Python SDK the benchmarks compare against).
//! A venv is marked complete only after pip succeeded, so an interrupted set-up is redone; the
//! marker lists the packages installed, so asking for one more installs just that.

use std::path::{Path, PathBuf};

/// The file that marks a venv complete.
pub const MARKER: &str = ".agentao-complete";

/// Why a venv could not be made.
#[derive(Debug, thiserror::Error)]
#[error("python venv {dir}: {step} failed: {reason}")]
pub struct PyenvError {
    pub dir: String,
    pub step: String,
    pub reason: String,
}

/// The `python` of a venv at `dir` holding `packages`, created (and the packages installed
/// from `index_url` or pip's own configuration) unless it already holds them all.
pub async fn ensure_venv(
    dir: &Path,
    packages: &[&str],
    index_url: Option<&str>,
) -> Result<PathBuf, PyenvError> {
    let python = dir.join("bin/python");
    let mut installed: Vec<String> = std::fs::read_to_string(dir.join(MARKER))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    if dir.join(MARKER).is_file() && packages.iter().all(|p| installed.iter().any(|i| i == p)) {
        return Ok(python);
    }
    let _ = std::fs::remove_file(dir.join(MARKER));
    for p in packages {
        if !installed.iter().any(|i| i == p) {
            installed.push((*p).to_owned());
        }
    }
    let err = |step: &str, reason: String| PyenvError {
        dir: dir.display().to_string(),
        step: step.to_owned(),
        reason,
    };
    run(
        tokio::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir),
        "python3 -m venv",
    )
    .await
    .map_err(|r| err("python3 -m venv", r))?;
    let mut pip = tokio::process::Command::new(&python);
    pip.args(["-m", "pip", "install", "-q"]).args(&installed);
    if let Some(url) = index_url {
        pip.args(["--index-url", url]);
    }
    run(&mut pip, "pip install")
        .await
        .map_err(|r| err(&format!("pip install {}", installed.join(" ")), r))?;
    std::fs::write(dir.join(MARKER), installed.join("\n"))
        .map_err(|e| err("marking the venv", e.to_string()))?;
    Ok(python)
}

/// Whether the venv at `dir` is complete.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// Runs a set-up command; the last lines of its stderr on failure.
pub(crate) async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<(), String> {
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(3).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
}
