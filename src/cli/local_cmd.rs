//! `agentao local`: one subnet round on this machine with the embedded defaults — base image,
//! a forged task, a validator and a miner on the local chain talking over the signed wire
//! protocol, the miner's agent with the local model, evaluation, score, weights, dataset record,
//! export; beside the agent's miner, a second miner answers with the model-free repair
//! baseline (`--no-repair-miner` leaves it out). A round in which the miner's model failed is recorded, then exits non-zero with the
//! cause.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::agent_cmd::{ProtocolArg, protocol_for};
use super::context::{self, StoreArg, forge_config};
use super::printer;
use super::progress::Steps;
use super::tasks_cmd::{parse_package_spec, ranking_queue};
use crate::agent::AgentConfig;
use crate::config::Settings;
use crate::dataset::{ExportOptions, RecordStore, export};
use crate::eval::EvalConfig;
use crate::forge::repair::RepairConfig;
use crate::neurons::local::{RoundConfig, TaskSource, pick_task, run_round};

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Packages to forge from when the store has no task (`name` or `name==version`;
    /// default: the shipped ranking).
    #[arg(long = "package")]
    pub package: Vec<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Agent steps.
    #[arg(long, default_value_t = 8)]
    pub max_steps: u32,
    /// Agent wall clock in seconds.
    #[arg(long, default_value_t = 300)]
    pub wall: u64,
    /// Dataset export folder (default: <data dir>/dataset/export).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Run only the agent's miner, without the repair baseline's miner beside it.
    #[arg(long)]
    pub no_repair_miner: bool,
    /// After the round, serve the dashboard (at --http.port, any free port when not given) and
    /// keep it open until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    #[command(flatten)]
    pub http: super::observe::HttpArgs,
    /// `remote` (the miner's axon answers with its agent) or `agents` (the miner's agent
    /// file runs on the validator's side, behind the model proxy with the embedded model).
    #[arg(long, value_enum, default_value_t = LocalMode::Remote)]
    pub mode: LocalMode,
    /// The agent file(s) of `--mode agents`, in submission order (default: the shipped
    /// example agent).
    #[arg(long = "agent-file")]
    pub agent_file: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalMode {
    Remote,
    Agents,
}

pub async fn run(args: LocalArgs, settings: &Settings) -> anyhow::Result<()> {
    let engine = context::engine(settings).await?;
    super::image::ensure_base_image(&engine, settings, crate::sandbox::Rebuild::IfMissing).await?;

    let store = args.store.open(settings)?;
    let records_path = context::records_path(settings);
    let mut records = RecordStore::open(&records_path)?;
    let packages: Vec<(String, Option<String>)> = if args.package.is_empty() {
        ranking_queue(0)
    } else {
        args.package.iter().map(|p| parse_package_spec(p)).collect()
    };
    let mut forge = forge_config(settings);
    forge.per_package = 2;
    forge.max_candidates = 12;

    let steps = Steps::new("choosing a task (forging one if the store is empty)");
    let source = TaskSource {
        packages,
        forge,
        prefer_repair_solved: !args.no_repair_miner,
        skip_repair_solved_within: 0,
    };
    let mut cfg = RoundConfig {
        agent: AgentConfig {
            max_steps: args.max_steps,
            wall: Duration::from_secs(args.wall),
            budget: settings.llm.instance_cost,
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..AgentConfig::default()
        },
        eval: EvalConfig {
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..EvalConfig::default()
        },
        paths: settings.paths(),
        netuid: settings.netuid,
        store: args.store.path(settings),
        model_server: None,
        repair_miner: (!args.no_repair_miner).then(|| RepairConfig {
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..RepairConfig::default()
        }),
    };
    let task = pick_task(&engine, &store, &source, records.len()).await;
    steps.finish();
    let task = task?;
    printer::status(format_args!(
        "task {} ({} {})",
        task.instance_id, task.package, task.pypi_version
    ));
    if args.mode == LocalMode::Agents {
        return super::agent_code_cmd::local_agents_round(
            &engine,
            &task,
            &args.agent_file,
            &mut records,
            settings,
        )
        .await;
    }

    let steps = Steps::new("starting the model");
    let llm = context::llm(settings).await;
    steps.finish();
    let (llm, server) = llm?;
    cfg.model_server = server;
    cfg.agent.protocol = protocol_for(ProtocolArg::Auto, llm.model());
    let steps = Steps::new(&format!(
        "validator -> miner axon; agent solving with {}; validator evaluating",
        llm.model()
    ));
    let round_id = format!("local-{}", settings.run_id);
    let report = run_round(&engine, &task, &llm, &mut records, &cfg, &round_id).await;
    steps.finish();
    let report = report?;
    printer::data(serde_json::to_string(&report)?);

    let out = args
        .export
        .unwrap_or_else(|| settings.paths().dataset_export());
    // The round's tasks stay in rotation: their answers are withheld from the export.
    let opts = ExportOptions {
        withhold: store
            .all(None)?
            .into_iter()
            .map(|t| t.instance_id)
            .collect(),
        ..ExportOptions::default()
    };
    let store = RecordStore::open(&records_path)?;
    let exported = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || export(&store, &out, &opts)).await??
    };
    printer::data(serde_json::to_string(&exported)?);
    for m in &report.miners {
        printer::status(format_args!(
            "round {}: {} -> miner uid {} (status {}, {:.1}s): {}, score {:.3}",
            report.round_id,
            report.instance_id,
            m.uid,
            m.status_code,
            m.latency_s,
            m.outcome.kind(),
            m.score
        ));
    }
    printer::status(format_args!(
        "weights on the local chain: {:?}; dataset: {} rows in {}",
        report.weights,
        exported.total_rows,
        out.display()
    ));
    if args.serve {
        let addr = std::net::SocketAddr::new(args.http.ip, args.http.port.unwrap_or(0));
        let url = super::observe::serve_dashboard(addr, settings).await?;
        super::observe::finish(
            Some(&url),
            &crate::telemetry::Telemetry::off(),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await;
    }
    // A round whose model stopped answering proves nothing about the agent: not a success.
    // (A model that answered but made no patch is a normal score of 0.)
    if let Some((uid, cause)) = report
        .miners
        .iter()
        .find_map(|m| m.model_error.as_ref().map(|e| (m.uid, e)))
    {
        anyhow::bail!("the model of miner uid {uid} failed during the round: {cause}");
    }
    Ok(())
}
