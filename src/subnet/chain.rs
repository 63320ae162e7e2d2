//! The chain behind a trait: the metagraph (uids, hotkeys, stake, axon addresses, validator
//! permits) and `set_weights`. The `local` backend keeps the metagraph in a JSON file that
//! `agentao subnet register` edits and appends weights to a log: the embedded default and
//! what tests use.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of a chain backend.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a metagraph: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("weights: {0}")]
    BadWeights(String),
    #[error("{endpoint}: {message}")]
    Rpc { endpoint: String, message: String },
    #[error("chain data: {0}")]
    Decode(String),
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("no hotkey to sign with: set_weights needs the validator's wallet")]
    NoSigner,
    #[error("the wallet's hotkey {signer} cannot set weights for {hotkey}")]
    WrongSigner { signer: String, hotkey: String },
    #[error("hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered { hotkey: String, netuid: u16 },
    #[error("netuid {0} runs no epochs (tempo 0): timelocked weights would never be revealed")]
    NoEpochs(u16),
    #[error("timelock: {0}")]
    Timelock(String),
    #[error("version key {ours} is below the subnet's required {required}")]
    VersionKey { ours: u64, required: u64 },
    #[error("too soon to set weights: {blocks_left} more blocks (WeightsSetRateLimit)")]
    RateLimited { blocks_left: u64 },
    #[error("extrinsic {hash} was not included within {blocks} blocks")]
    NotIncluded { hash: String, blocks: u64 },
    #[error("extrinsic {0} was included but the weights did not change (the call failed on chain)")]
    DispatchFailed(String),
}

impl ChainError {
    /// Whether this is a refusal of what was asked (bad weights, wrong or missing key, not
    /// registered, a commit-reveal subnet without epochs, version key, rate limit): checked before anything was
    /// submitted, and the caller's to fix or wait out.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ChainError::BadWeights(_)
                | ChainError::NoSigner
                | ChainError::WrongSigner { .. }
                | ChainError::NotRegistered { .. }
                | ChainError::NoEpochs(_)
                | ChainError::VersionKey { .. }
                | ChainError::RateLimited { .. }
        )
    }
}

/// One registered neuron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    pub uid: u16,
    pub hotkey: String,
    #[serde(default)]
    pub coldkey: String,
    /// Stake in TAO.
    #[serde(default)]
    pub stake: f64,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub validator_permit: bool,
}

/// The subnet's neurons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metagraph {
    pub netuid: u16,
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    pub fn by_hotkey(&self, hotkey: &str) -> Option<&Neuron> {
        self.neurons.iter().find(|n| n.hotkey == hotkey)
    }
}

/// What a chain does for agentao.
#[allow(async_fn_in_trait)]
pub trait Chain {
    async fn metagraph(&self) -> Result<Metagraph, ChainError>;
    /// Publishes where `hotkey`'s axon listens.
    async fn serve_axon(&self, hotkey: &str, ip: IpAddr, port: u16) -> Result<(), ChainError>;
    /// Sets this validator's weights (any non-negative floats; normalised on the way).
    async fn set_weights(
        &self,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError>;
}

/// Either backend, chosen at run time (the trait's async methods are not object-safe).
#[derive(Debug)]
pub enum AnyChain {
    Local(LocalChain),
    Subtensor(Box<super::subtensor::SubtensorChain>),
}

impl AnyChain {
    /// What `set_weights` would send, and why (the local chain has no commit-reveal and no
    /// rate limit).
    pub async fn explain_weights(
        &self,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<super::subtensor::WeightsPlan, ChainError> {
        match self {
            AnyChain::Subtensor(c) => c.explain_weights(hotkey, uids, weights, version_key).await,
            AnyChain::Local(c) => {
                let (uids, weights) = normalize_weights(uids, weights)?;
                let uid = c
                    .metagraph()
                    .await?
                    .neurons
                    .iter()
                    .find(|n| n.hotkey == hotkey)
                    .map(|n| n.uid);
                Ok(super::subtensor::WeightsPlan {
                    hotkey: hotkey.into(),
                    netuid: c.netuid,
                    mechid: 0,
                    uid,
                    uids,
                    weights,
                    version_key,
                    required_version_key: 0,
                    head: 0,
                    last_update: 0,
                    rate_limit_blocks: 0,
                    rate_limit_wait_blocks: 0,
                    commit_reveal: None,
                })
            }
        }
    }
}

impl Chain for AnyChain {
    async fn metagraph(&self) -> Result<Metagraph, ChainError> {
        match self {
            AnyChain::Local(c) => c.metagraph().await,
            AnyChain::Subtensor(c) => c.metagraph().await,
        }
    }

    async fn serve_axon(&self, hotkey: &str, ip: IpAddr, port: u16) -> Result<(), ChainError> {
        match self {
            AnyChain::Local(c) => c.serve_axon(hotkey, ip, port).await,
            AnyChain::Subtensor(c) => c.serve_axon(hotkey, ip, port).await,
        }
    }

    async fn set_weights(
        &self,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError> {
        match self {
            AnyChain::Local(c) => c.set_weights(hotkey, uids, weights, version_key).await,
            AnyChain::Subtensor(c) => c.set_weights(hotkey, uids, weights, version_key).await,
        }
    }
}

/// Weights as the chain takes them: u16 with the largest at 65535, zero weights dropped (the
/// Python SDK's `convert_weights_and_uids_for_emit`).
pub fn normalize_weights(
    uids: &[u16],
    weights: &[f32],
) -> Result<(Vec<u16>, Vec<u16>), ChainError> {
    if uids.len() != weights.len() {
        return Err(ChainError::BadWeights(format!(
            "{} uids but {} weights",
            uids.len(),
            weights.len()
        )));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(ChainError::BadWeights(
            "weights must be finite and non-negative".into(),
        ));
    }
    let max = weights.iter().cloned().fold(0.0f32, f32::max);
    if max == 0.0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut out_uids = Vec::new();
    let mut out_w = Vec::new();
    for (u, w) in uids.iter().zip(weights) {
        let v = ((*w / max) * u16::MAX as f32).round() as u16;
        if v > 0 {
            out_uids.push(*u);
            out_w.push(v);
        }
    }
    Ok((out_uids, out_w))
}

/// The local backend: `<dir>/metagraph.json` and `<dir>/weights.log`.
#[derive(Debug, Clone)]
pub struct LocalChain {
    dir: PathBuf,
    netuid: u16,
}

impl LocalChain {
    pub fn new(dir: &Path, netuid: u16) -> LocalChain {
        LocalChain {
            dir: dir.to_path_buf(),
            netuid,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("metagraph.json")
    }

    fn io(&self, p: &Path) -> impl FnOnce(std::io::Error) -> ChainError {
        let path = p.display().to_string();
        move |source| ChainError::Io { path, source }
    }

    fn read(&self) -> Result<Metagraph, ChainError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ChainError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metagraph {
                netuid: self.netuid,
                neurons: Vec::new(),
            }),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Registers (or updates) a neuron; returns its uid.
    pub fn register(&self, mut neuron: Neuron) -> Result<u16, ChainError> {
        let mut mg = self.read()?;
        let uid = match mg.neurons.iter_mut().find(|n| n.hotkey == neuron.hotkey) {
            Some(n) => {
                neuron.uid = n.uid;
                *n = neuron;
                n.uid
            }
            None => {
                let uid = mg.neurons.iter().map(|n| n.uid + 1).max().unwrap_or(0);
                neuron.uid = uid;
                mg.neurons.push(neuron);
                uid
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let tmp = self.dir.join("metagraph.json.partial");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&mg).expect("serialisable"))
            .map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, self.path()).map_err(self.io(&self.dir))?;
        Ok(uid)
    }
}

impl Chain for LocalChain {
    async fn metagraph(&self) -> Result<Metagraph, ChainError> {
        self.read()
    }

    async fn serve_axon(&self, hotkey: &str, ip: IpAddr, port: u16) -> Result<(), ChainError> {
        let mut neuron =
            self.read()?
                .by_hotkey(hotkey)
                .cloned()
                .ok_or_else(|| ChainError::NotRegistered {
                    hotkey: hotkey.into(),
                    netuid: self.netuid,
                })?;
        neuron.ip = ip.to_string();
        neuron.port = port;
        self.register(neuron).map(|_| ())
    }

    async fn set_weights(
        &self,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let (uids, weights) = normalize_weights(uids, weights)?;
        let line = serde_json::json!({
            "at": chrono::Utc::now().to_rfc3339(),
            "netuid": self.netuid, "hotkey": hotkey, "uids": uids, "weights": weights,
            "version_key": version_key,
        });
        use std::io::Write;
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.dir.join("weights.log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(self.io(&path))?;
        writeln!(f, "{line}").map_err(self.io(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_normalise_like_the_sdk() {
        // bittensor.utils.weight_utils.convert_weights_and_uids_for_emit(
        //     np.array([0, 1, 2, 3]), np.array([0.1, 0.2, 0.0, 0.7])) == ([0, 1, 3], [9362, 18724, 65535])
        let (u, w) = normalize_weights(&[0, 1, 2, 3], &[0.1, 0.2, 0.0, 0.7]).unwrap();
        assert_eq!(u, [0, 1, 3]);
        assert_eq!(w, [9362, 18724, 65535]);
        assert!(normalize_weights(&[0], &[-1.0]).is_err());
        assert!(normalize_weights(&[0, 1], &[1.0]).is_err());
    }

    #[tokio::test]
    async fn the_local_chain_registers_and_logs_weights() {
        let dir = tempfile::tempdir().unwrap();
        let chain = LocalChain::new(dir.path(), 62);
        let n = |hk: &str| Neuron {
            uid: 0,
            hotkey: hk.into(),
            coldkey: String::new(),
            stake: 1.0,
            ip: "127.0.0.1".into(),
            port: 8091,
            validator_permit: false,
        };
        assert_eq!(chain.register(n("a")).unwrap(), 0);
        assert_eq!(chain.register(n("b")).unwrap(), 1);
        assert_eq!(chain.register(n("a")).unwrap(), 0);
        assert_eq!(chain.metagraph().await.unwrap().neurons.len(), 2);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        chain.serve_axon("b", ip, 9000).await.unwrap();
        let b = chain
            .metagraph()
            .await
            .unwrap()
            .by_hotkey("b")
            .cloned()
            .unwrap();
        assert_eq!((b.uid, b.ip.as_str(), b.port), (1, "10.1.2.3", 9000));
        let err = chain.serve_axon("c", ip, 9000).await.unwrap_err();
        assert!(matches!(err, ChainError::NotRegistered { .. }), "{err}");
        chain
            .set_weights("a", &[0, 1], &[1.0, 3.0], 7)
            .await
            .unwrap();
        let log = std::fs::read_to_string(dir.path().join("weights.log")).unwrap();
        assert!(log.contains("\"weights\":[21845,65535]"), "{log}");
    }
}
