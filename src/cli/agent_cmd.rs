//! `agentao agent solve` (one agent episode on a stored task) and `agentao llm serve` (the
//! embedded model server).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::UserError;
use super::context::{self, StoreArg};
use super::printer;
use crate::agent::{AgentConfig, Protocol, run_external, solve};
use crate::config::Settings;
use crate::llm::local::LocalModel;
use crate::llm::lookup;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    /// Tool calls when the model table says the model has them, else text.
    Auto,
    Tools,
    Text,
}

#[derive(Debug, Args)]
pub struct SolveArgs {
    /// Task id in the store.
    #[arg(long)]
    pub task: String,
    /// Read the task from this JSON Lines file instead of the store.
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArg,
    /// `builtin` (the LLM agent) or `cmd:<program>` (reads the task JSON on stdin, writes a
    /// patch to stdout).
    #[arg(long, default_value = "builtin")]
    pub agent: String,
    #[arg(long, value_enum, default_value_t = ProtocolArg::Auto)]
    pub protocol: ProtocolArg,
    #[arg(long, default_value_t = 30)]
    pub max_steps: u32,
    /// Wall clock of the episode in seconds.
    #[arg(long, default_value_t = 600)]
    pub wall: u64,
    /// Where to write patch.diff and trajectory.json (default: <data dir>/runs/<run id>/<task>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Run the agent once on a task; print the patch and its cost.
    Solve(SolveArgs),
    /// Run an agent file (`agent_main(input) -> str`) on a task exactly as validators do: in
    /// the task's sandbox behind the model proxy, then judge its diff; print the verdict.
    RunFile(super::agent_code_cmd::RunFileArgs),
    /// The model proxy of agents run as code (started by agentao inside its container).
    #[command(hide = true)]
    Proxy(super::agent_code_cmd::ProxyArgs),
}

#[derive(Debug, Subcommand)]
pub enum LlmCmd {
    /// Install the embedded model and its server into the cache (once; builds llama.cpp).
    Install,
    /// Serve the embedded model (SmolLM2-135M) as an OpenAI-compatible API on loopback,
    /// installing it into the cache first if needed.
    Serve {
        /// Port on loopback (default: `--llm-port`, 8642).
        #[arg(long)]
        port: Option<u16>,
    },
}

/// The configured remote model, when an API key or base URL is set.
pub fn protocol_for(arg: ProtocolArg, model: &str) -> Protocol {
    match arg {
        ProtocolArg::Tools => Protocol::ToolCalls,
        ProtocolArg::Text => Protocol::Text,
        ProtocolArg::Auto => match lookup(model) {
            Some(m) if !m.tool_calls => Protocol::Text,
            _ => Protocol::ToolCalls,
        },
    }
}

pub async fn run_agent(cmd: AgentCmd, settings: &Settings) -> anyhow::Result<()> {
    let args = match cmd {
        AgentCmd::Solve(args) => args,
        AgentCmd::RunFile(args) => return super::agent_code_cmd::run_file(args, settings).await,
        AgentCmd::Proxy(args) => return super::agent_code_cmd::proxy(args, settings).await,
    };
    let task = match &args.tasks {
        Some(file) => crate::tasks::read_jsonl(file)?
            .into_iter()
            .find(|t| t.instance_id == args.task),
        None => args.store.open(settings)?.get(&args.task)?,
    }
    .ok_or_else(|| UserError::new(format!("unknown task {}", args.task)))?;
    if task.image.trim().is_empty() && !args.agent.starts_with("cmd:") {
        return Err(
            UserError::new(crate::eval::RunError::NoImage(task.instance_id).to_string())
                .hint("a SWE-bench row needs its environment built into an image first")
                .into(),
        );
    }
    let out = args.out.clone().unwrap_or_else(|| {
        settings
            .paths()
            .run_dir(&settings.run_id)
            .join(&task.instance_id)
    });
    let wall = std::time::Duration::from_secs(args.wall);
    let episode = if let Some(program) = args.agent.strip_prefix("cmd:") {
        run_external(program, &task, wall, settings.llm.instance_cost).await?
    } else if args.agent == "builtin" {
        let engine = context::engine(settings).await?;
        let (llm, _server) = context::llm(settings).await?;
        let cfg = AgentConfig {
            max_steps: args.max_steps,
            wall,
            budget: settings.llm.instance_cost,
            protocol: protocol_for(args.protocol, llm.model()),
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..AgentConfig::default()
        };
        solve(&engine, &task, &llm, &cfg).await?
    } else {
        return Err(UserError::new(format!(
            "unknown agent {:?}: use builtin or cmd:<program>",
            args.agent
        ))
        .into());
    };
    episode.save(&out)?;
    printer::data_raw(episode.patch.as_bytes());
    printer::status(format_args!(
        "{}: {:?} after {} steps, {} prompt + {} completion tokens{}, ${:.4}, {:.1}s; trajectory in {}",
        task.instance_id,
        episode.exit_status,
        episode.steps.len(),
        episode.usage.prompt_tokens,
        episode.usage.completion_tokens,
        if episode.usage.estimated {
            " (estimated)"
        } else {
            ""
        },
        episode.cost,
        episode.elapsed_s,
        out.display()
    ));
    Ok(())
}

pub async fn run_llm(cmd: LlmCmd, settings: &Settings) -> anyhow::Result<()> {
    let local = LocalModel::new(&settings.cache_dir);
    let port = match cmd {
        LlmCmd::Install => {
            if !local.is_installed() {
                printer::status(format_args!(
                    "installing the embedded model into {} (building llama.cpp for {} takes minutes)",
                    local.dir.display(),
                    local.variant.name()
                ));
            }
            let build = super::progress::install_model(&local, settings).await?;
            printer::status(format_args!(
                "the embedded model is installed in {}: llama-cpp-python {}, variant {} ({})",
                local.dir.display(),
                build.llama_cpp_python,
                build.variant,
                build.system_info
            ));
            return Ok(());
        }
        LlmCmd::Serve { port } => port.unwrap_or(settings.llm.local_port),
    };
    let local = context::installed_model(settings).await?;
    let server = local.serve(port).await?;
    printer::status(format_args!(
        "serving {} at {} (variant {}; first reply: {:?})",
        crate::llm::EMBEDDED_MODEL,
        server.base_url,
        server.variant,
        server.first_reply
    ));
    server.wait().await?;
    Ok(())
}
