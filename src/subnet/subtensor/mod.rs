//! The `subtensor` chain backend: reads the metagraph and submits `set_weights` to a subtensor
//! node over JSON-RPC. The runtime's metadata says where the call and storage live and which
//! signed extensions to fill (`runtime`); extrinsics are built and signed here (`extrinsic`);
//! neurons decode from the `NeuronInfoRuntimeApi` (`neurons`).
//!
//! `set_weights` checks what the chain would refuse before paying for it: the hotkey must be
//! registered on the subnet, the subnet must not require commit-reveal (this backend sends
//! weights in the clear), the version key must be at least the subnet's, and the rate limit
//! (`WeightsSetRateLimit` blocks since `LastUpdate`) must have passed. After submitting, it can
//! wait until the account's nonce moves and `LastUpdate` shows the new weights.

pub mod extrinsic;
pub mod neurons;
pub mod rpc;
pub mod runtime;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parity_scale_codec::{Decode, Encode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::subnet::chain::{Chain, ChainError, Metagraph, normalize_weights};
use crate::subnet::synapse::PROTOCOL_VERSION;
use crate::subnet::wallet::Keypair;
use extrinsic::{Era, SigningContext};
use rpc::{Rpc, from_hex, hash32, to_hex};
use runtime::{Arg, Runtime};

/// The pallet holding subnets, neurons and weights.
pub const PALLET: &str = "SubtensorModule";

/// How the backend talks to the chain.
#[derive(Debug, Clone)]
pub struct SubtensorConfig {
    pub endpoint: String,
    pub netuid: u16,
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
            .storage::<Vec<u64>>(rt, at, "LastUpdate", &[self.config.netuid.encode()])
            .await?
            .unwrap_or_default()
            .get(uid as usize)
            .copied()
            .unwrap_or(0))
    }

    /// `uid`'s last update and the blocks left before it may set weights again (0 when it may
    /// now).
    async fn rate_limit(
        &self,
        rt: &Runtime,
        at: &Head,
        uid: u16,
    ) -> Result<(u64, u64), ChainError> {
        let last = self.last_update(rt, at, uid).await?;
        let limit = self
            .storage::<u64>(
                rt,
                at,
                "WeightsSetRateLimit",
                &[self.config.netuid.encode()],
            )
            .await?
            .unwrap_or(0);
        // The SDK sets weights only while `blocks since last update > rate limit`.
        let since = at.number.saturating_sub(last);
        Ok((last, (limit + 1).saturating_sub(since)))
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
        let (uids, weights) = normalize_weights(uids, weights)?;
        let netuid = self.config.netuid;
        let (head, version, rt) = self.at_head().await?;
        let uid = self
            .storage::<u16>(
                &rt,
                &head,
                "Uids",
                &[netuid.encode(), signer.public().to_vec()],
            )
            .await?
            .ok_or_else(|| ChainError::NotRegistered {
                hotkey: hotkey.into(),
                netuid,
            })?;
        if self
            .storage::<bool>(&rt, &head, "CommitRevealWeightsEnabled", &[netuid.encode()])
            .await?
            .unwrap_or(false)
        {
            return Err(ChainError::CommitReveal(netuid));
        }
        let required = self
            .storage::<u64>(&rt, &head, "WeightsVersionKey", &[netuid.encode()])
            .await?
            .unwrap_or(0);
        if version_key < required {
            return Err(ChainError::VersionKey {
                ours: version_key,
                required,
            });
        }
        let (last_update, blocks_left) = self.rate_limit(&rt, &head, uid).await?;
        if blocks_left > 0 {
            return Err(ChainError::RateLimited { blocks_left });
        }

        let call = set_weights_call(&rt, netuid, &uids, &weights, version_key)?;
        let (hash, nonce) = self.submit(&rt, &head, &version, signer, &call).await?;
        tracing::info!(%hash, netuid, uid, nonce, weights = uids.len(), "set_weights submitted");
        if !self.config.wait {
            return Ok(());
        }
        self.wait_for_weights(&rt, hotkey, uid, nonce, last_update, &hash)
            .await
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
        /// Blocks between inclusion (nonce moved) and finality we wait for.
        const FINALITY_BLOCKS: u32 = 3;
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

/// `SubtensorModule::set_weights(netuid, dests, weights, version_key)`, encoded by the metadata.
pub fn set_weights_call(
    rt: &Runtime,
    netuid: u16,
    uids: &[u16],
    weights: &[u16],
    version_key: u64,
) -> Result<Vec<u8>, ChainError> {
    let seq = |v: &[u16]| Arg::Seq(v.iter().map(|x| Arg::U(*x as u128)).collect());
    rt.encode_call(
        PALLET,
        "set_weights",
        &[
            ("netuid", Arg::U(netuid as u128)),
            ("dests", seq(uids)),
            ("weights", seq(weights)),
            ("version_key", Arg::U(version_key as u128)),
        ],
    )
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
