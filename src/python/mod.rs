//! Host-side Python: everything agentao does with Python packages on this machine rather than
//! in a sandbox. The index client (`index.rs`: PEP 691/503 simple API, sha256-verified sdist
//! downloads), sdist unpacking with its refusals (`sdist.rs`), wheelhouses gathered with
//! `pip download` for the sandbox's interpreter (`wheelhouse.rs`), venvs for the Python
//! programs agentao runs beside itself (`venv.rs`), PEP 440 versions and PEP 508 requirements
//! through the `pep440_rs`/`pep508_rs` crates (`version.rs`) and the shipped ranking of top
//! packages (`ranking.rs`).
//!
//! Knows nothing of Docker, tasks, tests or the subnet: it hands back paths and names.

use std::path::{Path, PathBuf};

pub mod index;
pub mod ranking;
pub mod sdist;
pub mod venv;
pub mod version;
pub mod wheelhouse;

pub use index::{DEFAULT_INDEX_URL, MAX_SDIST_BYTES, PypiClient, Sdist};
pub use ranking::{TopPackage, top_packages};
pub use sdist::unpack_sdist;
pub use venv::{PyenvError, ensure_venv};
pub use wheelhouse::{WheelhouseError, download_pinned_wheels, download_wheels};

/// Why a package could not be fetched. Each is one line, for the forge's log of skipped
/// packages.
#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    #[error("package {0} is not on the index")]
    UnknownPackage(String),
    #[error("{name}: no usable sdist{}", version.as_deref().map(|v| format!(" for version {v}")).unwrap_or_default())]
    NoSdist {
        name: String,
        version: Option<String>,
    },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{file}: checksum mismatch (expected sha256 {expected}, got {actual})")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: corrupt archive: {reason}")]
    CorruptArchive { file: String, reason: String },
    #[error("{file}: unsafe archive entry {entry:?}")]
    UnsafeArchive { file: String, entry: String },
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PypiError {
    let context = context.into();
    move |source| PypiError::Io { context, source }
}

/// A scratch path beside `path`, unique to this call (`<name>.partial-<random>`): concurrent
/// processes filling the same cache entry never share one, and the entry appears by an atomic
/// rename.
pub fn unique_partial(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..12];
    path.with_file_name(format!("{name}.partial-{tag}"))
}

/// PEP 503 normalised project name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.extend(c.to_lowercase());
            last_sep = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_like_pip() {
        assert_eq!(normalize("Typing_Extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a__b"), "a-b");
    }
}
