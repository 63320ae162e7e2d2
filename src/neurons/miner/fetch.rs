//! Bundles over the inline cap, on the miner's side: a description whose bundle did not come
//! inline names it by sha256, and the miner asks the validator that sent the task for it
//! (`TaskBundle`, signed with the miner's own hotkey), at the address that validator's hotkey
//! serves on the chain. The answer is read under a cap (the dendrite stops past it) and its
//! size checked again once decoded; its sha256 is checked by the bundle's unpacker before
//! anything is unpacked.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;

use crate::subnet::{AxonTarget, Dendrite, Metagraph, TaskBundle};

/// How long a bundle may take to arrive.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a miner fetches bundles with: its own key and the metagraph its axon follows.
pub struct BundleFetch {
    dendrite: Dendrite,
    metagraph: Arc<RwLock<Metagraph>>,
    cap: u64,
}

impl BundleFetch {
    /// Fetches with `dendrite`, finding validators in `metagraph`; bundles over `cap` bytes
    /// are refused.
    pub fn new(dendrite: Dendrite, metagraph: Arc<RwLock<Metagraph>>, cap: u64) -> BundleFetch {
        // The answer is a synapse with the bundle in base64, plus its own few fields.
        let answer = cap.saturating_mul(4) / 3 + (64 << 10);
        BundleFetch {
            dendrite: dendrite.with_max_answer_bytes(answer.min(usize::MAX as u64) as usize),
            metagraph,
            cap,
        }
    }

    /// The bundle `sha256` from the axon of `caller` (the validator that sent the task). The
    /// error is one line for the miner's log.
    pub async fn fetch(&self, caller: &str, sha256: &str) -> Result<Vec<u8>, String> {
        let target = {
            let mg = self
                .metagraph
                .read()
                .map_err(|_| "metagraph lock poisoned")?;
            let n = mg
                .by_hotkey(caller)
                .ok_or_else(|| format!("the sender {caller} is not in the metagraph"))?;
            if n.port == 0 || n.ip.is_empty() {
                return Err(format!("the sender {caller} serves no axon to fetch from"));
            }
            AxonTarget {
                ip: n.ip.clone(),
                port: n.port,
                hotkey: n.hotkey.clone(),
            }
        };
        let ask = TaskBundle {
            sha256: sha256.to_owned(),
            bundle: String::new(),
        };
        let r = self.dendrite.call(&target, ask, FETCH_TIMEOUT).await;
        let Some(answer) = r.synapse.filter(|_| r.failure.is_none()) else {
            return Err(format!(
                "fetching from {}:{} failed: {} {}",
                target.ip, target.port, r.status_code, r.status_message
            ));
        };
        let encoded = answer.body.bundle;
        if encoded.len() as u64 > self.cap.saturating_mul(4) / 3 + 4 {
            return Err(format!(
                "the served bundle ({} base64 bytes) is over the cap of {} bytes",
                encoded.len(),
                self.cap
            ));
        }
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("the served bundle is not base64: {e}"))
    }
}
