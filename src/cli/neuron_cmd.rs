//! `agentao miner` and `agentao validator`: the networked roles on the chain named by
//! `--subtensor.network` (the local chain by default), with this wallet's hotkey.
//!
//! This file only builds what `neurons::miner::run` and `neurons::validator::run` need from the
//! settings and hands them the cancellation token (cancelled on SIGINT or SIGTERM); the loops
//! and what they decide live there.

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
use crate::neurons::lifecycle::Backoff;
use crate::neurons::local::TaskSource;
use crate::neurons::miner::{Miner, MinerConfig};
use crate::neurons::validator::{Scores, Validator, ValidatorConfig};
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
    /// Seconds requests in flight get to be answered when stopping (SIGINT, SIGTERM); those
    /// still running then are answered 503.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,
}

#[derive(Debug, Args)]
pub struct ValidatorArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Miners asked per task (the original asked at most 15).
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

pub async fn miner(
    args: MinerArgs,
    settings: &Settings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let key = wallet(settings).load_hotkey()?;
    let chain = chain(settings, Some(key.clone()), Inclusion::Wait)?;
    unless_cancelled(&cancel, preflight(&chain, &key.ss58())).await?;
    let listen_ip: Option<std::net::IpAddr> = args.ip.parse().ok();
    let publish = args
        .external_ip
        .or(listen_ip.filter(|ip| !ip.is_unspecified()))
        .map(|ip| (ip, args.port));
    let (engine, (llm, server)) = unless_cancelled(&cancel, async {
        Ok((
            context::engine(settings).await?,
            context::llm(settings).await?,
        ))
    })
    .await?;
    let miner = Miner {
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
    printer::status(format_args!("miner axon on {}:{}", args.ip, args.port));
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
    };
    crate::neurons::miner::run(cfg, cancel).await?;
    Ok(())
}

pub async fn validator(
    args: ValidatorArgs,
    settings: &Settings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let key = wallet(settings).load_hotkey()?;
    let hotkey = key.ss58();
    let chain = chain(settings, Some(key.clone()), Inclusion::Wait)?;
    unless_cancelled(&cancel, preflight(&chain, &hotkey)).await?;
    let (engine, (judge, _server)) = unless_cancelled(&cancel, async {
        let engine = context::engine(settings).await?;
        super::image::ensure_base_image(&engine, settings, crate::sandbox::Rebuild::IfMissing)
            .await?;
        Ok((engine, context::llm(settings).await?))
    })
    .await?;
    let mut forge = forge_config(settings);
    forge.per_package = 1;
    let cfg = ValidatorConfig {
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
        },
        chain,
        hotkey,
        netuid: settings.netuid,
        store: args.store.open(settings)?,
        records: RecordStore::open(&context::records_path(settings))?,
        scores: Scores::load(&settings.paths().scores()),
        source: TaskSource {
            packages: ranking_queue(0),
            forge,
        },
        sample: args.sample,
        rounds: args.rounds,
        interval: Duration::from_secs(args.interval),
        run_id: settings.run_id.clone(),
        retry: Backoff::default(),
        report: Box::new(|summary: serde_json::Value| printer::data(&summary)),
    };
    crate::neurons::validator::run(cfg, cancel).await?;
    Ok(())
}
