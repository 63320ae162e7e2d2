//! `agentao miner` and `agentao validator`: the networked roles on the chain named by
//! `--subtensor.network` (the local chain by default), with this wallet's hotkey.
//!
//! The miner serves its axon until interrupted, following the metagraph. The validator loops:
//! metagraph, a task (from the store, forged when empty), up to `--sample` miners, evaluation and
//! scores, moving averages, weights (a rate-limited or refused `set_weights` is logged and the
//! loop goes on), the dataset. The miner also answers `Forecast` with Cerebro; the validator
//! asks for forecasts before each task and keeps their Brier scores apart
//! (`validator/forecasts.json`).

use std::time::Duration;

use clap::Args;

use super::UserError;
use super::agent_cmd::{ProtocolArg, protocol_for};
use super::context::{self, Inclusion, StoreArg, chain, forge_config, wallet};
use super::printer;
use super::tasks_cmd::ranking_queue;
use crate::agent::AgentConfig;
use crate::config::Settings;
use crate::dataset::RecordStore;
use crate::eval::EvalConfig;
use crate::neurons::forecast::{Forecasting, MinerForecaster};
use crate::neurons::local::{TaskSource, WEIGHTS_VERSION_KEY, pick_task};
use crate::neurons::miner::Miner;
use crate::neurons::validator::{MinerResult, Scores, Validator};
use crate::subnet::{Axon, AxonConfig, Chain, Dendrite, Metagraph, Neuron};

#[derive(Debug, Args)]
pub struct MinerArgs {
    /// Port of the axon.
    #[arg(long = "axon.port", default_value_t = 8091)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long = "axon.ip", default_value = "0.0.0.0")]
    pub ip: String,
    /// Address validators reach this axon at, published on the chain (`serve_axon`) when it
    /// differs from the chain's entry (default: --axon.ip, unless that is 0.0.0.0 or ::; then
    /// the address of the interface that routes outward, said when published).
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
    /// The ability (θ, logits) this miner's agent claims when it answers `Forecast` (default:
    /// the median of the agents Cerebro was trained on).
    #[arg(long = "forecast.theta")]
    pub forecast_theta: Option<f64>,
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
    /// The dashboard (with `--rounds`, it keeps serving after the last round until Ctrl-C).
    #[command(flatten)]
    pub http: super::observe::HttpArgs,
}

/// The neuron of `hotkey`, or a clear error saying how to register.
fn registered<'a>(mg: &'a Metagraph, hotkey: &str, netuid: u16) -> anyhow::Result<&'a Neuron> {
    mg.by_hotkey(hotkey).ok_or_else(|| {
        UserError::new(format!(
            "hotkey {hotkey} is not registered on netuid {netuid}"
        ))
        .hint("register it: `agentao subnet register` on the local chain, btcli on a real network")
        .into()
    })
}

/// The address validators reach the axon at, and where it came from: `--axon.external_ip`,
/// `--axon.ip` when it names one address, else the address of the interface that routes
/// outward (behind NAT that is a private address: then `--axon.external_ip` is needed), else
/// the chain's current address.
fn axon_address(args: &MinerArgs, me: &Neuron) -> anyhow::Result<(std::net::IpAddr, String)> {
    if let Some(ip) = args.external_ip {
        return Ok((ip, "--axon.external_ip".into()));
    }
    if let Some(ip) = args
        .ip
        .parse::<std::net::IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
    {
        return Ok((ip, "--axon.ip".into()));
    }
    if let Some(ip) = outbound_ip() {
        return Ok((
            ip,
            "detected from the outward route; set --axon.external_ip if validators reach this machine at another address".into(),
        ));
    }
    match me.ip.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => Ok((
            ip,
            "the chain's address kept, none detected; set --axon.external_ip to change it".into(),
        )),
        _ => Err(
            UserError::new("cannot tell which address to publish for the axon")
                .hint("set --axon.external_ip to the address validators reach this machine at")
                .into(),
        ),
    }
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

/// Up to `k` of `items`, chosen uniformly at random (a partial Fisher-Yates shuffle).
fn sample<T>(mut items: Vec<T>, k: usize) -> Vec<T> {
    use rand_core::RngCore;
    let k = k.min(items.len());
    for i in 0..k {
        let j = i + (rand_core::OsRng.next_u64() % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(k);
    items
}

pub async fn miner(args: MinerArgs, settings: &Settings) -> anyhow::Result<()> {
    context::refuse_unreachable_model(settings)?;
    let key = wallet(settings).load_hotkey()?;
    let hotkey = key.ss58();
    let chain = chain(settings, Some(key.clone()), Inclusion::Wait)?;
    let mut mg = chain.metagraph().await?;
    let me = registered(&mg, &hotkey, settings.netuid)?;
    tracing::info!(uid = me.uid, %hotkey, "miner registered");
    let (ip, source) = axon_address(&args, me)?;
    if me.ip != ip.to_string() || me.port != args.port {
        chain.serve_axon(&hotkey, ip, args.port).await?;
        tracing::info!(%ip, port = args.port, "axon address published");
        mg = chain.metagraph().await?;
        printer::status(format_args!(
            "published axon {ip}:{} on the chain ({source})",
            args.port
        ));
    } else {
        printer::status(format_args!(
            "the chain already has this axon at {ip}:{} ({source})",
            args.port
        ));
    }
    let engine = context::engine(settings).await?;
    let (llm, server) = context::llm(settings).await?;
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
    let cfg = AxonConfig {
        min_stake: args.min_stake,
        ..AxonConfig::default()
    };
    let forecaster = MinerForecaster {
        model: context::cerebro_model(settings)?,
        theta: args.forecast_theta,
    };
    let axon = forecaster.serve_on(miner.serve_on(Axon::new(key, mg, cfg)));
    let metagraph = axon.metagraph_handle();
    let listener = tokio::net::TcpListener::bind((args.ip.as_str(), args.port))
        .await
        .map_err(|e| UserError::new(format!("cannot listen on {}:{}: {e}", args.ip, args.port)))?;
    printer::status(format_args!("miner axon on {}:{}", args.ip, args.port));
    let serving = axon.serve(listener);
    loop {
        tokio::time::sleep(Duration::from_secs(args.sync_every.max(1))).await;
        match chain.metagraph().await {
            Ok(mg) => *metagraph.write().expect("metagraph lock") = mg,
            Err(e) => tracing::warn!(error = %e, "metagraph refresh failed; keeping the last one"),
        }
        if serving.is_finished() {
            anyhow::bail!("the axon stopped");
        }
    }
}

pub async fn validator(args: ValidatorArgs, settings: &Settings) -> anyhow::Result<()> {
    context::refuse_unreachable_model(settings)?;
    let key = wallet(settings).load_hotkey()?;
    let hotkey = key.ss58();
    let chain = chain(settings, Some(key.clone()), Inclusion::Wait)?;
    let engine = context::engine(settings).await?;
    super::image::ensure_base_image(&engine, settings, crate::sandbox::Rebuild::IfMissing).await?;
    let store = args.store.open(settings)?;
    let mut records = RecordStore::open(&context::records_path(settings))?;
    let mut scores = Scores::load(&settings.paths().scores());
    let telemetry = super::observe::telemetry(&hotkey).await;
    let dashboard = args.http.start(settings).await?;
    let (judge, _server) = context::llm(settings).await?;
    let validator = Validator {
        engine: engine.clone(),
        judge: Some((judge, settings.llm.instance_cost)),
        dendrite: Dendrite::new(key),
        eval: EvalConfig {
            limits: settings.limits.clone(),
            run_id: settings.run_id.clone(),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(args.timeout),
        forecasts: Some(Forecasting::new(
            context::cerebro_model(settings)?,
            &settings.paths().forecasts(),
        )),
    };
    let mut forge = forge_config(settings);
    forge.per_package = 1;
    let source = TaskSource {
        packages: ranking_queue(0),
        forge,
    };
    let mut round = 0u64;
    while args.rounds.is_none_or(|n| round < n) {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(args.interval)).await;
        }
        let mg = chain.metagraph().await?;
        registered(&mg, &hotkey, settings.netuid)?;
        let serving: Vec<Neuron> = mg
            .neurons
            .iter()
            .filter(|n| {
                n.hotkey != hotkey && !n.validator_permit && n.port != 0 && !n.ip.is_empty()
            })
            .cloned()
            .collect();
        let miners = sample(serving, args.sample);
        let round_id = format!("{}-{round}", settings.run_id);
        round += 1;
        if miners.is_empty() {
            tracing::warn!("no miner serves an axon on this subnet; waiting");
            continue;
        }
        let task = (pick_task(&engine, &store, &source, records.len()).await)
            .inspect_err(|_| super::observe::error("task"))?;
        let results = validator
            .round(&task, &miners, &mut scores, &mut records, &round_id)
            .await
            .inspect_err(|_| super::observe::error("round"))?;
        let forecasts = validator
            .forecasts
            .as_ref()
            .map(|f| f.book.lock().map(|b| b.standings()).unwrap_or_default());
        // A person at a terminal reads the summary; a program reading stdout gets the JSON.
        if !printer::stdout_is_terminal() {
            printer::data(serde_json::json!({
                "round_id": round_id,
                "instance_id": task.instance_id,
                "miners": results,
                "forecast_standings": forecasts,
            }));
        }
        printer::status(round_summary(&round_id, &task.instance_id, &results));
        let (uids, weights) = scores.weights(&mg);
        match chain
            .set_weights(&hotkey, &uids, &weights, WEIGHTS_VERSION_KEY)
            .await
        {
            Ok(()) => tracing::info!(round = %round_id, "weights set"),
            Err(e) if e.is_refusal() => {
                super::observe::error("weights_refused");
                tracing::warn!(error = %e, "weights not set this round")
            }
            Err(e) => return Err(e.into()),
        }
    }
    super::observe::finish(dashboard.as_deref(), &telemetry).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{round_summary, sample};
    use crate::neurons::validator::{AnswerOutcome, MinerResult};
    use crate::subnet::CallFailure;

    #[test]
    fn a_round_is_summed_up_in_one_line() {
        let result = |uid, outcome, score| MinerResult {
            uid,
            hotkey: String::new(),
            status_code: 200,
            latency_s: 1.0,
            patch_bytes: 0,
            resolved: false,
            outcome,
            charged: true,
            judged: None,
            duplicate: false,
            score,
            record_seq: 0,
            model_error: None,
        };
        let line = round_summary(
            "r-1",
            "t1",
            &[
                result(
                    1,
                    AnswerOutcome::Evaluated(crate::eval::Outcome::Resolved),
                    0.9,
                ),
                result(
                    2,
                    AnswerOutcome::NoAnswer {
                        kind: CallFailure::Unreachable,
                        message: String::new(),
                    },
                    0.0,
                ),
            ],
        );
        assert_eq!(
            line,
            "round r-1: task t1, 2 miner(s) asked: 1 resolved, 1 unreachable; best uid 1 scored 0.900"
        );
    }

    #[test]
    fn sampling_takes_k_distinct_items_and_reaches_them_all() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut s = sample((0..20).collect::<Vec<u32>>(), 3);
            assert_eq!(s.len(), 3);
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3, "distinct");
            seen.extend(s);
        }
        assert_eq!(seen.len(), 20, "every miner gets asked sometimes");
        assert_eq!(sample(vec![1, 2], 15).len(), 2);
    }
}
