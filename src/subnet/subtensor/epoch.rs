//! When the chain reveals a timelocked commit: the first block whose epoch is the commit's
//! epoch plus the subnet's reveal period (`RevealPeriodEpochs`).
//!
//! Two schedules exist. Runtimes with `LastEpochBlock`, `PendingEpochAt` and
//! `SubnetEpochIndex` run a subnet's epoch when `tempo` blocks have passed since the last one,
//! when an owner-triggered epoch is due, or when the subnet has gone too long without a step;
//! the prediction steps that state machine forward block by block, as the SDK's
//! `bittensor-drand` 2.0.0 does (`Stateful`). Older runtimes (finney's recorded metadata of
//! September 2025 among them) number epochs by a fixed formula, `(block + netuid + 1) /
//! (tempo + 1)` (`Fixed`). In both, the commit lands in the block after the head, and the
//! reveal runs at the start of a block, before that block's epoch.

use crate::subnet::chain::ChainError;

/// Owner-set tempos stay below this; a subnet longer without a step runs its epoch anyway.
pub const MAX_TEMPO: u64 = 50_400;

/// A subnet's epoch state at the head, as the newer runtimes store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EpochState {
    pub last_epoch_block: u64,
    /// An owner-triggered epoch due at this block (0: none).
    pub pending_epoch_at: u64,
    pub subnet_epoch_index: u64,
    pub tempo: u16,
    pub blocks_since_last_step: u64,
    pub current_block: u64,
}

/// Which schedule the runtime follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Schedule {
    Stateful(EpochState),
    Fixed {
        netuid: u16,
        tempo: u16,
        current_block: u64,
    },
}

impl EpochState {
    /// Whether the epoch runs at `block` in this state.
    fn runs_at(&self, block: u64) -> bool {
        if self.tempo == 0 {
            return false;
        }
        (self.pending_epoch_at > 0 && block >= self.pending_epoch_at)
            || self.blocks_since_last_step > MAX_TEMPO
            || block.saturating_sub(self.last_epoch_block) >= self.tempo as u64
    }

    /// The epoch index the reveal sees at the start of `block` (it counts the epoch that
    /// block is about to run).
    fn index_before_epoch(&self, block: u64) -> u64 {
        self.subnet_epoch_index + u64::from(self.runs_at(block))
    }

    /// The state after `block` ran (its epoch, if due).
    fn after(mut self, block: u64) -> EpochState {
        self.blocks_since_last_step += 1;
        self.current_block = block;
        if self.runs_at(block) {
            self.last_epoch_block = block;
            self.pending_epoch_at = 0;
            self.subnet_epoch_index += 1;
            self.blocks_since_last_step = 0;
        }
        self
    }
}

/// The commit's epoch and the first block the chain reveals it at, for a commit sent at the
/// schedule's head with a reveal period of `period` epochs.
pub fn reveal_block(
    schedule: &Schedule,
    netuid: u16,
    period: u64,
) -> Result<(u64, u64), ChainError> {
    match *schedule {
        Schedule::Stateful(state) => {
            if state.tempo == 0 {
                return Err(ChainError::NoEpochs(netuid));
            }
            let commit_block = state.current_block + 1;
            let commit_epoch = state.index_before_epoch(commit_block);
            let target = commit_epoch + period;
            let budget = period.saturating_mul(MAX_TEMPO).saturating_add(MAX_TEMPO);
            let mut s = state;
            for block in commit_block..=commit_block.saturating_add(budget) {
                if s.index_before_epoch(block) == target {
                    return Ok((commit_epoch, block));
                }
                s = s.after(block);
            }
            Err(ChainError::Runtime(format!(
                "netuid {netuid}: no reveal block within {budget} blocks"
            )))
        }
        Schedule::Fixed {
            netuid,
            tempo,
            current_block,
        } => {
            if tempo == 0 {
                return Err(ChainError::NoEpochs(netuid));
            }
            let (offset, length) = (netuid as u64 + 1, tempo as u64 + 1);
            let commit_block = current_block + 1;
            let commit_epoch = (commit_block + offset) / length;
            let first = ((commit_epoch + period) * length).saturating_sub(offset);
            Ok((commit_epoch, first.max(commit_block)))
        }
    }
}

/// The `Fixed` schedule written as the newer runtimes' state, for checking one model against
/// the other: an epoch every `tempo + 1` blocks, the last one where `(b + netuid + 1)` is a
/// multiple of `tempo + 1`.
pub fn fixed_as_state(netuid: u16, tempo: u16, current_block: u64) -> EpochState {
    let (offset, length) = (netuid as u64 + 1, tempo as u64 + 1);
    let index = (current_block + offset) / length;
    let last = (index * length).saturating_sub(offset);
    EpochState {
        last_epoch_block: last,
        pending_epoch_at: 0,
        subnet_epoch_index: index,
        tempo: tempo.saturating_add(1),
        blocks_since_last_step: current_block - last.min(current_block),
        current_block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_models_agree_on_the_fixed_schedule() {
        for netuid in [0u16, 1, 62, 4095] {
            for tempo in [1u16, 10, 99, 360] {
                for current in (1_000u64..1_000 + 3 * tempo as u64).step_by(7) {
                    for period in 0..4 {
                        let fixed = Schedule::Fixed {
                            netuid,
                            tempo,
                            current_block: current,
                        };
                        let state = Schedule::Stateful(fixed_as_state(netuid, tempo, current));
                        assert_eq!(
                            reveal_block(&fixed, netuid, period).unwrap(),
                            reveal_block(&state, netuid, period).unwrap(),
                            "netuid {netuid} tempo {tempo} block {current} period {period}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_stateful_model_follows_pending_and_overdue_epochs() {
        let base = EpochState {
            last_epoch_block: 100,
            pending_epoch_at: 0,
            subnet_epoch_index: 7,
            tempo: 50,
            blocks_since_last_step: 20,
            current_block: 120,
        };
        // Epochs at 150 and 200: the reveal of a commit at 121 (epoch 7) opens at 200.
        assert_eq!(
            reveal_block(&Schedule::Stateful(base), 1, 2).unwrap(),
            (7, 200)
        );
        // An owner-triggered epoch at 130 moves everything forward.
        let pending = EpochState {
            pending_epoch_at: 130,
            ..base
        };
        assert_eq!(
            reveal_block(&Schedule::Stateful(pending), 1, 2).unwrap(),
            (7, 180)
        );
        let idle = EpochState { tempo: 0, ..base };
        assert!(matches!(
            reveal_block(&Schedule::Stateful(idle), 1, 2),
            Err(ChainError::NoEpochs(1))
        ));
    }
}
