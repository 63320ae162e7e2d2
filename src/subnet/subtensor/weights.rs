//! What `set_weights` sends, and why: the plan read from the chain (registration, version key,
//! rate limit, commit-reveal and, when on, the reveal schedule and drand round), the calls it
//! turns into, and the wait for a timelocked commit to be stored.
//!
//! With commit-reveal off the weights go in the clear (`set_weights`, or
//! `set_mechanism_weights` for a mechanism other than 0). With it on they are committed as the
//! SDK does: `commit_timelocked_mechanism_weights(netuid, mecid, commit, reveal_round, 4)`,
//! the commit being the payload encrypted to the round (`drand`) due when the chain reveals
//! it (`epoch`).

use std::time::{SystemTime, UNIX_EPOCH};

use parity_scale_codec::{Decode, Encode};
use serde::Serialize;

use super::drand::{self, WeightsPayload};
use super::epoch::{self, EpochState, Schedule};
use super::runtime::{Arg, Runtime};
use super::{Head, PALLET, SubtensorChain};
use crate::subnet::chain::{ChainError, normalize_weights};
use crate::subnet::wallet::ss58_decode;

/// Subnets a mechanism's storage index steps over (`mechid * 4096 + netuid`).
pub const MAX_SUBNETS: u16 = 4096;

/// Where a mechanism's weights and `LastUpdate` live.
pub fn storage_index(netuid: u16, mechid: u8) -> u16 {
    (mechid as u16)
        .wrapping_mul(MAX_SUBNETS)
        .wrapping_add(netuid)
}

/// What would be sent, and why.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsPlan {
    pub hotkey: String,
    pub netuid: u16,
    pub mechid: u8,
    /// The hotkey's uid (`None` when it is not registered).
    pub uid: Option<u16>,
    /// The normalised vector (u16, max 65535; zero weights dropped), as sent.
    pub uids: Vec<u16>,
    pub weights: Vec<u16>,
    pub version_key: u64,
    pub required_version_key: u64,
    /// The block the plan was read at (the finalized head).
    pub head: u64,
    pub last_update: u64,
    pub rate_limit_blocks: u64,
    /// Blocks until weights may be set again (0: now).
    pub rate_limit_wait_blocks: u64,
    /// `None`: commit-reveal is off and the weights go in the clear.
    pub commit_reveal: Option<RevealPlan>,
}

/// A timelocked commit's schedule.
#[derive(Debug, Clone, Serialize)]
pub struct RevealPlan {
    pub reveal_period_epochs: u64,
    pub schedule: Schedule,
    pub commit_epoch: u64,
    /// The first block the chain reveals the commit at.
    pub reveal_block: u64,
    /// The drand quicknet round the commit is encrypted to.
    pub reveal_round: u64,
    /// When that round's pulse is published (Unix seconds).
    pub reveal_round_time: u64,
    pub commit_reveal_version: u16,
}

/// The clock the reveal round is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    System,
    /// A fixed Unix time in seconds (tests, replays).
    Fixed(f64),
}

impl Clock {
    pub fn now(self) -> f64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            Clock::Fixed(t) => t,
        }
    }
}

impl SubtensorChain {
    /// An unsigned value stored at `entry`, or the metadata's default when nothing is stored
    /// (what the SDK reads); any width up to u64.
    async fn uint(
        &self,
        rt: &Runtime,
        at: &Head,
        entry: &str,
        keys: &[Vec<u8>],
    ) -> Result<u64, ChainError> {
        let bytes = match self.storage::<RawValue>(rt, at, entry, keys).await? {
            Some(RawValue(v)) => v,
            None => rt.storage_default(PALLET, entry)?,
        };
        if bytes.is_empty() || bytes.len() > 8 {
            return Err(ChainError::Decode(format!(
                "{PALLET}::{entry}: {} bytes for an integer",
                bytes.len()
            )));
        }
        let mut le = [0u8; 8];
        le[..bytes.len()].copy_from_slice(&bytes);
        Ok(u64::from_le_bytes(le))
    }

    /// Reads everything `set_weights` decides on, at the finalized head.
    pub(super) async fn plan(
        &self,
        rt: &Runtime,
        head: &Head,
        hotkey: &str,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<WeightsPlan, ChainError> {
        let public = ss58_decode(hotkey).map_err(|e| ChainError::BadWeights(e.to_string()))?;
        let (uids, weights) = normalize_weights(uids, weights)?;
        let (netuid, mechid) = (self.config.netuid, self.config.mechid);
        let net = [netuid.encode()];
        let uid = self
            .storage::<u16>(rt, head, "Uids", &[net[0].clone(), public.to_vec()])
            .await?;
        let required_version_key = self.uint(rt, head, "WeightsVersionKey", &net).await?;
        let rate_limit_blocks = self.uint(rt, head, "WeightsSetRateLimit", &net).await?;
        let last_update = match uid {
            Some(uid) => self.last_update(rt, head, uid).await?,
            None => 0,
        };
        // The SDK sets weights only while `blocks since last update > rate limit`.
        let since = head.number.saturating_sub(last_update);
        let rate_limit_wait_blocks = (rate_limit_blocks + 1).saturating_sub(since);
        let enabled = self
            .storage::<bool>(rt, head, "CommitRevealWeightsEnabled", &net)
            .await?
            .unwrap_or(false);
        let commit_reveal = if enabled {
            Some(self.reveal_plan(rt, head).await?)
        } else {
            None
        };
        Ok(WeightsPlan {
            hotkey: hotkey.into(),
            netuid,
            mechid,
            uid,
            uids,
            weights,
            version_key,
            required_version_key,
            head: head.number,
            last_update,
            rate_limit_blocks,
            rate_limit_wait_blocks,
            commit_reveal,
        })
    }

    /// The epoch schedule as the runtime keeps it, the reveal block and the drand round.
    async fn reveal_plan(&self, rt: &Runtime, head: &Head) -> Result<RevealPlan, ChainError> {
        let netuid = self.config.netuid;
        let net = [netuid.encode()];
        let tempo = self.uint(rt, head, "Tempo", &net).await? as u16;
        let schedule = if rt.has_storage(PALLET, "LastEpochBlock") {
            Schedule::Stateful(EpochState {
                last_epoch_block: self.uint(rt, head, "LastEpochBlock", &net).await?,
                pending_epoch_at: self.uint(rt, head, "PendingEpochAt", &net).await?,
                subnet_epoch_index: self.uint(rt, head, "SubnetEpochIndex", &net).await?,
                tempo,
                blocks_since_last_step: self.uint(rt, head, "BlocksSinceLastStep", &net).await?,
                current_block: head.number,
            })
        } else {
            Schedule::Fixed {
                netuid,
                tempo,
                current_block: head.number,
            }
        };
        let period = self.uint(rt, head, "RevealPeriodEpochs", &net).await?;
        let (commit_epoch, reveal_block) = epoch::reveal_block(&schedule, netuid, period)?;
        let reveal_round = drand::reveal_round(
            reveal_block,
            head.number,
            self.config.chain_block_secs,
            self.config.clock.now(),
        );
        Ok(RevealPlan {
            reveal_period_epochs: period,
            schedule,
            commit_epoch,
            reveal_block,
            reveal_round,
            reveal_round_time: drand::round_time(reveal_round),
            commit_reveal_version: drand::COMMIT_REVEAL_VERSION,
        })
    }

    /// Whether `commit` from `account` is stored for the commit's epoch (or the next, when
    /// the extrinsic landed a block late across an epoch boundary).
    pub(super) async fn commit_stored(
        &self,
        rt: &Runtime,
        head: &Head,
        account: &[u8; 32],
        commit: &[u8],
        plan: &RevealPlan,
    ) -> Result<bool, ChainError> {
        let index = storage_index(self.config.netuid, self.config.mechid);
        for epoch in [plan.commit_epoch, plan.commit_epoch + 1] {
            let queue = self
                .storage::<Vec<StoredCommit>>(
                    rt,
                    head,
                    "TimelockedWeightCommits",
                    &[index.encode(), epoch.encode()],
                )
                .await?
                .unwrap_or_default();
            if queue.iter().any(|c| {
                &c.who == account && c.commit == commit && c.reveal_round == plan.reveal_round
            }) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A stored value's bytes, undecoded.
struct RawValue(Vec<u8>);

impl Decode for RawValue {
    fn decode<I: parity_scale_codec::Input>(
        input: &mut I,
    ) -> Result<Self, parity_scale_codec::Error> {
        let len = input.remaining_len()?.unwrap_or(0);
        let mut v = vec![0u8; len];
        input.read(&mut v)?;
        Ok(RawValue(v))
    }
}

/// One entry of `TimelockedWeightCommits`: (who, commit block, ciphertext, reveal round).
#[derive(Debug, Decode)]
struct StoredCommit {
    who: [u8; 32],
    _block: u64,
    commit: Vec<u8>,
    reveal_round: u64,
}

/// The payload `plan` commits for `hotkey` (its public key).
pub fn payload(plan: &WeightsPlan, hotkey: [u8; 32]) -> WeightsPayload {
    WeightsPayload {
        hotkey: hotkey.to_vec(),
        uids: plan.uids.clone(),
        values: plan.weights.clone(),
        version_key: plan.version_key,
    }
}

/// The call `plan` sends in the clear: `set_weights` for mechanism 0 (as before mechanisms),
/// `set_mechanism_weights` otherwise.
pub fn clear_call(rt: &Runtime, plan: &WeightsPlan) -> Result<Vec<u8>, ChainError> {
    if plan.mechid == 0 {
        return set_weights_call(rt, plan.netuid, &plan.uids, &plan.weights, plan.version_key);
    }
    rt.encode_call(
        PALLET,
        "set_mechanism_weights",
        &[
            ("netuid", Arg::U(plan.netuid as u128)),
            ("mecid", Arg::U(plan.mechid as u128)),
            ("dests", seq(&plan.uids)),
            ("weights", seq(&plan.weights)),
            ("version_key", Arg::U(plan.version_key as u128)),
        ],
    )
}

fn seq(v: &[u16]) -> Arg {
    Arg::Seq(v.iter().map(|x| Arg::U(*x as u128)).collect())
}

/// `SubtensorModule::set_weights(netuid, dests, weights, version_key)`, encoded by the metadata.
pub fn set_weights_call(
    rt: &Runtime,
    netuid: u16,
    uids: &[u16],
    weights: &[u16],
    version_key: u64,
) -> Result<Vec<u8>, ChainError> {
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

/// `SubtensorModule::commit_timelocked_mechanism_weights(netuid, mecid, commit, reveal_round,
/// commit_reveal_version)`, the SDK's call for commit-reveal subnets.
pub fn commit_call(
    rt: &Runtime,
    netuid: u16,
    mechid: u8,
    commit: &[u8],
    reveal_round: u64,
) -> Result<Vec<u8>, ChainError> {
    rt.encode_call(
        PALLET,
        "commit_timelocked_mechanism_weights",
        &[
            ("netuid", Arg::U(netuid as u128)),
            ("mecid", Arg::U(mechid as u128)),
            ("commit", Arg::Bytes(commit.to_vec())),
            ("reveal_round", Arg::U(reveal_round as u128)),
            (
                "commit_reveal_version",
                Arg::U(drand::COMMIT_REVEAL_VERSION as u128),
            ),
        ],
    )
}
