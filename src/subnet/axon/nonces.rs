//! The nonce book: per (hotkey, uuid), the nonces already used within the freshness window,
//! and a floor below which everything is refused (see the module doc of the axon).

use std::collections::{BTreeSet, HashMap};

use super::{MAX_ENDPOINTS, RECENT_PER_ENDPOINT, Refusal};

/// The nonces used per (hotkey, uuid), within the freshness window.
pub(super) struct NonceBook {
    /// When the axon started: older nonces are refused.
    started_ns: i64,
    endpoints: HashMap<String, Seen>,
    last_prune_ns: i64,
}

/// One (hotkey, uuid): every nonce at or below `floor` is refused, and so is one in `recent`.
struct Seen {
    floor: i64,
    recent: BTreeSet<i64>,
}

impl Seen {
    fn newest(&self) -> i64 {
        self.recent.last().copied().unwrap_or(self.floor)
    }
}

impl NonceBook {
    pub(super) fn new(started_ns: i64) -> NonceBook {
        NonceBook {
            started_ns,
            endpoints: HashMap::new(),
            last_prune_ns: started_ns,
        }
    }

    /// Whether `nonce` may be used by `endpoint` now; `oldest_ns` is the window's start.
    pub(super) fn check(
        &self,
        endpoint: &str,
        nonce: i64,
        now: i64,
        oldest_ns: i64,
    ) -> Result<(), Refusal> {
        if nonce <= self.started_ns {
            return Err(Refusal(
                401,
                "nonce predates this axon's start: requests signed before a restart are not taken"
                    .into(),
            ));
        }
        if nonce <= oldest_ns {
            return Err(Refusal(
                401,
                format!(
                    "nonce is too old: acceptable delta is {:.2} seconds but request was {:.2} seconds old",
                    (now as i128 - oldest_ns as i128) as f64 / 1e9,
                    (now as i128 - nonce as i128) as f64 / 1e9
                ),
            ));
        }
        if let Some(seen) = self.endpoints.get(endpoint) {
            if nonce <= seen.floor {
                return Err(Refusal(
                    401,
                    "nonce is not newer than the last one processed".into(),
                ));
            }
            if seen.recent.contains(&nonce) {
                return Err(Refusal(401, "nonce was already used".into()));
            }
        }
        Ok(())
    }

    /// Checks and records `nonce` in one step, so two copies of a request cannot both pass.
    /// `horizon_ns` is the oldest any request's window can reach (4 s + the largest timeout).
    pub(super) fn commit(
        &mut self,
        endpoint: &str,
        nonce: i64,
        now: i64,
        oldest_ns: i64,
        horizon_ns: i64,
    ) -> Result<(), Refusal> {
        self.check(endpoint, nonce, now, oldest_ns)?;
        let prune_due = now.saturating_sub(self.last_prune_ns) > 1_000_000_000;
        if !self.endpoints.contains_key(endpoint) && self.endpoints.len() >= MAX_ENDPOINTS {
            self.prune(now, horizon_ns);
            if self.endpoints.len() >= MAX_ENDPOINTS {
                return Err(Refusal(
                    503,
                    "busy: too many dendrites at once; try again".into(),
                ));
            }
        } else if prune_due && self.endpoints.len() > 1024 {
            self.prune(now, horizon_ns);
        }
        let seen = self.endpoints.entry(endpoint.to_owned()).or_insert(Seen {
            floor: i64::MIN,
            recent: BTreeSet::new(),
        });
        seen.recent.insert(nonce);
        while seen.recent.len() > RECENT_PER_ENDPOINT {
            if let Some(oldest) = seen.recent.pop_first() {
                seen.floor = oldest;
            }
        }
        Ok(())
    }

    /// Forgets the endpoints none of whose nonces any window can still reach.
    pub(super) fn prune(&mut self, now: i64, horizon_ns: i64) {
        self.endpoints.retain(|_, s| s.newest() > horizon_ns);
        self.last_prune_ns = now;
    }
}
