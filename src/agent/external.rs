//! External agents (`--agent cmd:<program>`): any program that reads the task JSON on stdin
//! and writes a unified diff to stdout, run under the same wall clock as the built-in agent.
//! It runs on the host (tools like SWE-agent start their own containers); the task it gets
//! is the public part, without the hidden bug patch.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::episode::{AgentError, Episode, ExitStatus, Protocol};
use crate::llm::Usage;
use crate::tasks::Task;

/// Largest patch read from the program.
const MAX_OUTPUT: u64 = 4 << 20;

/// Runs `program` (a shell command line) on `task` with a wall-clock limit.
pub async fn run_external(
    program: &str,
    task: &Task,
    wall: Duration,
    budget: f64,
) -> Result<Episode, AgentError> {
    let started = Instant::now();
    let public = serde_json::json!({
        "instance_id": task.instance_id,
        "repo": task.repo,
        "version": task.version,
        "base_commit": task.base_commit,
        "problem_statement": task.problem_statement,
        "hints_text": task.hints_text,
        "FAIL_TO_PASS": task.fail_to_pass,
        "image": task.image,
    });
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", program])
        .env("AGENTAO_INSTANCE_COST", budget.to_string())
        .env("AGENTAO_TASK_IMAGE", &task.image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so a timeout takes its children down too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::External(format!("cannot start {program:?}: {e}")))?;
    let pgid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = serde_json::to_vec(&public).unwrap_or_default();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let work = async {
        // A program that does not read its input must not block us.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        let mut out = Vec::new();
        (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut out).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((out, status))
    };
    let (exit_status, patch) = match tokio::time::timeout(wall, work).await {
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .status();
            }
            (ExitStatus::TimeLimit, String::new())
        }
        Ok(Err(e)) => return Err(AgentError::External(e.to_string())),
        Ok(Ok((out, status))) => {
            if !status.success() {
                return Err(AgentError::External(format!(
                    "{program:?} exited with {status}"
                )));
            }
            (
                ExitStatus::Submitted,
                String::from_utf8_lossy(&out).into_owned(),
            )
        }
    };
    Ok(Episode {
        instance_id: task.instance_id.clone(),
        model: format!("cmd:{program}"),
        protocol: Protocol::External,
        exit_status,
        patch,
        steps: Vec::new(),
        messages: Vec::new(),
        usage: Usage::default(),
        cost: 0.0,
        elapsed_s: started.elapsed().as_secs_f64(),
        agentao_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}
