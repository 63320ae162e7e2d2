//! The `subtensor` chain backend: reads the metagraph and submits weights to a subtensor node
//! over JSON-RPC. The runtime's metadata says where the calls and storage live and which
//! signed extensions to fill (`runtime`); extrinsics are built and signed here (`extrinsic`);
//! neurons decode from the `NeuronInfoRuntimeApi` (`neurons`).
//!
//! `set_weights` reads a plan first (`weights`) and refuses what the chain would refuse before
//! paying for it: the hotkey must be registered on the subnet, the version key must be at
//! least the subnet's, and the rate limit (`WeightsSetRateLimit` blocks since `LastUpdate`)
//! must have passed. On a commit-reveal subnet the weights are committed timelocked to the
//! drand round of their reveal (`epoch`, `drand`) and the chain reveals them; otherwise they
//! go in the clear. After submitting, it can wait until the account's nonce moves and the
//! weights (`LastUpdate`) or the commit (`TimelockedWeightCommits`) show on chain.

pub mod drand;
pub mod epoch;
pub mod extrinsic;
pub mod neurons;
pub mod rpc;
pub mod runtime;
pub mod weights;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parity_scale_codec::{Decode, Encode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::subnet::chain::{Chain, ChainError, Metagraph};
use crate::subnet::synapse::PROTOCOL_VERSION;
use crate::subnet::wallet::Keypair;
use extrinsic::{Era, SigningContext};
use rpc::{Rpc, from_hex, hash32, to_hex};
use runtime::{Arg, Runtime};
pub use weights::{Clock, RevealPlan, WeightsPlan, set_weights_call};

/// Blocks between inclusion (nonce moved) and finality the waits allow.
const FINALITY_BLOCKS: u32 = 3;

/// The pallet holding subnets, neurons and weights.
pub const PALLET: &str = "SubtensorModule";

/// How the backend talks to the chain.
#[derive(Debug, Clone)]
pub struct SubtensorConfig {
    pub endpoint: String,
    pub netuid: u16,
    /// The subnet's mechanism the weights are for (0: the main one).
    pub mechid: u8,
    /// Seconds per block, for the drand round of a reveal (the SDK's 12).
    pub chain_block_secs: f64,
    /// The clock the reveal round is computed from.
    pub clock: Clock,
    /// Blocks an extrinsic stays valid (the SDK's default period is 128).
    pub period: u64,
    /// Wait for the weights to land on chain (polling every `block_time`), or only submit.
    pub wait: bool,
    pub block_time: Duration,
    pub request_timeout: Duration,
}

impl SubtensorConfig {
    pub fn new(endpoint: &str, netuid: u16) -> SubtensorConfig {
        SubtensorConfig {
            endpoint: endpoint.into(),
            netuid,
            mechid: 0,
            chain_block_secs: 12.0,
            clock: Clock::System,
            period: 128,
            wait: true,
            block_time: Duration::from_secs(12),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A subtensor node, with the hotkey that signs weights (not needed to read the metagraph).
#[derive(Debug)]
pub struct SubtensorChain {
    rpc: Rpc,
    config: SubtensorConfig,
    signer: Option<Keypair>,
    /// The decoded metadata of the last runtime seen, by spec version.
    runtime: Mutex<Option<(u32, Arc<Runtime>)>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeVersion {
    spec_version: u32,
    transaction_version: u32,
}

#[derive(Debug, Deserialize)]
struct Header {
    number: String,
}

/// The head block the backend works against.
#[derive(Debug, Clone, Copy)]
struct Head {
    hash: [u8; 32],
    number: u64,
}

impl SubtensorChain {
    pub fn new(config: SubtensorConfig, signer: Option<Keypair>) -> Result<Self, ChainError> {
        Ok(SubtensorChain {
            rpc: Rpc::new(&config.endpoint, config.request_timeout)?,
            config,
            signer,
            runtime: Mutex::new(None),
        })
    }

    async fn head(&self) -> Result<Head, ChainError> {
        let hash: String = self.rpc.call("chain_getFinalizedHead", json!([])).await?;
        let header: Header = self.rpc.call("chain_getHeader", json!([hash])).await?;
        let number = u64::from_str_radix(header.number.trim_start_matches("0x"), 16)
            .map_err(|_| ChainError::Decode(format!("block number {}", header.number)))?;
        Ok(Head {
            hash: hash32(&hash)?,
            number,
        })
    }

    async fn runtime_version(&self, at: &Head) -> Result<RuntimeVersion, ChainError> {
        self.rpc
            .call("state_getRuntimeVersion", json!([to_hex(&at.hash)]))
            .await
    }

    /// The runtime's metadata at `at`, fetched again only when the spec version changes.
    async fn runtime(&self, at: &Head, spec_version: u32) -> Result<Arc<Runtime>, ChainError> {
        let mut cached = self.runtime.lock().await;
        if let Some((v, rt)) = cached.as_ref()
            && *v == spec_version
        {
            return Ok(rt.clone());
        }
        let hex: String = self
            .rpc
            .call("state_getMetadata", json!([to_hex(&at.hash)]))
            .await?;
        let rt = Arc::new(Runtime::decode(&from_hex(&hex)?)?);
        *cached = Some((spec_version, rt.clone()));
        Ok(rt)
    }

    /// A storage value at `at`, decoded; `None` when unset.
    async fn storage<T: Decode>(
        &self,
        rt: &Runtime,
        at: &Head,
        entry: &str,
        keys: &[Vec<u8>],
    ) -> Result<Option<T>, ChainError> {
        let key = rt.storage_key(PALLET, entry, keys)?;
        let value: Option<String> = self
            .rpc
            .call("state_getStorage", json!([to_hex(&key), to_hex(&at.hash)]))
            .await?;
        match value {
            None => Ok(None),
            Some(hex) => {
                let bytes = from_hex(&hex)?;
                T::decode(&mut &bytes[..])
                    .map(Some)
                    .map_err(|e| ChainError::Decode(format!("{PALLET}::{entry}: {e}")))
            }
        }
    }

    async fn next_nonce(&self, ss58: &str) -> Result<u32, ChainError> {
        self.rpc
            .call("system_accountNextIndex", json!([ss58]))
            .await
    }

    /// The head, its runtime version and the runtime's metadata: what every extrinsic needs.
    async fn at_head(&self) -> Result<(Head, RuntimeVersion, Arc<Runtime>), ChainError> {
        let head = self.head().await?;
        let version = self.runtime_version(&head).await?;
        let rt = self.runtime(&head, version.spec_version).await?;
        Ok((head, version, rt))
    }

    /// The block `uid` last set weights at (`LastUpdate`, 0 when never).
    async fn last_update(&self, rt: &Runtime, at: &Head, uid: u16) -> Result<u64, ChainError> {
        Ok(self
            .storage::<Vec<u64>>(
                rt,
                at,
                "LastUpdate",
                &[weights::storage_index(self.config.netuid, self.config.mechid).encode()],
            )
            .await?
            .unwrap_or_default()
            .get(uid as usize)
            .copied()
            .unwrap_or(0))
    }
}

impl Chain for SubtensorChain {
    async fn metagraph(&self) -> Result<Metagraph, ChainError> {
        let head = self.head().await?;
        let hex: String = self
            .rpc
            .call(
                "state_call",
                json!([
                    "NeuronInfoRuntimeApi_get_neurons_lite",
                    to_hex(&self.config.netuid.encode()),
                    to_hex(&head.hash)
                ]),
            )
            .await?;
        let neurons = neurons::decode_neurons(&from_hex(&hex)?)?;
        Ok(Metagraph {
            netuid: self.config.netuid,
            neurons: neurons.iter().map(|n| n.to_neuron()).collect(),
        })
    }

    async fn serve_axon(&self, hotkey: &str, ip: IpAddr, port: u16) -> Result<(), ChainError> {
        let signer = self.signer(hotkey)?;
        let (head, version, rt) = self.at_head().await?;
        let call = serve_axon_call(&rt, self.config.netuid, ip, port)?;
        let (hash, nonce) = self.submit(&rt, &head, &version, signer, &call).await?;
        tracing::info!(%hash, nonce, %ip, port, "serve_axon submitted");
        Ok(())
    }

    async fn set_weights(
        &self,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let signer = self.signer(hotkey)?;
        let (head, version, rt) = self.at_head().await?;
        let plan = self
            .plan(&rt, &head, hotkey, uids, weights, version_key)
            .await?;
        let netuid = plan.netuid;
        let uid = plan.uid.ok_or_else(|| ChainError::NotRegistered {
            hotkey: hotkey.into(),
            netuid,
        })?;
        if version_key < plan.required_version_key {
            return Err(ChainError::VersionKey {
                ours: version_key,
                required: plan.required_version_key,
            });
        }
        if plan.rate_limit_wait_blocks > 0 {
            return Err(ChainError::RateLimited {
                blocks_left: plan.rate_limit_wait_blocks,
            });
        }
        let Some(reveal) = &plan.commit_reveal else {
            let call = weights::clear_call(&rt, &plan)?;
            let (hash, nonce) = self.submit(&rt, &head, &version, signer, &call).await?;
            tracing::info!(%hash, netuid, uid, nonce, weights = plan.uids.len(), "set_weights submitted");
            if !self.config.wait {
                return Ok(());
            }
            return self
                .wait_for_weights(&rt, hotkey, uid, nonce, plan.last_update, &hash)
                .await;
        };
        let payload = weights::payload(&plan, signer.public());
        let commit = drand::commit(&payload, reveal.reveal_round, &mut rand_core::OsRng)?;
        let call = weights::commit_call(&rt, netuid, plan.mechid, &commit, reveal.reveal_round)?;
        let (hash, nonce) = self.submit(&rt, &head, &version, signer, &call).await?;
        tracing::info!(%hash, netuid, uid, nonce, reveal_round = reveal.reveal_round,
            reveal_block = reveal.reveal_block, "timelocked weights committed");
        if !self.config.wait {
            return Ok(());
        }
        self.wait_for_commit(&rt, signer, nonce, &commit, reveal, &hash)
            .await
    }
}

impl SubtensorChain {
    /// What `set_weights` would send for these weights, and why, without sending anything.
    pub async fn explain_weights(
        &self,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<WeightsPlan, ChainError> {
        let (head, _, rt) = self.at_head().await?;
        self.plan(&rt, &head, hotkey, uids, weights, version_key)
            .await
    }

    /// Polls once a block until the commit shows in `TimelockedWeightCommits` (success); the
    /// nonce moved without it for a few blocks is a failed call, neither moving within the era
    /// a dropped extrinsic.
    async fn wait_for_commit(
        &self,
        rt: &Runtime,
        signer: &Keypair,
        nonce: u32,
        commit: &[u8],
        reveal: &RevealPlan,
        hash: &str,
    ) -> Result<(), ChainError> {
        let mut since_included = None::<u32>;
        for _ in 0..self.config.period + FINALITY_BLOCKS as u64 + 1 {
            tokio::time::sleep(self.config.block_time).await;
            let head = self.head().await?;
            if self
                .commit_stored(rt, &head, &signer.public(), commit, reveal)
                .await?
            {
                tracing::info!(%hash, block = head.number, "timelocked weights stored");
                return Ok(());
            }
            if let Some(n) = since_included.as_mut() {
                *n += 1;
                if *n > FINALITY_BLOCKS {
                    return Err(ChainError::DispatchFailed(hash.into()));
                }
            } else if self.next_nonce(&signer.ss58()).await? > nonce {
                since_included = Some(0);
            }
        }
        Err(ChainError::NotIncluded {
            hash: hash.into(),
            blocks: self.config.period,
        })
    }
}

impl SubtensorChain {
    /// The signing key, which must be `hotkey`'s.
    fn signer(&self, hotkey: &str) -> Result<&Keypair, ChainError> {
        let signer = self.signer.as_ref().ok_or(ChainError::NoSigner)?;
        if signer.ss58() != hotkey {
            return Err(ChainError::WrongSigner {
                signer: signer.ss58(),
                hotkey: hotkey.into(),
            });
        }
        Ok(signer)
    }

    /// Signs `call` (mortal from `head`, the account's next nonce) and submits it; returns the
    /// extrinsic's hash and the nonce used.
    async fn submit(
        &self,
        rt: &Runtime,
        head: &Head,
        version: &RuntimeVersion,
        signer: &Keypair,
        call: &[u8],
    ) -> Result<(String, u32), ChainError> {
        let nonce = self.next_nonce(&signer.ss58()).await?;
        let genesis: String = self.rpc.call("chain_getBlockHash", json!([0])).await?;
        let ctx = SigningContext {
            spec_version: version.spec_version,
            transaction_version: version.transaction_version,
            genesis_hash: hash32(&genesis)?,
            era: Era::mortal(self.config.period, head.number),
            birth_hash: head.hash,
            nonce,
            tip: 0,
        };
        let xt = extrinsic::sign(rt, call, &ctx, signer)?;
        let hash: String = self
            .rpc
            .call("author_submitExtrinsic", json!([to_hex(&xt)]))
            .await?;
        Ok((hash, nonce))
    }

    /// Polls once a block until `LastUpdate[uid]` moves past `last_update` in the finalized
    /// state (success). If the account's nonce has moved but the weights have not after a few
    /// more blocks, the call failed on chain; if neither moves while the era lasts, the
    /// extrinsic was dropped.
    async fn wait_for_weights(
        &self,
        rt: &Runtime,
        hotkey: &str,
        uid: u16,
        nonce: u32,
        last_update: u64,
        hash: &str,
    ) -> Result<(), ChainError> {
        let mut since_included = None::<u32>;
        for _ in 0..self.config.period + FINALITY_BLOCKS as u64 + 1 {
            tokio::time::sleep(self.config.block_time).await;
            let head = self.head().await?;
            let now = self.last_update(rt, &head, uid).await?;
            if now > last_update {
                tracing::info!(%hash, block = now, "weights set");
                return Ok(());
            }
            if let Some(n) = since_included.as_mut() {
                *n += 1;
                if *n > FINALITY_BLOCKS {
                    return Err(ChainError::DispatchFailed(hash.into()));
                }
            } else if self.next_nonce(hotkey).await? > nonce {
                since_included = Some(0);
            }
        }
        Err(ChainError::NotIncluded {
            hash: hash.into(),
            blocks: self.config.period,
        })
    }
}

/// `SubtensorModule::serve_axon(netuid, version, ip, port, ip_type, protocol, 0, 0)`: the
/// address validators find this hotkey's axon at (protocol 4 and the SDK version our wire
/// protocol matches, as the SDK sends them).
pub fn serve_axon_call(
    rt: &Runtime,
    netuid: u16,
    ip: IpAddr,
    port: u16,
) -> Result<Vec<u8>, ChainError> {
    let (ip, ip_type) = match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 4),
        IpAddr::V6(v6) => (u128::from(v6), 6),
    };
    rt.encode_call(
        PALLET,
        "serve_axon",
        &[
            ("netuid", Arg::U(netuid as u128)),
            ("version", Arg::U(PROTOCOL_VERSION as u128)),
            ("ip", Arg::U(ip)),
            ("port", Arg::U(port as u128)),
            ("ip_type", Arg::U(ip_type)),
            ("protocol", Arg::U(4)),
            ("placeholder1", Arg::U(0)),
            ("placeholder2", Arg::U(0)),
        ],
    )
}
