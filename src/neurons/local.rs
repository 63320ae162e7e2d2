//! One local subnet round, end to end on this machine: a task (from the store, or forged from
//! PyPI), a validator and a miner registered on the local chain, the task sent over the signed
//! wire protocol to the miner's axon, the built-in agent solving it with the configured model
//! (the embedded one by default), the patch evaluated in a fresh container, the score, the
//! moving average, weights on the local chain, and the (problem, solution, score) record; the
//! miner answers the validator's `Forecast` first, and both forecasts go into the record.
//! Beside it, a second miner may answer with the model-free repair baseline: same wire, same
//! harness, same scoring.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::forecast::{Forecasting, MinerForecaster};
use super::miner::Miner;
use super::validator::{MinerResult, Scores, Validator};
use crate::agent::AgentConfig;
use crate::config::Paths;
use crate::dataset::RecordStore;
use crate::eval::EvalConfig;
use crate::forge::repair::RepairConfig;
use crate::forge::{Forge, ForgeConfig};
use crate::llm::LlmClient;
use crate::llm::local::SharedServer;
use crate::sandbox::Engine;
use crate::subnet::{
    Axon, AxonConfig, Chain, Dendrite, Keypair, LocalChain, Neuron, Wallet, normalize_weights,
};
use crate::tasks::{Task, TaskStore};

/// Where a round's task comes from when the store has none.
#[derive(Debug, Clone)]
pub struct TaskSource {
    /// Packages to forge from (`name` or `name==version`), in order.
    pub packages: Vec<(String, Option<String>)>,
    pub forge: ForgeConfig,
    /// Prefer tasks the repair baseline solved when forged (the local round shows a
    /// resolved answer even without a model key).
    pub prefer_repair_solved: bool,
    /// Leave out tasks the repair baseline solved within this many candidates (a weak test of
    /// an AI agent); 0 keeps them all.
    pub skip_repair_solved_within: u32,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RoundConfig {
    pub agent: AgentConfig,
    pub eval: EvalConfig,
    /// Where the local subnet lives: its wallets (the validator's and the miner's hotkeys),
    /// the local chain and the validator's scores.
    pub paths: Paths,
    pub netuid: u16,
    /// The task store the miner looks tasks up in.
    pub store: PathBuf,
    /// The embedded model server behind the round's model, when this process runs it (the
    /// miner restarts it if it dies).
    pub model_server: Option<SharedServer>,
    /// A second miner beside the agent's, answering with the model-free repair baseline
    /// (so a machine without a model key still sees a patch judged, scored and weighted).
    pub repair_miner: Option<RepairConfig>,
}

/// What the round did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub round_id: String,
    pub instance_id: String,
    pub validator_hotkey: String,
    pub miners: Vec<MinerResult>,
    /// The weights set on the local chain: (uid, u16 weight).
    pub weights: Vec<(u16, u16)>,
}

/// Errors of a round.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("no task: every package was skipped ({0})")]
    NoTask(String),
    #[error("forging a task")]
    Forge(#[from] crate::forge::ForgeError),
    #[error("task store")]
    Store(#[from] crate::tasks::store::StoreError),
    #[error("agent")]
    Agent(#[from] crate::agent::AgentError),
    #[error("dataset")]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("package index")]
    Pypi(#[from] crate::python::PypiError),
    #[error("local wallet")]
    Wallet(#[from] crate::subnet::WalletError),
    #[error("local chain")]
    Chain(#[from] crate::subnet::ChainError),
    #[error("validator")]
    Validator(#[from] super::validator::ValidatorError),
    #[error("forecast model")]
    Cerebro(#[from] crate::cerebro::CerebroError),
    #[error("miner axon: {0}")]
    Axon(std::io::Error),
}

/// Picks a stored task (the `rotation`-th, cycling), forging one when the store is empty. A
/// stored task whose environment image is gone (after `image gc`, or on another machine) gets
/// it rebuilt first (`Forge::prepare_store`).
pub async fn pick_task(
    engine: &Engine,
    store: &TaskStore,
    source: &TaskSource,
    rotation: u64,
) -> Result<Task, RoundError> {
    let mut stored = store.all(None)?;
    let forge = Forge::new(engine, source.forge.clone())?;
    let too_easy = |t: &Task| {
        t.repair
            .as_ref()
            .is_some_and(|r| r.solved && r.repair_candidates <= source.skip_repair_solved_within)
    };
    if source.skip_repair_solved_within > 0 {
        stored.retain(|t| !too_easy(t));
    }
    if source.prefer_repair_solved && stored.iter().any(repair_solved) {
        stored.retain(repair_solved);
    }
    if !stored.is_empty() {
        let task = &stored[(rotation % stored.len() as u64) as usize];
        if engine.image_exists(&task.image).await.unwrap_or(false) {
            return Ok(task.clone());
        }
        tracing::info!(task = %task.instance_id, image = %task.image, "environment image missing; rebuilding");
        forge.prepare_store(store).await?;
        return store
            .get(&task.instance_id)?
            .ok_or_else(|| RoundError::NoTask(format!("{} left the store", task.instance_id)));
    }
    let mut reasons = Vec::new();
    for (name, version) in &source.packages {
        let report = forge
            .forge_package(name, version.as_deref(), Some(store))
            .await?;
        let mut made = Vec::new();
        for id in &report.task_ids {
            made.extend(store.get(id)?);
        }
        if source.skip_repair_solved_within > 0 {
            made.retain(|t| !too_easy(t));
        }
        if source.prefer_repair_solved && made.iter().any(repair_solved) {
            made.retain(repair_solved);
        }
        if let Some(t) = made.into_iter().next() {
            crate::telemetry::capture(super::events::task_forged(
                name,
                &t.mutation_kind,
                report.wall_seconds,
            ));
            return Ok(t);
        }
        reasons.push(format!(
            "{name}: {}",
            report.skipped.unwrap_or_else(|| "no task".into())
        ));
    }
    Err(RoundError::NoTask(reasons.join("; ")))
}

fn repair_solved(t: &Task) -> bool {
    t.repair.as_ref().is_some_and(|r| r.solved)
}

/// The hotkey `name` of the local subnet's wallets, made on first use.
fn local_key(paths: &Paths, name: &str) -> Result<Keypair, RoundError> {
    let wallet = Wallet::new(&paths.local_wallets(), name, "default");
    if wallet.hotkey_path().is_file() {
        Ok(wallet.load_hotkey()?)
    } else {
        Ok(wallet.create_hotkey()?)
    }
}

/// One subnet round on this machine, over the real wire: the validator and the miner are
/// registered on the local chain, the miner serves its axon on loopback, the validator's
/// dendrite sends the signed task, the miner's agent solves it in a sandbox, the validator
/// evaluates the returned patch in a fresh container, scores it, updates the moving average,
/// sets weights on the local chain and appends the record.
pub async fn run_round(
    engine: &Engine,
    task: &Task,
    llm: &LlmClient,
    records: &mut RecordStore,
    cfg: &RoundConfig,
    round_id: &str,
) -> Result<RoundReport, RoundError> {
    let validator_key = local_key(&cfg.paths, "validator")?;
    let chain = LocalChain::new(&cfg.paths.local_chain(), cfg.netuid);
    let neuron = |key: &Keypair, port: u16, validator: bool| Neuron {
        uid: 0,
        hotkey: key.ss58(),
        coldkey: String::new(),
        stake: if validator { 1000.0 } else { 0.0 },
        ip: "127.0.0.1".into(),
        port,
        validator_permit: validator,
    };
    chain.register(neuron(&validator_key, 0, true))?;
    // The agent's miner, and the repair baseline's beside it when asked for: each its own
    // hotkey, uid and axon.
    let mut entrants = vec![("miner", None)];
    if let Some(rc) = &cfg.repair_miner {
        entrants.push(("miner-repair", Some(rc.clone())));
    }
    let mut listeners = Vec::new();
    let mut miner_uids = Vec::new();
    for (name, repair) in entrants {
        let key = local_key(&cfg.paths, name)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(RoundError::Axon)?;
        let port = listener.local_addr().map_err(RoundError::Axon)?.port();
        miner_uids.push(chain.register(neuron(&key, port, false))?);
        listeners.push((key, listener, repair));
    }
    let metagraph = chain.metagraph().await?;
    let model = crate::cerebro::model_or_shipped(&cfg.paths.cerebro_model())?;
    let mut serving = Vec::new();
    for (key, listener, repair) in listeners {
        let miner = Miner {
            engine: engine.clone(),
            llm: llm.clone(),
            agent: cfg.agent.clone(),
            store: cfg.store.clone(),
            model_server: cfg.model_server.clone(),
            repair,
            // The local round's miners share the validator's store.
            materializer: None,
        };
        let forecaster = MinerForecaster {
            model: model.clone(),
            theta: None,
        };
        let axon = forecaster.serve_on(miner.serve_on(Axon::new(
            key,
            metagraph.clone(),
            AxonConfig::default(),
        )));
        serving.push(AbortOnDrop(axon.serve(listener)));
    }

    let validator = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(validator_key.clone()),
        eval: cfg.eval.clone(),
        time_limit: cfg.agent.wall + Duration::from_secs(150),
        judge: Some((llm.clone(), cfg.agent.budget)),
        describer: None,
        forecasts: Some(Forecasting::new(model, &cfg.paths.forecasts())),
    };
    let mut scores = Scores::load(&cfg.paths.scores());
    let miners: Vec<Neuron> = metagraph
        .neurons
        .iter()
        .filter(|n| miner_uids.contains(&n.uid))
        .cloned()
        .collect();
    let results = validator
        .round(task, &miners, &mut scores, records, round_id)
        .await?;
    drop(serving);

    let (uids, weights) = scores.weights(&metagraph);
    chain
        .set_weights(&validator_key.ss58(), &uids, &weights, WEIGHTS_VERSION_KEY)
        .await?;
    let (uids, weights) = normalize_weights(&uids, &weights)?;
    Ok(RoundReport {
        round_id: round_id.to_owned(),
        instance_id: task.instance_id.clone(),
        validator_hotkey: validator_key.ss58(),
        miners: results,
        weights: uids.into_iter().zip(weights).collect(),
    })
}

/// Aborts a spawned task when dropped (the miner's axon ends with the round, on every path).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The version key this validator sets weights with.
pub const WEIGHTS_VERSION_KEY: u64 = 1;

/// A default wall clock for a local round's agent.
pub const LOCAL_AGENT_WALL: Duration = Duration::from_secs(300);
