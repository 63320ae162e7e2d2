//! The wheelhouse of one package version's test requirements: gathered on the host with
//! `pip download` (all at once, else one by one, keeping what can be had), cached per
//! requirement list, without the package's own released wheel.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::{Forge, ForgeError, deps};
use crate::python::{download_wheels, normalize};
use crate::sandbox;

impl Forge<'_> {
    /// Downloads the package's requirements as wheels (once per package version).
    pub(super) async fn wheelhouse(
        &self,
        source: &Path,
        package: &str,
        key: &str,
    ) -> Result<PathBuf, ForgeError> {
        let reqs = deps::discover(source).all(package);
        // Keyed by the requirement list too, so a change in discovery fetches anew.
        let key = format!("{key}-{}", &sandbox::hash_parts(&[&reqs.join("\n")])[..8]);
        let key = key.as_str();
        let dir = self.cfg.cache_dir.join("wheels").join(key);
        if dir.join(".complete").is_file() {
            return Ok(dir);
        }
        debug!(?reqs, "test requirements");
        let index = self.cfg.index_url.as_deref();
        if reqs.is_empty() {
            std::fs::create_dir_all(&dir).map_err(|e| ForgeError::Requirements(e.to_string()))?;
            let _ = std::fs::write(dir.join(".complete"), b"");
            return Ok(dir);
        }
        if download_wheels(&dir, &reqs.join("\n"), index).await.is_ok() {
            return Ok(dir);
        }
        // Some requirement has no wheel for this Python: take what can be had, one by one.
        let parts = self
            .cfg
            .cache_dir
            .join("wheels")
            .join(format!("{key}.parts"));
        let _ = std::fs::remove_dir_all(&parts);
        let mut missing = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let one = parts.join(i.to_string());
            if let Err(e) = download_wheels(&one, r, index).await {
                missing.push(format!("{r} ({e})"));
            }
        }
        if !missing.is_empty() {
            warn!(package, missing = ?missing, "some test requirements have no wheel; going on without them");
        }
        let staging = dir.with_extension("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| ForgeError::Requirements(e.to_string()))?;
        for entry in std::fs::read_dir(&parts).into_iter().flatten().flatten() {
            for wheel in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = wheel.file_name();
                if name.to_string_lossy().ends_with(".whl") {
                    let _ = std::fs::rename(wheel.path(), staging.join(&name));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&parts);
        std::fs::write(staging.join(".complete"), b"")
            .map_err(|e| ForgeError::Requirements(e.to_string()))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(|e| ForgeError::Requirements(e.to_string()))?;
        Ok(dir)
    }
}

/// Removes the package's own released wheels: a test dependency may depend on the package,
/// and its wheel would shadow the source under test.
pub(super) fn drop_own_wheels(dir: &Path, package: &str) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(dist) = name.strip_suffix(".whl").and_then(|n| n.split('-').next())
            && normalize(dist) == package
        {
            debug!(wheel = %name, "dropping the package's own wheel");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
