//! The validator, unattended: rounds until `rounds` ran or the token is cancelled. A round:
//! the metagraph, a task (from the store, forged when it is empty), up to `sample` miners that
//! serve an axon, [`Validator::round`], weights. Chain calls go through the one retry policy
//! (`lifecycle::retry`): a transient error is retried with backoff, and only one that outlasts
//! the policy's bound ends the validator, with one line. A refused `set_weights` (rate limit,
//! ...) is logged and the loop goes on. A task whose kind is not among `kinds` (the remote
//! task kinds) is passed over, and the rotation moves on to the next one. Cancelling stops at once: a round in progress is cut
//! short (the evaluations in flight are dropped and their containers removed; every answer
//! scored so far is already saved, so a restart carries on from it).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Scores, Validator, ValidatorError};
use crate::dataset::RecordStore;
use crate::neurons::lifecycle::{Backoff, RetryError, retry};
use crate::neurons::local::{TaskSource, WEIGHTS_VERSION_KEY, pick_task};
use crate::neurons::remote::RemoteKinds;
use crate::subnet::{AnyChain, Chain, ChainError, Metagraph, Neuron};
use crate::tasks::TaskStore;

/// What [`run`] needs, built by the caller.
pub struct ValidatorConfig {
    pub validator: Validator,
    pub chain: AnyChain,
    /// This validator's hotkey (ss58) and subnet.
    pub hotkey: String,
    pub netuid: u16,
    pub store: TaskStore,
    pub records: RecordStore,
    pub scores: Scores,
    pub source: TaskSource,
    /// Kinds of task sent to miners (`--remote-task-kinds`).
    pub kinds: RemoteKinds,
    /// Miners asked per round.
    pub sample: usize,
    /// Rounds to run; `None` until cancelled.
    pub rounds: Option<u64>,
    /// Wait between rounds.
    pub interval: Duration,
    /// Prefix of the round ids.
    pub run_id: String,
    /// The retry policy of chain calls.
    pub retry: Backoff,
    /// Receives each round's report.
    pub report: Box<dyn Fn(&RoundReport<'_>) + Send + Sync>,
    /// Where bundles over the inline cap are served to miners (`bundles.rs`); `None` serves
    /// none (a miner then refuses such a task).
    pub serve_bundles: Option<BundleServing>,
}

/// The validator's axon for bundles: its key, a bound listener, and the address published on
/// the chain for miners to reach it at (kept when the chain has it already).
pub struct BundleServing {
    pub key: crate::subnet::Keypair,
    pub listener: tokio::net::TcpListener,
    pub publish: Option<(std::net::IpAddr, u16)>,
}

/// What a round did, for the operator: its id, the task, each miner's result and, when
/// forecasts are asked, the miners' Brier standings.
#[derive(Debug, serde::Serialize)]
pub struct RoundReport<'a> {
    pub round_id: &'a str,
    pub instance_id: &'a str,
    pub miners: &'a [super::MinerResult],
    pub forecast_standings: Option<Vec<crate::neurons::forecast::Standing>>,
}

/// A chain call under the retry policy; `None` when cancelled meanwhile.
async fn chain_call<T, Fut>(
    what: &str,
    policy: &Backoff,
    cancel: &CancellationToken,
    op: impl FnMut() -> Fut,
) -> Result<Option<T>, ValidatorError>
where
    Fut: Future<Output = Result<T, ChainError>>,
{
    match retry(what, policy, cancel, ChainError::is_transient, op).await {
        Ok(v) => Ok(Some(v)),
        Err(RetryError::Cancelled { .. }) => Ok(None),
        Err(RetryError::Permanent(e)) => Err(ValidatorError::Chain(e)),
        Err(RetryError::GaveUp {
            what,
            attempts,
            elapsed,
            last,
        }) => Err(ValidatorError::ChainDown {
            what,
            attempts,
            elapsed,
            last,
        }),
    }
}

/// Up to `k` of `items`, chosen uniformly at random (a partial Fisher-Yates shuffle).
pub(crate) fn sample<T>(mut items: Vec<T>, k: usize) -> Vec<T> {
    use rand_core::RngCore;
    let k = k.min(items.len());
    for i in 0..k {
        let j = i + (rand_core::OsRng.next_u64() % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(k);
    items
}

/// Runs rounds until `cfg.rounds` ran or `cancel` is cancelled; `Ok` in both cases.
pub async fn run(
    mut cfg: ValidatorConfig,
    cancel: CancellationToken,
) -> Result<(), ValidatorError> {
    let bundles = match cfg.serve_bundles.take() {
        Some(b) => serve_bundles(&cfg, b, &cancel).await?,
        None => None,
    };
    let result = rounds(&mut cfg, &cancel, bundles.as_ref().map(|b| &b.1)).await;
    if let Some((server, _)) = bundles {
        server.abort();
    }
    result
}

/// Publishes the bundle axon's address (when the chain lacks it) and serves the describer's
/// shelf on it, with the metagraph the blacklist reads (refreshed every round).
async fn serve_bundles(
    cfg: &ValidatorConfig,
    b: BundleServing,
    cancel: &CancellationToken,
) -> Result<Option<(tokio::task::JoinHandle<()>, MetagraphHandle)>, ValidatorError> {
    let Some(describer) = &cfg.validator.describer else {
        return Ok(None);
    };
    if let Some((ip, port)) = b.publish {
        let Some(mg) =
            chain_call("metagraph", &cfg.retry, cancel, || cfg.chain.metagraph()).await?
        else {
            return Ok(None);
        };
        let known = mg
            .by_hotkey(&cfg.hotkey)
            .is_some_and(|n| n.ip == ip.to_string() && n.port == port);
        if !known
            && chain_call("serve_axon", &cfg.retry, cancel, || {
                cfg.chain.serve_axon(&cfg.hotkey, ip, port)
            })
            .await?
            .is_none()
        {
            return Ok(None);
        }
        tracing::info!("bundles over the inline cap are served at {ip}:{port}");
    }
    let axon = describer.shelf.serve_on(crate::subnet::Axon::new(
        b.key,
        Default::default(),
        super::BundleShelf::axon_config(),
    ));
    let handle = axon.metagraph_handle();
    Ok(Some((axon.serve(b.listener), handle)))
}

type MetagraphHandle = std::sync::Arc<std::sync::RwLock<crate::subnet::Metagraph>>;

async fn rounds(
    cfg: &mut ValidatorConfig,
    cancel: &CancellationToken,
    bundles: Option<&MetagraphHandle>,
) -> Result<(), ValidatorError> {
    let cancel = cancel.clone();
    let mut round = 0u64;
    let mut records_seen = cfg.records.len();
    // Tasks passed over for their kind, so the rotation moves on to the next one.
    let mut skipped = 0u64;
    let on_chain = OnChain {
        chain: &cfg.chain,
        hotkey: &cfg.hotkey,
        netuid: cfg.netuid,
        retry: &cfg.retry,
    };
    while cfg.rounds.is_none_or(|n| round < n) {
        if !pause_before(round, cfg.interval, &cancel).await {
            break;
        }
        let Some(mg) = registered_metagraph(&on_chain, &cancel).await? else {
            break;
        };
        if let Some(handle) = bundles
            && let Ok(mut shared) = handle.write()
        {
            *shared = mg.clone();
        }
        let miners = sample(serving_miners(&mg, &cfg.hotkey), cfg.sample);
        let round_id = format!("{}-{round}", cfg.run_id);
        round += 1;
        if miners.is_empty() {
            tracing::warn!("no miner serves an axon on this subnet; waiting");
            continue;
        }
        let task = tokio::select! {
            t = pick_task(&cfg.validator.engine, &cfg.store, &cfg.source, records_seen + skipped) => t?,
            _ = cancel.cancelled() => break,
        };
        if !cfg.kinds.allows(&task) {
            skipped += 1;
            tracing::warn!(task = %task.instance_id, exposure = crate::tasks::Exposure::of(&task).as_str(),
                "not sent: its kind is not among the remote task kinds; waiting");
            continue;
        }
        let played = tokio::select! {
            r = cfg.validator.round(&task, &miners, &mut cfg.scores, &mut cfg.records, &round_id) => Some(r?),
            _ = cancel.cancelled() => None,
        };
        records_seen = cfg.records.len();
        let Some(results) = played else {
            tracing::warn!(round = %round_id, "round cut short by the shutdown; the answers scored so far are saved");
            break;
        };
        let forecast_standings = cfg
            .validator
            .forecasts
            .as_ref()
            .map(|f| f.book.lock().map(|b| b.standings()).unwrap_or_default());
        (cfg.report)(&RoundReport {
            round_id: &round_id,
            instance_id: &task.instance_id,
            miners: &results,
            forecast_standings,
        });
        if !set_weights(&on_chain, &cfg.scores, &mg, &round_id, &cancel).await? {
            break;
        }
    }
    Ok(())
}

/// What a validator loop needs of the chain: the chain, this validator's hotkey and subnet,
/// and the retry policy of its calls.
pub(super) struct OnChain<'a> {
    pub chain: &'a AnyChain,
    pub hotkey: &'a str,
    pub netuid: u16,
    pub retry: &'a Backoff,
}

/// Waits `interval` before every round but the first; `false` when cancelled meanwhile.
pub(super) async fn pause_before(
    round: u64,
    interval: Duration,
    cancel: &CancellationToken,
) -> bool {
    if round > 0 {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return false,
        }
    }
    !cancel.is_cancelled()
}

/// The metagraph, with this validator on it (an error when it is not); `None` when cancelled.
pub(super) async fn registered_metagraph(
    c: &OnChain<'_>,
    cancel: &CancellationToken,
) -> Result<Option<Metagraph>, ValidatorError> {
    let Some(mg) = chain_call("metagraph", c.retry, cancel, || c.chain.metagraph()).await? else {
        return Ok(None);
    };
    if mg.by_hotkey(c.hotkey).is_none() {
        return Err(ValidatorError::Chain(ChainError::NotRegistered {
            hotkey: c.hotkey.to_owned(),
            netuid: c.netuid,
        }));
    }
    Ok(Some(mg))
}

/// The miners a validator asks: every neuron but itself without a validator permit and with
/// an axon.
pub(super) fn serving_miners(mg: &Metagraph, hotkey: &str) -> Vec<Neuron> {
    mg.neurons
        .iter()
        .filter(|n| n.hotkey != hotkey && !n.validator_permit && n.port != 0 && !n.ip.is_empty())
        .cloned()
        .collect()
}

/// Sets the weights of `scores` over `mg`; a refusal (rate limit, ...) is logged and the loop
/// goes on. `false` when cancelled meanwhile.
pub(super) async fn set_weights(
    c: &OnChain<'_>,
    scores: &Scores,
    mg: &Metagraph,
    round_id: &str,
    cancel: &CancellationToken,
) -> Result<bool, ValidatorError> {
    let (uids, weights) = scores.weights(mg);
    let set = chain_call("set_weights", c.retry, cancel, || {
        c.chain
            .set_weights(c.hotkey, &uids, &weights, WEIGHTS_VERSION_KEY)
    })
    .await;
    match set {
        Ok(Some(())) => tracing::info!(round = %round_id, "weights set"),
        Ok(None) => return Ok(false),
        Err(ValidatorError::Chain(e)) if e.is_refusal() => {
            tracing::warn!(error = %e, "weights not set this round")
        }
        Err(e) => return Err(e),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::sample;

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
