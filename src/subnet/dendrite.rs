//! The dendrite: signs a synapse for one axon and sends it (reqwest), or fans it out to many
//! axons at once, each with its own timeout; returns every miner's status, latency and answer.
//!
//! An answer is read as a stream and dropped as soon as it passes `max_answer_bytes`: a miner
//! cannot make the validator hold more than that. A call that brought back no synapse says why
//! ([`CallFailure`]): unreachable, timed out, or a protocol error (a refusal, garbage, an answer
//! over the cap), so that nobody mistakes a failure to talk for a miner's answer.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::synapse::{HASH_OF_NOTHING, PROTOCOL_VERSION, Synapse, SynapseBody, TerminalInfo};
use super::wallet::Keypair;

/// The largest answer read by default: four times the evaluation's default patch limit (1 MiB),
/// room for JSON escapes, plus the other fields.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 8 << 20;

/// Where an axon listens.
#[derive(Debug, Clone, PartialEq)]
pub struct AxonTarget {
    pub ip: String,
    pub port: u16,
    pub hotkey: String,
}

/// Why a call brought back no synapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallFailure {
    /// No connection could be made (refused, no route, bad address).
    Unreachable,
    /// No complete answer within the timeout (ours, or the axon's 408).
    Timeout,
    /// Something answered, but not with a synapse: a refusal status, a body that is not one,
    /// an answer over the size cap, a connection dropped midway.
    ProtocolError,
}

impl CallFailure {
    /// The name recorded as the outcome: `unreachable`, `timeout`, `protocol_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallFailure::Unreachable => "unreachable",
            CallFailure::Timeout => "timeout",
            CallFailure::ProtocolError => "protocol_error",
        }
    }
}

/// One axon's answer.
#[derive(Debug, Clone)]
pub struct CallResult<T: SynapseBody> {
    pub hotkey: String,
    /// The axon's status (200 ok; 408 timeout, 503 unreachable and 422 unreadable are set
    /// here, as the SDK's dendrite does).
    pub status_code: i64,
    pub status_message: String,
    pub latency_s: f64,
    /// The answered synapse, when the call succeeded.
    pub synapse: Option<Synapse<T>>,
    /// Why there is no synapse; `None` exactly when there is one.
    pub failure: Option<CallFailure>,
}

/// A signing client.
pub struct Dendrite {
    keypair: Keypair,
    uuid: String,
    http: reqwest::Client,
    max_answer_bytes: usize,
    /// Hotkeys whose axons took only the original protocol's hash of nothing last time.
    original: Mutex<HashSet<String>>,
    /// The last nonce used: each call gets a larger one, even within one clock tick.
    last_nonce: AtomicI64,
}

impl Dendrite {
    pub fn new(keypair: Keypair) -> Dendrite {
        Dendrite {
            keypair,
            uuid: uuid::Uuid::new_v4().to_string(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            original: Mutex::new(HashSet::new()),
            last_nonce: AtomicI64::new(0),
        }
    }

    /// Answers longer than `bytes` are dropped unread past that point (a protocol error).
    pub fn with_max_answer_bytes(mut self, bytes: usize) -> Dendrite {
        self.max_answer_bytes = bytes;
        self
    }

    pub fn hotkey(&self) -> String {
        self.keypair.ss58()
    }

    /// The signed synapse and its headers for `target`, hashing the body's required fields.
    pub fn sign<T: SynapseBody>(
        &self,
        target: &AxonTarget,
        body: T,
        timeout: Duration,
    ) -> (Synapse<T>, Vec<(String, String)>) {
        self.sign_with(target, body, timeout, false)
    }

    /// As [`Dendrite::sign`]; with `hash_nothing`, the body hash is the original protocol's
    /// hash of nothing, which binds no field.
    pub fn sign_with<T: SynapseBody>(
        &self,
        target: &AxonTarget,
        body: T,
        timeout: Duration,
        hash_nothing: bool,
    ) -> (Synapse<T>, Vec<(String, String)>) {
        let mut synapse = Synapse::new(body, timeout.as_secs_f64());
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let nonce = match self
            .last_nonce
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            }) {
            Ok(last) | Err(last) => now.max(last.saturating_add(1)),
        };
        let body_hash = if hash_nothing {
            HASH_OF_NOTHING.to_owned()
        } else {
            synapse.body_hash()
        };
        let message = format!(
            "{nonce}.{}.{}.{}.{body_hash}",
            self.keypair.ss58(),
            target.hotkey,
            self.uuid
        );
        let signature = format!("0x{}", hex::encode(self.keypair.sign(message.as_bytes())));
        synapse.dendrite = Some(TerminalInfo {
            ip: Some("127.0.0.1".into()),
            version: Some(PROTOCOL_VERSION),
            nonce: Some(nonce),
            uuid: Some(self.uuid.clone()),
            hotkey: Some(self.keypair.ss58()),
            signature: Some(signature),
            ..TerminalInfo::default()
        });
        synapse.axon = Some(TerminalInfo {
            ip: Some(target.ip.clone()),
            port: Some(target.port.into()),
            hotkey: Some(target.hotkey.clone()),
            ..TerminalInfo::default()
        });
        synapse.computed_body_hash = body_hash;
        let headers = synapse.to_headers();
        (synapse, headers)
    }

    /// Sends `body` to one axon.
    ///
    /// A synapse whose original class hashes no fields ([`SynapseBody::ORIGINAL_HASHES_NOTHING`])
    /// is sent with our hash first; an SDK axon of the original class refuses that with a 500
    /// before its handler runs, and the call is made once more with the hash of nothing (the
    /// axon's choice is remembered for the next call). Our own axon never takes the hash of
    /// nothing for a body carrying our fields, so this cannot be used to strip the binding from
    /// a request to an agentao miner.
    pub async fn call<T: SynapseBody>(
        &self,
        target: &AxonTarget,
        body: T,
        timeout: Duration,
    ) -> CallResult<T> {
        let started = Instant::now();
        let original_first =
            T::ORIGINAL_HASHES_NOTHING && self.known_original(&target.hotkey).unwrap_or(false);
        let mut result = self
            .attempt(target, body.clone(), timeout, original_first)
            .await;
        let left = timeout.saturating_sub(started.elapsed());
        if T::ORIGINAL_HASHES_NOTHING && result.status_code == 500 && !left.is_zero() {
            let second = self.attempt(target, body, left, !original_first).await;
            if second.failure.is_none() {
                self.remember(&target.hotkey, !original_first);
            }
            result = second;
        }
        result.latency_s = started.elapsed().as_secs_f64();
        result
    }

    fn known_original(&self, hotkey: &str) -> Option<bool> {
        self.original.lock().ok().map(|s| s.contains(hotkey))
    }

    fn remember(&self, hotkey: &str, original: bool) {
        if let Ok(mut s) = self.original.lock() {
            if original {
                s.insert(hotkey.to_owned());
            } else {
                s.remove(hotkey);
            }
        }
    }

    async fn attempt<T: SynapseBody>(
        &self,
        target: &AxonTarget,
        body: T,
        timeout: Duration,
        hash_nothing: bool,
    ) -> CallResult<T> {
        let started = Instant::now();
        let (synapse, headers) = self.sign_with(target, body, timeout, hash_nothing);
        let url = format!("http://{}:{}/{}", target.ip, target.port, T::NAME);
        let mut req = self.http.post(&url).timeout(timeout).json(&synapse);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let result = |code: i64, message: String, failure: CallFailure| CallResult {
            hotkey: target.hotkey.clone(),
            status_code: code,
            status_message: message,
            latency_s: started.elapsed().as_secs_f64(),
            synapse: None,
            failure: Some(failure),
        };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                result(
                    408,
                    format!("timed out after {timeout:?}"),
                    CallFailure::Timeout,
                )
            } else if e.is_connect() {
                result(
                    503,
                    format!("service unavailable: {}", error_chain(&e)),
                    CallFailure::Unreachable,
                )
            } else {
                result(503, error_chain(&e), CallFailure::ProtocolError)
            }
        };
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = resp.status().as_u16() as i64;
        let header_message = resp
            .headers()
            .get("bt_header_axon_status_message")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cap = self.max_answer_bytes;
        let too_big = |n: String| {
            result(
                422,
                format!("answer of {n} bytes is over the {cap}-byte cap; dropped unread"),
                CallFailure::ProtocolError,
            )
        };
        if let Some(len) = resp.content_length()
            && len > cap as u64
        {
            return too_big(len.to_string());
        }
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > cap {
                        return too_big(format!("more than {cap}"));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return transport(e),
            }
        }
        if status != 200 {
            let message = header_message
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            let failure = if status == 408 {
                CallFailure::Timeout
            } else {
                CallFailure::ProtocolError
            };
            return result(status, message, failure);
        }
        match serde_json::from_slice::<Synapse<T>>(&bytes) {
            Ok(s) => CallResult {
                hotkey: target.hotkey.clone(),
                status_code: 200,
                status_message: header_message.unwrap_or_else(|| "Success".into()),
                latency_s: started.elapsed().as_secs_f64(),
                synapse: Some(s),
                failure: None,
            },
            Err(e) => result(
                422,
                format!("unreadable answer: {e}"),
                CallFailure::ProtocolError,
            ),
        }
    }

    /// Sends `body` to every target at once.
    pub async fn fan_out<T: SynapseBody>(
        &self,
        targets: &[AxonTarget],
        body: &T,
        timeout: Duration,
    ) -> Vec<CallResult<T>> {
        futures_util::future::join_all(targets.iter().map(|t| self.call(t, body.clone(), timeout)))
            .await
    }
}

/// An error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
