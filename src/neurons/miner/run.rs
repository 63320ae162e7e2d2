//! The miner, unattended: check the registration, publish the axon's address when the chain
//! has another one, serve until the token is cancelled, following the metagraph every
//! `sync_every`. The axon admits as many requests at once as the engine's sandbox budget
//! (`--max-sandboxes`) runs agents; one more is answered 503 (busy) at once, never queued.
//!
//! Stopping: the axon stops taking requests, the ones in flight get `grace` to be answered,
//! and those still running then are answered 503 and named in the log (their agents' sandboxes
//! are removed by their guards); the background work (the metagraph sync) is stopped by the
//! same deadline. Chain calls go through the one retry policy; the sync giving up ends the
//! miner with one line.

use std::net::IpAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Miner;
use crate::neurons::lifecycle::{Background, Backoff, RetryError, retry};
use crate::subnet::{AnyChain, Axon, AxonConfig, Chain, ChainError, Keypair};

/// What [`run`] needs, built by the caller.
pub struct MinerConfig {
    pub miner: Miner,
    pub key: Keypair,
    pub chain: AnyChain,
    pub netuid: u16,
    pub listener: tokio::net::TcpListener,
    /// The address to publish on the chain when its entry differs, and where it came from.
    pub publish: Option<(IpAddr, u16, String)>,
    /// Answers `Forecast` with Cerebro when set.
    pub forecaster: Option<crate::neurons::forecast::MinerForecaster>,
    /// Serves `AgentCode` from these submitted agent files when set.
    pub agents: Option<crate::neurons::agents::MinerAgents>,
    /// The axon's limits; its concurrency is set from the sandbox budget.
    pub axon: AxonConfig,
    pub sync_every: Duration,
    /// How long requests in flight get to be answered once stopping.
    pub grace: Duration,
    pub retry: Backoff,
}

/// Why the miner stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error("chain")]
    Chain(#[source] ChainError),
    #[error("chain: {what} still failing after {attempts} attempts over {elapsed:.0?}; giving up")]
    ChainDown {
        what: String,
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: ChainError,
    },
}

/// A chain call under the retry policy; `None` when cancelled meanwhile.
async fn chain_call<T, Fut>(
    what: &str,
    policy: &Backoff,
    cancel: &CancellationToken,
    op: impl FnMut() -> Fut,
) -> Result<Option<T>, MinerError>
where
    Fut: Future<Output = Result<T, ChainError>>,
{
    match retry(what, policy, cancel, ChainError::is_transient, op).await {
        Ok(v) => Ok(Some(v)),
        Err(RetryError::Cancelled { .. }) => Ok(None),
        Err(RetryError::Permanent(e)) => Err(MinerError::Chain(e)),
        Err(RetryError::GaveUp {
            what,
            attempts,
            elapsed,
            last,
        }) => Err(MinerError::ChainDown {
            what,
            attempts,
            elapsed,
            last,
        }),
    }
}

/// Serves until `cancel` is cancelled (then `Ok`, once stopped) or the chain is gone for
/// longer than the retry policy allows.
pub async fn run(cfg: MinerConfig, cancel: CancellationToken) -> Result<(), MinerError> {
    let hotkey = cfg.key.ss58();
    let Some(mut mg) =
        chain_call("metagraph", &cfg.retry, &cancel, || cfg.chain.metagraph()).await?
    else {
        return Ok(());
    };
    let Some(me) = mg.by_hotkey(&hotkey) else {
        return Err(MinerError::Chain(ChainError::NotRegistered {
            hotkey,
            netuid: cfg.netuid,
        }));
    };
    tracing::info!(uid = me.uid, %hotkey, "miner registered");
    let local = cfg
        .listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some((ip, port, source)) = &cfg.publish
        && me.ip == ip.to_string()
        && me.port == *port
    {
        tracing::info!("the chain already has this axon at {ip}:{port} ({source})");
    }
    if let Some((ip, port, source)) = cfg.publish.clone()
        && (me.ip != ip.to_string() || me.port != port)
    {
        let published = chain_call("serve_axon", &cfg.retry, &cancel, || {
            cfg.chain.serve_axon(&hotkey, ip, port)
        })
        .await?;
        if published.is_none() {
            return Ok(());
        }
        tracing::info!("published axon {ip}:{port} on the chain ({source})");
        match chain_call("metagraph", &cfg.retry, &cancel, || cfg.chain.metagraph()).await? {
            Some(fresh) => mg = fresh,
            None => return Ok(()),
        }
    }
    let budget = cfg.miner.engine.max_sandboxes();
    let axon_cfg = AxonConfig {
        max_concurrent: budget,
        max_waiting: 0,
        ..cfg.axon
    };
    tracing::info!(
        max_concurrent = budget,
        "axon admits as many requests as the sandbox budget"
    );
    let axon = cfg.miner.serve_on(Axon::new(cfg.key, mg, axon_cfg));
    let axon = match cfg.forecaster {
        Some(f) => f.serve_on(axon),
        None => axon,
    };
    let axon = match cfg.agents {
        Some(agents) => {
            let agents = std::sync::Arc::new(agents);
            axon.agent_code(move |s| {
                let agents = agents.clone();
                async move { agents.answer(s.body) }
            })
        }
        None => axon,
    };
    tracing::info!("miner axon on {local}");
    let metagraph = axon.metagraph_handle();
    let serving = axon.serve_gracefully(cfg.listener);

    let background = Background::new();
    let stop_sync = cancel.child_token();
    let (chain, policy, every) = (
        cfg.chain,
        cfg.retry,
        cfg.sync_every.max(Duration::from_secs(1)),
    );
    let token = stop_sync.clone();
    let mut sync = background.spawn("metagraph sync", async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = token.cancelled() => return Ok(()),
            }
            match chain_call("metagraph refresh", &policy, &token, || chain.metagraph()).await? {
                Some(mg) => *metagraph.write().expect("metagraph lock") = mg,
                None => return Ok(()),
            }
        }
    });
    let ended = tokio::select! {
        _ = cancel.cancelled() => None,
        r = &mut sync => Some(r),
    };
    stop_sync.cancel();
    tracing::info!(grace = ?cfg.grace, "miner stopping: answering the requests in flight");
    let unanswered = serving.shutdown(cfg.grace).await;
    let stragglers = background.shutdown(cfg.grace).await;
    tracing::info!(
        refused_at_deadline = unanswered.len(),
        background_aborted = stragglers.len(),
        "miner stopped"
    );
    match ended {
        Some(Ok(Err(e))) => Err(e),
        _ => Ok(()),
    }
}
