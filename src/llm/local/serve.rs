//! Serving the embedded model: the `llama_cpp.server` child process on loopback, started only
//! once it answered a real chat completion, reaped and restarted when it died.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::install::system_info;
use super::{LOG_TAIL_LINES, LocalLlmError, LocalModel, START_LIMIT, setup_err};
use crate::llm::models::EMBEDDED_MODEL;

impl LocalModel {
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
    fn the_log_tail_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\n\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&p, 2), "c | d");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "(empty)");
    }
}
