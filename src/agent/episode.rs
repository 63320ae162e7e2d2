//! One agent episode: a fresh sandbox of the task's image with the bug in and its history
//! hidden, a conversation with the model (tool calls, or the text protocol for models without
//! them), limits on steps, wall clock and dollars, and the patch (`git diff`) at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info};

use super::text::{TextAction, parse_reply};
use super::tools::{self, ToolOutcome, run_tool};
use crate::llm::{Budget, LlmClient, LlmError, Message, Usage};
use crate::prompts;
use crate::sandbox::{Engine, ExecRequest, Limits, Sandbox, SandboxError, SandboxSpec};
use crate::tasks::Task;

/// How the model acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI tool calls (bash, view, search, str_replace, submit).
    ToolCalls,
    /// One fenced bash command per reply.
    Text,
    /// An outside program (`--agent cmd:<program>`).
    External,
}

/// Limits and knobs of an episode.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub max_steps: u32,
    /// Wall clock of the whole episode.
    pub wall: Duration,
    /// Timeout of one command.
    pub command_timeout: Duration,
    /// Dollars the episode may spend.
    pub budget: f64,
    pub protocol: Protocol,
    pub limits: Limits,
    pub run_id: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_steps: 30,
            wall: Duration::from_secs(600),
            command_timeout: Duration::from_secs(60),
            budget: crate::config::DEFAULT_INSTANCE_COST,
            protocol: Protocol::ToolCalls,
            limits: Limits::default(),
            run_id: crate::config::new_run_id(),
        }
    }
}

/// Why the episode ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    Submitted,
    StepLimit,
    TimeLimit,
    CostLimit,
    /// The model API failed after its retries.
    ModelError {
        message: String,
    },
}

/// One tool call or command and what it gave.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub tool: String,
    pub arguments: String,
    pub output: String,
    pub error: bool,
    pub seconds: f64,
}

/// One model turn.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub index: u32,
    pub response: Message,
    pub finish_reason: String,
    pub usage: Usage,
    pub cost: f64,
    pub latency_s: f64,
    pub attempts: u32,
    pub actions: Vec<Action>,
}

/// The result of an episode, saved as the trajectory.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub instance_id: String,
    pub model: String,
    pub protocol: Protocol,
    pub exit_status: ExitStatus,
    pub patch: String,
    pub steps: Vec<Step>,
    /// The whole conversation as sent to the model.
    pub messages: Vec<Message>,
    pub usage: Usage,
    pub cost: f64,
    pub elapsed_s: f64,
    pub agentao_version: String,
}

impl Episode {
    /// Why the model failed, when the episode ended in a model error.
    pub fn model_error(&self) -> Option<&str> {
        match &self.exit_status {
            ExitStatus::ModelError { message } => Some(message),
            _ => None,
        }
    }

    /// The trajectory as JSON of at most `cap` bytes, for the wire: the episode without its
    /// patch (which travels on its own); when over `cap`, without the conversation (whose
    /// replies the steps repeat), then without the steps too; `None` when even that is over.
    /// What was left out is named in `"truncated"`.
    pub fn trajectory_within(&self, cap: usize) -> Option<serde_json::Value> {
        let fits = |v: &serde_json::Value| serde_json::to_vec(v).is_ok_and(|b| b.len() <= cap);
        let mut v = serde_json::to_value(self).ok()?;
        v.as_object_mut()?.remove("patch");
        if fits(&v) {
            return Some(v);
        }
        for (key, note) in [("messages", "messages"), ("steps", "messages, steps")] {
            let o = v.as_object_mut()?;
            o.remove(key);
            o.insert("truncated".into(), note.into());
            if fits(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Writes `patch.diff` and `trajectory.json` into `dir`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("patch.diff"), &self.patch)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = dir.join("trajectory.json.partial");
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, dir.join("trajectory.json"))
    }
}

/// Errors that stop an episode before it can produce anything.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("preparing the task's repository failed: {0}")]
    Workspace(String),
    #[error("external agent: {0}")]
    External(String),
    #[error("agent file: {0}")]
    AgentFile(String),
}

/// Script run once in the agent's container: the task's bug goes in, and git history is
/// rebuilt as one commit so the bug cannot be read back from it.
const PREPARE: &str = r#"set -e
cd /repo
if [ -s /agentao/bug.diff ]; then git apply /agentao/bug.diff; fi
if [ -s /agentao/test.diff ]; then git apply /agentao/test.diff; fi
rm -rf .git /agentao
git init -q
printf '*.egg-info/\n__pycache__/\n.pytest_cache/\nbuild/\n.coverage*\n' >> .git/info/exclude
git add -A
git commit -qm "task"
"#;

/// Starts a sandbox of the task's image with the buggy tree at `/repo`.
pub async fn prepare_workspace(
    engine: &Engine,
    task: &Task,
    limits: &Limits,
    run_id: &str,
) -> Result<Sandbox, AgentError> {
    prepare_workspace_on(engine, task, limits, run_id, None).await
}

/// [`prepare_workspace`] with the sandbox on the Docker network `network` (agents run as
/// code: the run's internal network).
pub async fn prepare_workspace_on(
    engine: &Engine,
    task: &Task,
    limits: &Limits,
    run_id: &str,
    network: Option<&str>,
) -> Result<Sandbox, AgentError> {
    let mut spec = SandboxSpec::new(task.image.clone(), run_id.to_owned());
    spec.limits = limits.clone();
    spec.workdir = Some("/repo".into());
    spec.network = network.map(str::to_owned);
    let sb = Sandbox::start(engine, &spec).await?;
    // Uploads go to the container's own file system: the engine's copy API cannot see the
    // tmpfs at /tmp.
    sb.write_files(
        "/",
        &[
            ("agentao/bug.diff", task.bug_patch.as_bytes(), 0o644),
            ("agentao/test.diff", task.test_patch.as_bytes(), 0o644),
        ],
    )
    .await?;
    let out = sb
        .exec(&ExecRequest::shell(PREPARE).timeout(Duration::from_secs(120)))
        .await?;
    if !out.success() {
        return Err(AgentError::Workspace(format!(
            "{}{}",
            out.stdout, out.stderr
        )));
    }
    Ok(sb)
}

/// The patch of everything changed in `/repo` since the task's commit.
pub async fn repo_diff(sb: &Sandbox) -> Result<String, SandboxError> {
    let out = sb
        .exec(
            &ExecRequest::shell(
                "git add -A >/dev/null 2>&1; git diff --cached --no-color --no-ext-diff",
            )
            .workdir("/repo")
            .timeout(Duration::from_secs(60))
            .output_cap(4 << 20),
        )
        .await?;
    Ok(out.stdout)
}

/// The first messages of an episode.
pub fn opening(task: &Task, protocol: Protocol) -> Vec<Message> {
    let system = match protocol {
        Protocol::ToolCalls => prompts::get("agent_system"),
        Protocol::Text | Protocol::External => prompts::get("agent_system_text"),
    };
    let tests: String = task
        .fail_to_pass
        .iter()
        .map(|t| format!("- {t}\n"))
        .collect();
    let instance = prompts::render(
        prompts::get("agent_instance"),
        &[
            ("repo", &task.repo),
            ("version", &task.version),
            ("problem_statement", &task.problem_statement),
            ("tests", tests.trim_end()),
        ],
    );
    vec![Message::system(system), Message::user(instance)]
}

/// Runs one episode of the built-in agent on `task` with `llm`.
pub async fn solve(
    engine: &Engine,
    task: &Task,
    llm: &LlmClient,
    cfg: &AgentConfig,
) -> Result<Episode, AgentError> {
    let started = Instant::now();
    let mut limits = cfg.limits.clone();
    limits.wall = cfg.wall + Duration::from_secs(120);
    let sb = prepare_workspace(engine, task, &limits, &cfg.run_id).await?;
    let result = converse(&sb, task, llm, cfg, started).await;
    let patch = match &result {
        Ok(_) => repo_diff(&sb).await,
        Err(_) => Ok(String::new()),
    };
    let _ = sb.remove().await;
    let (exit_status, steps, messages) = result?;
    let usage = steps.iter().fold(Usage::default(), |mut u, s| {
        u.prompt_tokens += s.usage.prompt_tokens;
        u.completion_tokens += s.usage.completion_tokens;
        u.estimated |= s.usage.estimated;
        u
    });
    let episode = Episode {
        instance_id: task.instance_id.clone(),
        model: llm.model().to_owned(),
        protocol: cfg.protocol,
        exit_status,
        patch: patch?,
        // Folded from +0.0: an empty f64 sum is -0.0, which showed as `cost: -0.0`.
        cost: steps.iter().fold(0.0, |sum, s| sum + s.cost),
        steps,
        messages,
        usage,
        elapsed_s: started.elapsed().as_secs_f64(),
        agentao_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    info!(
        task = %task.instance_id,
        exit = ?episode.exit_status,
        steps = episode.steps.len(),
        cost = episode.cost,
        patch_bytes = episode.patch.len(),
        "episode finished"
    );
    Ok(episode)
}

type Conversation = (ExitStatus, Vec<Step>, Vec<Message>);

async fn converse(
    sb: &Sandbox,
    task: &Task,
    llm: &LlmClient,
    cfg: &AgentConfig,
    started: Instant,
) -> Result<Conversation, AgentError> {
    let mut messages = opening(task, cfg.protocol);
    let tool_specs = match cfg.protocol {
        Protocol::ToolCalls => tools::specs(),
        Protocol::Text | Protocol::External => Vec::new(),
    };
    let deadline = started + cfg.wall;
    let mut budget = Budget::new(cfg.budget);
    let mut steps = Vec::new();
    for index in 0.. {
        if index >= cfg.max_steps {
            return Ok((ExitStatus::StepLimit, steps, messages));
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok((ExitStatus::TimeLimit, steps, messages));
        };
        let completion =
            match tokio::time::timeout(left, llm.chat(&messages, &tool_specs, &mut budget)).await {
                Err(_) => return Ok((ExitStatus::TimeLimit, steps, messages)),
                Ok(Err(LlmError::BudgetExceeded { .. })) => {
                    return Ok((ExitStatus::CostLimit, steps, messages));
                }
                Ok(Err(e)) => {
                    return Ok((
                        ExitStatus::ModelError {
                            message: e.to_string(),
                        },
                        steps,
                        messages,
                    ));
                }
                Ok(Ok(c)) => c,
            };
        messages.push(completion.message.clone());
        let mut step = Step {
            index,
            response: completion.message.clone(),
            finish_reason: completion.finish_reason.clone(),
            usage: completion.usage,
            cost: completion.cost,
            latency_s: completion.latency_s,
            attempts: completion.attempts,
            actions: Vec::new(),
        };
        let submitted = match cfg.protocol {
            Protocol::ToolCalls => {
                tool_turn(sb, &completion.message, cfg, &mut messages, &mut step).await?
            }
            Protocol::Text | Protocol::External => {
                text_turn(
                    sb,
                    &completion.message.content,
                    cfg,
                    &mut messages,
                    &mut step,
                )
                .await?
            }
        };
        debug!(
            step = index,
            actions = step.actions.len(),
            cost = budget.spent,
            "agent step"
        );
        steps.push(step);
        if submitted {
            return Ok((ExitStatus::Submitted, steps, messages));
        }
    }
    unreachable!("the loop returns at the step limit")
}

/// Runs the tool calls of one reply; true when the model submitted.
async fn tool_turn(
    sb: &Sandbox,
    reply: &Message,
    cfg: &AgentConfig,
    messages: &mut Vec<Message>,
    step: &mut Step,
) -> Result<bool, AgentError> {
    if reply.tool_calls.is_empty() {
        let note = "No tool was called. Use the tools to inspect and edit the repository; call `submit` when the fix is done.";
        messages.push(Message::user(note));
        step.actions.push(Action {
            tool: String::new(),
            arguments: String::new(),
            output: note.into(),
            error: true,
            seconds: 0.0,
        });
        return Ok(false);
    }
    let mut submitted = false;
    for call in &reply.tool_calls {
        let t = Instant::now();
        let outcome = run_tool(sb, &call.name, &call.arguments, cfg.command_timeout).await?;
        let (output, error) = match outcome {
            ToolOutcome::Output(o) => (o, false),
            ToolOutcome::Error(e) => (format!("error: {e}"), true),
            ToolOutcome::Submit => {
                submitted = true;
                ("submitted".to_owned(), false)
            }
        };
        messages.push(Message::tool(&call.id, output.clone()));
        step.actions.push(Action {
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            output,
            error,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(submitted)
}

/// Runs the one command of a text-protocol reply; true when the model submitted.
async fn text_turn(
    sb: &Sandbox,
    reply: &str,
    cfg: &AgentConfig,
    messages: &mut Vec<Message>,
    step: &mut Step,
) -> Result<bool, AgentError> {
    let t = Instant::now();
    match parse_reply(reply) {
        Err(reason) => {
            let text = prompts::render(prompts::get("agent_format_error"), &[("reason", &reason)]);
            messages.push(Message::user(text.clone()));
            step.actions.push(Action {
                tool: "format_error".into(),
                arguments: String::new(),
                output: text,
                error: true,
                seconds: 0.0,
            });
            Ok(false)
        }
        Ok(TextAction::Submit) => {
            step.actions.push(Action {
                tool: "submit".into(),
                arguments: String::new(),
                output: "submitted".into(),
                error: false,
                seconds: 0.0,
            });
            Ok(true)
        }
        Ok(TextAction::Run(cmd)) => {
            let ToolOutcome::Output(out) = tools::bash(sb, &cmd, cfg.command_timeout).await? else {
                unreachable!("bash always returns output")
            };
            messages.push(Message::user(out.clone()));
            step.actions.push(Action {
                tool: "bash".into(),
                arguments: cmd,
                output: out,
                error: false,
                seconds: t.elapsed().as_secs_f64(),
            });
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(steps: usize, chars: usize) -> Episode {
        let reply = Message::assistant("x".repeat(chars));
        Episode {
            instance_id: "t".into(),
            model: "m".into(),
            protocol: Protocol::Text,
            exit_status: ExitStatus::StepLimit,
            patch: "diff --git a/f b/f\n".into(),
            steps: (0..steps)
                .map(|i| Step {
                    index: i as u32,
                    response: reply.clone(),
                    finish_reason: "stop".into(),
                    usage: Usage::default(),
                    cost: 0.0,
                    latency_s: 0.1,
                    attempts: 1,
                    actions: Vec::new(),
                })
                .collect(),
            messages: vec![reply.clone(); steps],
            usage: Usage::default(),
            cost: 0.0,
            elapsed_s: 1.0,
            agentao_version: "0".into(),
        }
    }

    #[test]
    fn the_wire_trajectory_drops_the_conversation_then_the_steps_to_fit() {
        let small = episode(2, 10).trajectory_within(1 << 20).unwrap();
        assert_eq!(small["steps"].as_array().unwrap().len(), 2);
        assert_eq!(small["messages"].as_array().unwrap().len(), 2);
        assert!(small.get("patch").is_none() && small.get("truncated").is_none());

        // Conversation and steps each about 5 KB: only one of them fits in 8 KB.
        let e = episode(5, 1000);
        let cut = e.trajectory_within(8000).unwrap();
        assert!(cut.get("messages").is_none());
        assert_eq!(cut["steps"].as_array().unwrap().len(), 5);
        assert_eq!(cut["truncated"], "messages");
        let bare = e.trajectory_within(1000).unwrap();
        assert!(bare.get("steps").is_none() && bare["truncated"] == "messages, steps");
        assert_eq!(bare["exit_status"]["kind"], "step_limit", "{bare}");
        assert!(e.trajectory_within(10).is_none());
    }
}
