//! `agentao agent run-file` (a miner tries its agent file exactly as validators run it) and
//! the hidden `agentao agent proxy` (the model proxy, run by agentao inside its container).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::UserError;
use super::context::{self, StoreArg};
use super::printer;
use crate::agent::code::{CodeRunConfig, ProxyPlacement, proxy_image, run_agent_code};
use crate::config::Settings;
use crate::eval::{EvalConfig, evaluate};
use crate::llm::proxy::{DEFAULT_CAP_USD, ProxyConfig};
use crate::sandbox::base_image_tag;

#[derive(Debug, Args)]
pub struct RunFileArgs {
    /// The agent file: Python defining `agent_main(input: dict) -> str` (at most 1 MiB).
    pub file: PathBuf,
    /// Task id in the store.
    #[arg(long)]
    pub task: String,
    #[command(flatten)]
    pub store: StoreArg,
    /// Wall clock of the agent in seconds.
    #[arg(long, default_value_t = 1200)]
    pub wall: u64,
    /// Dollar cap of the run, enforced by the proxy.
    #[arg(long, default_value_t = DEFAULT_CAP_USD)]
    pub cap: f64,
    /// Model requests per minute the proxy allows.
    #[arg(long, default_value_t = 60)]
    pub per_minute: u32,
    /// Run the proxy in this process instead of its container (development only).
    #[arg(long)]
    pub proxy_in_process: bool,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: String,
    /// The proxy's configuration as JSON (without the key, which comes from OPENAI_API_KEY).
    #[arg(long)]
    pub config: String,
    /// Where to write the run's usage after each request.
    #[arg(long)]
    pub usage_file: Option<PathBuf>,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub exit_after: u64,
}

pub async fn run_file(args: RunFileArgs, settings: &Settings) -> anyhow::Result<()> {
    let code = std::fs::read(&args.file)
        .map_err(|e| UserError::new(format!("cannot read {}: {e}", args.file.display())))?;
    crate::agent::code::check_agent_file(&code).map_err(|e| UserError::new(e.to_string()))?;
    let task = args
        .store
        .open(settings)?
        .get(&args.task)?
        .ok_or_else(|| UserError::new(format!("unknown task {}", args.task)))?;
    let engine = context::engine(settings).await?;
    let (llm, _server) = context::llm(settings).await?;
    let mut proxy = proxy_for(&llm, settings);
    proxy.cap_usd = args.cap;
    proxy.per_minute = args.per_minute;
    let placement = if args.proxy_in_process {
        ProxyPlacement::InProcess
    } else {
        proxy_container(&engine).await?
    };
    let mut cfg = CodeRunConfig::new(&settings.run_id, proxy, placement);
    cfg.wall = Duration::from_secs(args.wall);
    cfg.limits = settings.limits.clone();
    let run = run_agent_code(&engine, &task, &code, &cfg).await?;
    let eval = EvalConfig {
        limits: settings.limits.clone(),
        run_id: settings.run_id.clone(),
        p2p: crate::eval::P2pSelection::FollowPatch,
        ..EvalConfig::default()
    };
    let verdict = evaluate(&engine, &task, &run.patch, &eval).await;
    printer::data_raw(run.patch.as_bytes());
    if !run.stderr_tail.trim().is_empty() && run.exit != crate::agent::code::CodeExit::Returned {
        printer::status(format_args!(
            "agent stderr (tail):\n{}",
            run.stderr_tail.trim_end()
        ));
    }
    printer::status(format_args!(
        "{}: agent {} {:?}; {} model requests, {} prompt + {} completion tokens, ${:.4} \
         ({} refused at the cap, {} at the rate, {} for the model); {:.1}s; verdict {:?}{}",
        task.instance_id,
        &run.agent_sha256[..12],
        run.exit,
        run.usage.requests,
        run.usage.prompt_tokens,
        run.usage.completion_tokens,
        run.usage.cost_usd,
        run.usage.refused_cap,
        run.usage.refused_rate,
        run.usage.refused_model,
        run.elapsed_s,
        verdict.outcome,
        if verdict.resolved { " (resolved)" } else { "" },
    ));
    Ok(())
}

pub async fn proxy(args: ProxyArgs, settings: &Settings) -> anyhow::Result<()> {
    let mut cfg: ProxyConfig =
        serde_json::from_str(&args.config).map_err(|e| UserError::new(format!("--config: {e}")))?;
    cfg.api_key = settings.llm.api_key.clone();
    cfg.usage_file = args.usage_file;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let serve = crate::llm::proxy::serve_forever(listener, cfg);
    match tokio::time::timeout(Duration::from_secs(args.exit_after), serve).await {
        Ok(done) => done?,
        Err(_) => printer::status(format_args!("model proxy: wall clock reached")),
    }
    Ok(())
}

/// The proxy in front of the configured model, holding its key.
fn proxy_for(llm: &crate::llm::LlmClient, settings: &Settings) -> ProxyConfig {
    let mut proxy = ProxyConfig::new(llm.base_url(), &[llm.model()], 0);
    proxy.api_key = settings.llm.api_key.clone();
    proxy
}

/// The proxy in its container: the base image plus this binary (built once per binary).
async fn proxy_container(engine: &crate::sandbox::Engine) -> anyhow::Result<ProxyPlacement> {
    let exe = std::env::current_exe()?;
    let image = proxy_image(engine, &base_image_tag().reference, &exe).await?;
    Ok(ProxyPlacement::Container { image })
}

/// How a validator runs agent files: the proxy in its container in front of `llm` (the
/// configured model), the sandbox limits of the settings, `wall` per run.
pub(super) async fn code_run_config(
    engine: &crate::sandbox::Engine,
    llm: &crate::llm::LlmClient,
    settings: &Settings,
    wall: Duration,
) -> anyhow::Result<CodeRunConfig> {
    let placement = proxy_container(engine).await?;
    let mut code = CodeRunConfig::new(&settings.run_id, proxy_for(llm, settings), placement);
    code.limits = settings.limits.clone();
    code.wall = wall;
    Ok(code)
}

/// Where a validator keeps every agent version it ran, by hash.
pub(super) fn agents_vault_dir(settings: &Settings) -> PathBuf {
    settings.paths().data_dir().join("validator").join("agents")
}

/// The example agent shipped for `local --mode agents`.
const EXAMPLE_AGENT: &str = include_str!("../../docker/agent/example_agent.py");

/// `agentao local --mode agents`: the agent files run on `task` behind the proxy in its
/// container, in front of the configured model (the embedded one without a key), scored as a
/// validator scores agents, results into the dataset.
pub async fn local_agents_round(
    engine: &crate::sandbox::Engine,
    task: &crate::tasks::Task,
    files: &[PathBuf],
    records: &mut crate::dataset::RecordStore,
    settings: &Settings,
) -> anyhow::Result<()> {
    use crate::neurons::agents::{AgentSubmission, AgentVault, AgentsRound, run_agents_round};
    let mut submissions = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let code = std::fs::read(file)
            .map_err(|e| UserError::new(format!("cannot read {}: {e}", file.display())))?;
        crate::agent::code::check_agent_file(&code)
            .map_err(|e| UserError::new(format!("{}: {e}", file.display())))?;
        submissions.push(AgentSubmission {
            hotkey: format!("local-miner-{i}"),
            uid: i as u16 + 1,
            version: 1,
            code,
            submitted_at: i as u64,
        });
    }
    if submissions.is_empty() {
        submissions.push(AgentSubmission {
            hotkey: "local-miner-0".into(),
            uid: 1,
            version: 1,
            code: EXAMPLE_AGENT.as_bytes().to_vec(),
            submitted_at: 0,
        });
    }
    let (llm, _server) = context::llm(settings).await?;
    let code = code_run_config(engine, &llm, settings, Duration::from_secs(600)).await?;
    let vault = AgentVault::new(&agents_vault_dir(settings));
    let tasks = std::slice::from_ref(task);
    let mut round = AgentsRound {
        engine,
        screening: tasks,
        full: tasks,
        code,
        eval: EvalConfig {
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..EvalConfig::default()
        },
        vault: Some(&vault),
        records: Some(records),
        validator_hotkey: "local-validator".into(),
        round_id: format!("local-agents-{}", settings.run_id),
    };
    let scores = run_agents_round(&mut round, &submissions).await;
    for s in &scores {
        printer::data(serde_json::to_string(s)?);
        printer::status(agent_line(s, tasks.len()));
    }
    Ok(())
}

/// One line saying how an agent fared in a round with `screening` screening tasks.
pub(super) fn agent_line(s: &crate::neurons::agents::AgentScore, screening: usize) -> String {
    format!(
        "agent {} of {} (uid {}): screening {}/{screening}, resolved {}/{}, ${:.4}, score {:.3}{}",
        &s.sha256[..12],
        s.hotkey,
        s.uid,
        s.screening_resolved,
        s.resolved,
        s.attempted,
        s.cost_usd,
        s.score,
        s.copy_of
            .as_deref()
            .map(|c| format!(" (copy of {})", &c[..12]))
            .unwrap_or_default()
    )
}
