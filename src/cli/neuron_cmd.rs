//! `agentao miner` and `agentao validator`: the networked roles on the chain named by
//! `--subtensor.network` (the local chain by default), with this wallet's hotkey.
//!
//! This file only builds what `neurons::miner::run` and `neurons::validator::run` need from the
//! settings and hands them the cancellation token (cancelled on SIGINT or SIGTERM); the loops
//! and what they decide live there. The miner also answers `Forecast` with Cerebro; the
//! validator asks for forecasts before each task and keeps their Brier scores apart
//! (`validator/forecasts.json`).

use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::agent_cmd::{ProtocolArg, protocol_for};
use super::context::{self, Inclusion, StoreArg, chain, forge_config, wallet};
use super::tasks_cmd::ranking_queue;
use super::{Interrupted, UserError, printer};
use crate::agent::AgentConfig;
use crate::config::Settings;
use crate::dataset::RecordStore;
use crate::eval::EvalConfig;
use crate::forge::repair::RepairConfig;
use crate::materialize::{MaterializeConfig, Materializer};
use crate::neurons::agents::AgentVault;
use crate::neurons::forecast::{Forecasting, MinerForecaster};
use crate::neurons::lifecycle::Backoff;
use crate::neurons::local::TaskSource;
use crate::neurons::miner::{Miner, MinerConfig};
use crate::neurons::remote::RemoteKinds;
use crate::neurons::validator::{
    AgentsConfig, AgentsReport, BundleServing, Describer, FirstSeen, MinerResult, RoundReport,
    Scores, Validator, ValidatorConfig,
};
use crate::subnet::{AnyChain, AxonConfig, Chain, ChainError, Dendrite};

#[derive(Debug, Args)]
pub struct MinerArgs {
    /// Port of the axon.
    #[arg(long = "axon.port", default_value_t = 8091)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long = "axon.ip", default_value = "0.0.0.0")]
    pub ip: String,
    /// Address validators reach this axon at, published on the chain (`serve_axon`) when it
    /// differs from the chain's entry (default: --axon.ip, unless that is 0.0.0.0 or ::).
    #[arg(long = "axon.external_ip")]
    pub external_ip: Option<std::net::IpAddr>,
    #[command(flatten)]
    pub store: StoreArg,
    /// Agent steps per task.
    #[arg(long, default_value_t = 30)]
    pub max_steps: u32,
    /// Minimum stake (TAO) of a validator this miner answers.
    #[arg(long, default_value_t = 0.0)]
    pub min_stake: f64,
    /// Seconds between metagraph refreshes.
    #[arg(long, default_value_t = 300)]
    pub sync_every: u64,
    /// `builtin` (the LLM agent) or `repair` (the model-free program-repair baseline: no
    /// model is started or called).
    #[arg(long, default_value = "builtin")]
    pub agent: String,
    /// Seconds requests in flight get to be answered when stopping (SIGINT, SIGTERM); those
    /// still running then are answered 503.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Where `owner/name` repositories are cloned from (GitHub tasks' descriptions,
    /// original-protocol tasks); git sources elsewhere are refused.
    #[arg(long, env = crate::config::env_vars::AGENTAO_GIT_BASE_URL, default_value = crate::materialize::DEFAULT_GIT_BASE_URL)]
    pub git_base_url: String,
    /// The ability (θ, logits) this miner's agent claims when it answers `Forecast` (default:
    /// the median of the agents Cerebro was trained on).
    #[arg(long = "forecast.theta")]
    pub forecast_theta: Option<f64>,
    #[command(subcommand)]
    pub action: Option<MinerAction>,
}

#[derive(Debug, clap::Subcommand)]
pub enum MinerAction {
    /// Submit an agent file (`agent_main(input) -> str`, at most 1 MiB): kept by sha256 as
    /// the next version, which the miner's axon serves to validators (`AgentCode`).
    SubmitAgent {
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

/// What the validator scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidatorMode {
    /// Send tasks to miners, whose agents solve them on the miners' machines.
    Tasks,
    /// Run the agent files miners submitted (`miner submit-agent`) on this machine, behind
    /// the model proxy in front of this validator's model.
    Agents,
}

#[derive(Debug, Args)]
pub struct ValidatorArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// `tasks` (send tasks to miners) or `agents` (fetch each miner's submitted agent file
    /// over `AgentCode` and run it here on every task of the round).
    #[arg(long, value_enum, default_value_t = ValidatorMode::Tasks)]
    pub mode: ValidatorMode,
    /// `--mode agents`: screening tasks per round; an agent resolving none of them does not
    /// run the full set.
    #[arg(long = "agents.screening", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub agents_screening: u32,
    /// `--mode agents`: tasks of the full set per round (an agent's score is the fraction it
    /// resolves).
    #[arg(long = "agents.tasks", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub agents_tasks: u32,
    /// `--mode agents`: wall clock of one agent run, in seconds.
    #[arg(long = "agents.wall", default_value_t = 1200)]
    pub agents_wall: u64,
    /// Miners asked per task (the original asked at most 15); `--mode agents` asks every
    /// miner that serves an axon.
    #[arg(long, default_value_t = 15)]
    pub sample: usize,
    /// Seconds a miner has to answer (the original gave 600).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Rounds to run, then stop (default: until interrupted).
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Seconds to wait between rounds.
    #[arg(long, default_value_t = 60)]
    pub interval: u64,
    /// Kinds of task sent to miners: `public-answer` (forged tasks, closed issues: a miner can
    /// read the answer without solving them), `none`, or `all`, comma-separated. Default: all
    /// on the local chain, `none` on any other.
    #[arg(long = "remote-task-kinds", value_parser = RemoteKinds::parse)]
    pub remote_task_kinds: Option<RemoteKinds>,
    /// Skip tasks the model-free repair baseline solved within this many candidates when
    /// forged (weak tests of an AI agent); 0 keeps them.
    #[arg(long, default_value_t = 0)]
    pub skip_repair_solved_within: u32,
    /// The dashboard (with `--rounds`, it keeps serving after the last round until Ctrl-C).
    #[command(flatten)]
    pub http: super::observe::HttpArgs,
    /// Port of the validator's axon, which serves miners the workspace bundles too large to
    /// travel inline (signed requests from registered hotkeys); its address is published on
    /// the chain. Without it such tasks go out without their bundle and miners refuse them.
    #[arg(long = "axon.port")]
    pub axon_port: Option<u16>,
    /// Address the validator's axon listens on.
    #[arg(long = "axon.ip", default_value = "0.0.0.0")]
    pub axon_ip: String,
    /// Address miners reach the validator's axon at (default as for the miner's).
    #[arg(long = "axon.external_ip")]
    pub external_ip: Option<std::net::IpAddr>,
    /// Where miners clone `owner/name` repositories from: a task harvested from GitHub goes
    /// out as its repository there at the task's base commit (miners must use the same).
    #[arg(long, env = crate::config::env_vars::AGENTAO_GIT_BASE_URL, default_value = crate::materialize::DEFAULT_GIT_BASE_URL)]
    pub git_base_url: String,
}

/// Fails early, before the engine or the model start, when the chain answers and `hotkey` is
/// not on it (a chain that does not answer is the neuron's to retry).
async fn preflight(chain: &AnyChain, hotkey: &str) -> anyhow::Result<()> {
    if let Ok(mg) = chain.metagraph().await
        && mg.by_hotkey(hotkey).is_none()
    {
        return Err(ChainError::NotRegistered {
            hotkey: hotkey.to_owned(),
            netuid: mg.netuid,
        }
        .into());
    }
    Ok(())
}

/// `fut`, or [`Interrupted`] when `cancel` fires first (the set-up before a neuron runs).
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = fut => r,
        _ = cancel.cancelled() => Err(Interrupted.into()),
    }
}

/// The address validators reach the axon at, and where it came from: `--axon.external_ip`,
/// `--axon.ip` when it names one address, else the address of the interface that routes
/// outward (behind NAT that is a private address: then `--axon.external_ip` is needed). `None`
/// keeps the chain's entry.
fn axon_address(
    listen: &str,
    external: Option<std::net::IpAddr>,
) -> Option<(std::net::IpAddr, String)> {
    if let Some(ip) = external {
        return Some((ip, "--axon.external_ip".into()));
    }
    if let Some(ip) = listen
        .parse::<std::net::IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
    {
        return Some((ip, "--axon.ip".into()));
    }
    outbound_ip().map(|ip| {
        (
            ip,
            "detected from the outward route; set --axon.external_ip if validators reach this machine at another address".into(),
        )
    })
}

/// The local address of the interface that routes to the public internet (no packet is sent:
/// a UDP socket's `connect` only picks the route).
fn outbound_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("8.8.8.8", 53)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// One line saying how a validator round went.
fn round_summary(round_id: &str, instance_id: &str, results: &[MinerResult]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for r in results {
        *counts.entry(r.outcome.kind()).or_default() += 1;
    }
    let outcomes: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let best = results
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .filter(|r| r.score > 0.0)
        .map_or_else(
            || "no miner scored".to_owned(),
            |r| format!("best uid {} scored {:.3}", r.uid, r.score),
        );
    format!(
        "round {round_id}: task {instance_id}, {} miner(s) asked: {}; {best}",
        results.len(),
        outcomes.join(", ")
    )
}

pub async fn miner(
    args: MinerArgs,
    settings: &Settings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let agents = crate::neurons::agents::MinerAgents::new(
        &settings.paths().data_dir().join("miner").join("agents"),
    );
    if let Some(MinerAction::SubmitAgent { file }) = &args.action {
        let code = std::fs::read(file)
            .map_err(|e| UserError::new(format!("cannot read {}: {e}", file.display())))?;
        crate::agent::code::check_agent_file(&code).map_err(|e| UserError::new(e.to_string()))?;
        let v = agents.submit(&code)?;
        printer::data(serde_json::to_string(&v)?);
        printer::status(format_args!(
            "agent {} is version {}; the miner's axon serves it to validators (AgentCode)",
            v.sha256, v.version
        ));
        return Ok(());
    }
    context::refuse_unreachable_model(settings)?;
    let key = wallet(settings).load_hotkey()?;
    let chain = chain(settings, Some(key.clone()), Inclusion::Wait)?;
    unless_cancelled(&cancel, preflight(&chain, &key.ss58())).await?;
    let publish =
        axon_address(&args.ip, args.external_ip).map(|(ip, source)| (ip, args.port, source));
    let repair = match args.agent.as_str() {
        "builtin" => None,
        "repair" => Some(RepairConfig {
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..RepairConfig::default()
        }),
        other => {
            return Err(
                UserError::new(format!("unknown agent {other:?}: use builtin or repair")).into(),
            );
        }
    };
    let (engine, (llm, server)) = unless_cancelled(&cancel, async {
        let llm = match &repair {
            // The client is never called: no model is started.
            Some(_) => (
                context::remote_llm(settings).unwrap_or_else(|| {
                    crate::llm::LlmClient::new(crate::llm::LlmConfig::new(
                        &format!("http://127.0.0.1:{}/v1", settings.llm.local_port),
                        &settings.llm.model,
                    ))
                }),
                None,
            ),
            None => context::llm(settings).await?,
        };
        let engine = context::engine(settings).await?;
        // Environments of the tasks validators describe are layered on the base image.
        super::image::ensure_base_image(&engine, settings, crate::sandbox::Rebuild::IfMissing)
            .await?;
        Ok((engine, llm))
    })
    .await?;
    let materializer = Materializer::new(
        engine.clone(),
        MaterializeConfig {
            index_url: settings.pip_index_url.clone(),
            git_base_url: args.git_base_url.clone(),
            ..MaterializeConfig::new(&settings.cache_dir)
        },
    );
    let miner = Miner {
        materializer: Some(std::sync::Arc::new(materializer)),
        repair,
        model_server: server,
        engine,
        agent: AgentConfig {
            protocol: protocol_for(ProtocolArg::Auto, llm.model()),
            max_steps: args.max_steps,
            budget: settings.llm.instance_cost,
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..AgentConfig::default()
        },
        llm,
        store: args.store.path(settings),
    };
    let listener = tokio::net::TcpListener::bind((args.ip.as_str(), args.port))
        .await
        .map_err(|e| UserError::new(format!("cannot listen on {}:{}: {e}", args.ip, args.port)))?;
    let cfg = MinerConfig {
        miner,
        key,
        chain,
        netuid: settings.netuid,
        listener,
        publish,
        axon: AxonConfig {
            min_stake: args.min_stake,
            ..AxonConfig::default()
        },
        sync_every: Duration::from_secs(args.sync_every.max(1)),
        grace: Duration::from_secs(args.shutdown_grace),
        retry: Backoff::default(),
        agents: (!agents.versions().is_empty()).then_some(agents),
        forecaster: Some(MinerForecaster {
            model: context::cerebro_model(settings)?,
            theta: args.forecast_theta,
        }),
    };
    crate::neurons::miner::run(cfg, cancel).await?;
    Ok(())
}

pub async fn validator(
    args: ValidatorArgs,
    settings: &Settings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    context::refuse_unreachable_model(settings)?;
    let key = wallet(settings).load_hotkey()?;
    let hotkey = key.ss58();
    let chain = chain(settings, Some(key.clone()), Inclusion::Wait)?;
    unless_cancelled(&cancel, preflight(&chain, &hotkey)).await?;
    let telemetry = super::observe::telemetry(&hotkey).await;
    let dashboard = args.http.start(settings).await?;
    let (engine, (judge, _server)) = unless_cancelled(&cancel, async {
        let engine = context::engine(settings).await?;
        super::image::ensure_base_image(&engine, settings, crate::sandbox::Rebuild::IfMissing)
            .await?;
        Ok((engine, context::llm(settings).await?))
    })
    .await?;
    if args.mode == ValidatorMode::Agents {
        let cfg = agents_config(&args, settings, engine, &judge, key, chain).await?;
        let ran = crate::neurons::validator::run_agents(cfg, cancel.clone()).await;
        return finish_validator(ran, dashboard, &telemetry, &cancel).await;
    }
    let kinds = args
        .remote_task_kinds
        .clone()
        .unwrap_or_else(|| RemoteKinds::default_for(&settings.network));
    printer::status(kinds.describe());
    let serve_bundles = match args.axon_port {
        Some(port) => Some(BundleServing {
            key: key.clone(),
            listener: tokio::net::TcpListener::bind((args.axon_ip.as_str(), port))
                .await
                .map_err(|e| UserError::new(format!("axon {}:{port}: {e}", args.axon_ip)))?,
            publish: axon_address(&args.axon_ip, args.external_ip).map(|(ip, _)| (ip, port)),
        }),
        None => None,
    };
    let cfg = ValidatorConfig {
        serve_bundles,
        validator: Validator {
            engine,
            judge: Some((judge, settings.llm.instance_cost)),
            dendrite: Dendrite::new(key),
            eval: EvalConfig {
                limits: settings.limits.clone(),
                run_id: settings.run_id.clone(),
                ..EvalConfig::default()
            },
            time_limit: Duration::from_secs(args.timeout),
            describer: Some(Describer {
                git_base_url: args.git_base_url.clone(),
                ..Describer::new(forge_config(settings))
            }),
            forecasts: Some(Forecasting::new(
                context::cerebro_model(settings)?,
                &settings.paths().forecasts(),
            )),
        },
        chain,
        hotkey,
        netuid: settings.netuid,
        store: args.store.open(settings)?,
        records: RecordStore::open(&context::records_path(settings))?,
        scores: Scores::load(&settings.paths().scores()),
        source: task_source(&args, settings),
        kinds,
        sample: args.sample,
        rounds: args.rounds,
        interval: Duration::from_secs(args.interval),
        run_id: settings.run_id.clone(),
        retry: Backoff::default(),
        report: Box::new(report_round),
    };
    let ran = crate::neurons::validator::run(cfg, cancel.clone()).await;
    finish_validator(ran, dashboard, &telemetry, &cancel).await
}

/// Where a validator's tasks come from: the store, else one task forged per package of the
/// shipped ranking.
fn task_source(args: &ValidatorArgs, settings: &Settings) -> TaskSource {
    let mut forge = forge_config(settings);
    forge.per_package = 1;
    TaskSource {
        packages: ranking_queue(0),
        forge,
        prefer_repair_solved: false,
        skip_repair_solved_within: args.skip_repair_solved_within,
    }
}

/// The end of a validator's run: its error, or the dashboard kept open when one was asked.
async fn finish_validator(
    ran: Result<(), crate::neurons::validator::ValidatorError>,
    dashboard: Option<String>,
    telemetry: &crate::telemetry::Telemetry,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if ran.is_err() {
        super::observe::error("round");
    }
    ran?;
    super::observe::finish(dashboard.as_deref(), telemetry, cancel).await;
    Ok(())
}

/// `--mode agents`: the agents' runs behind the proxy in front of `llm` (this validator's
/// model), every version kept under `validator/agents`, first sightings in
/// `validator/agents-first-seen.json`.
async fn agents_config(
    args: &ValidatorArgs,
    settings: &Settings,
    engine: crate::sandbox::Engine,
    llm: &crate::llm::LlmClient,
    key: crate::subnet::Keypair,
    chain: AnyChain,
) -> anyhow::Result<AgentsConfig> {
    use super::agent_code_cmd::{agents_vault_dir, code_run_config};
    let wall = Duration::from_secs(args.agents_wall);
    let code = code_run_config(&engine, llm, settings, wall).await?;
    let validator_dir = settings.paths().data_dir().join("validator");
    printer::status(format_args!(
        "agents mode: each round runs every miner's submitted agent on {} screening task(s), \
         then {} task(s), here; every task kind is allowed",
        args.agents_screening, args.agents_tasks
    ));
    Ok(AgentsConfig {
        hotkey: key.ss58(),
        dendrite: Dendrite::new(key),
        engine,
        code,
        eval: EvalConfig {
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..EvalConfig::default()
        },
        chain,
        netuid: settings.netuid,
        store: args.store.open(settings)?,
        records: RecordStore::open(&context::records_path(settings))?,
        scores: Scores::load(&settings.paths().scores()),
        source: task_source(args, settings),
        screening: args.agents_screening as usize,
        tasks: args.agents_tasks as usize,
        vault: AgentVault::new(&agents_vault_dir(settings)),
        first_seen: FirstSeen::load(&validator_dir.join("agents-first-seen.json")),
        fetch_timeout: AGENT_FETCH_TIMEOUT,
        fetch_concurrency: AGENT_FETCH_CONCURRENCY,
        rounds: args.rounds,
        interval: Duration::from_secs(args.interval),
        run_id: settings.run_id.clone(),
        retry: Backoff::default(),
        report: Box::new(report_agents_round),
    })
}

/// How long a miner has to send its agent file, and how many miners are asked at once.
const AGENT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
const AGENT_FETCH_CONCURRENCY: usize = 16;

/// An agents round's summary: a line per agent, the JSON for a program reading stdout.
fn report_agents_round(report: &AgentsReport<'_>) {
    if !printer::stdout_is_terminal() {
        printer::data(serde_json::to_value(report).unwrap_or_default());
    }
    printer::status(format_args!(
        "round {}: {} agent(s) run on {} screening + {} task(s); {} miner(s) skipped",
        report.round_id,
        report.agents.len(),
        report.screening.len(),
        report.full.len(),
        report.skipped.len()
    ));
    for a in report.agents {
        printer::status(format_args!(
            "  {}",
            super::agent_code_cmd::agent_line(a, report.screening.len())
        ));
    }
}

/// A round's summary: one line for a person at a terminal, the JSON for a program reading
/// stdout.
fn report_round(report: &RoundReport<'_>) {
    if !printer::stdout_is_terminal() {
        printer::data(serde_json::to_value(report).unwrap_or_default());
    }
    printer::status(round_summary(
        report.round_id,
        report.instance_id,
        report.miners,
    ));
}
