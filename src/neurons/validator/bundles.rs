//! Bundles over the inline cap, on the validator's side: the describer keeps the bundles of
//! the tasks it sent without them (`BundleShelf`, the newest [`SHELF_BUNDLES`]), and its axon
//! serves them by sha256 (`TaskBundle`) to registered hotkeys only: the request is signed and
//! checked like every other (nonce, signature, body hash, registration), without a validator
//! permit (miners have none). A hash not on the shelf is a 404; nothing else of the validator's
//! caches is served.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::forge::ForgeConfig;
use crate::subnet::{Axon, AxonConfig, HandlerError, TaskBundle};
use crate::tasks::bundle::MAX_INLINE_BYTES;

/// Bundles kept for miners to fetch.
pub const SHELF_BUNDLES: usize = 32;
/// The body of a `TaskBundle` request is a hash: a small cap.
const REQUEST_BYTES: usize = 16 << 10;

/// How the validator describes tasks for miners on other machines.
#[derive(Clone)]
pub struct Describer {
    /// The forge whose caches describe a task (`spec`, `bundle`).
    pub forge: ForgeConfig,
    /// Largest bundle sent inline; a larger one is put on the shelf and fetched by the miner.
    pub inline_cap: u64,
    pub shelf: BundleShelf,
    /// Where miners clone `owner/name` from (`AGENTAO_GIT_BASE_URL`): the URL a GitHub task's
    /// description names.
    pub git_base_url: String,
}

impl Describer {
    pub fn new(forge: ForgeConfig) -> Describer {
        Describer {
            forge,
            inline_cap: MAX_INLINE_BYTES,
            shelf: BundleShelf::default(),
            git_base_url: crate::materialize::DEFAULT_GIT_BASE_URL.to_owned(),
        }
    }
}

/// The bundles of tasks sent without them inline, by sha256.
#[derive(Clone, Default)]
pub struct BundleShelf(Arc<Mutex<VecDeque<Shelved>>>);

/// A bundle on the shelf: its sha256 and bytes.
type Shelved = (String, Arc<Vec<u8>>);

impl BundleShelf {
    /// Keeps `bytes` under `sha256` (the newest [`SHELF_BUNDLES`]).
    pub fn put(&self, sha256: &str, bytes: &[u8]) {
        let mut shelf = self.0.lock().expect("shelf lock");
        shelf.retain(|(h, _)| h != sha256);
        shelf.push_back((sha256.to_owned(), Arc::new(bytes.to_vec())));
        while shelf.len() > SHELF_BUNDLES {
            shelf.pop_front();
        }
    }

    pub fn get(&self, sha256: &str) -> Option<Arc<Vec<u8>>> {
        let shelf = self.0.lock().expect("shelf lock");
        shelf
            .iter()
            .find(|(h, _)| h == sha256)
            .map(|(_, b)| b.clone())
    }

    /// The axon settings for serving bundles: registered callers, no permit needed, small
    /// requests.
    pub fn axon_config() -> AxonConfig {
        AxonConfig {
            require_validator_permit: false,
            max_body_bytes: REQUEST_BYTES,
            ..AxonConfig::default()
        }
    }

    /// `axon` serving `TaskBundle` from this shelf.
    pub fn serve_on(&self, axon: Axon) -> Axon {
        let shelf = self.clone();
        axon.task_bundle(move |s| {
            let found = shelf.get(&s.body.sha256);
            let caller = s
                .dendrite
                .as_ref()
                .and_then(|d| d.hotkey.clone())
                .unwrap_or_default();
            async move {
                let Some(bytes) = found else {
                    tracing::warn!(%caller, sha256 = %s.body.sha256, "bundle asked for is not on the shelf");
                    return Err(HandlerError {
                        status: 404,
                        message: format!("no bundle {}", s.body.sha256),
                    });
                };
                tracing::info!(%caller, sha256 = %s.body.sha256, bytes = bytes.len(), "bundle served");
                Ok(TaskBundle {
                    sha256: s.body.sha256,
                    bundle: base64::engine::general_purpose::STANDARD.encode(bytes.as_slice()),
                })
            }
        })
    }
}
