//! The dendrite: signs a synapse for one axon and sends it (reqwest), or fans it out to many
//! axons at once, each with its own timeout; returns every miner's status, latency and answer.

use std::time::{Duration, Instant};

use super::synapse::{PROTOCOL_VERSION, Synapse, SynapseBody, TerminalInfo};
use super::wallet::Keypair;

/// Where an axon listens.
#[derive(Debug, Clone, PartialEq)]
pub struct AxonTarget {
    pub ip: String,
    pub port: u16,
    pub hotkey: String,
}

/// One axon's answer.
#[derive(Debug, Clone)]
pub struct CallResult<T: SynapseBody> {
    pub hotkey: String,
    /// The axon's status (200 ok; 408 timeout and 503 unreachable are set here, as the SDK's
    /// dendrite does).
    pub status_code: i64,
    pub status_message: String,
    pub latency_s: f64,
    /// The answered synapse, when the call succeeded.
    pub synapse: Option<Synapse<T>>,
}

/// A signing client.
pub struct Dendrite {
    keypair: Keypair,
    uuid: String,
    http: reqwest::Client,
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
        }
    }

    pub fn hotkey(&self) -> String {
        self.keypair.ss58()
    }

    /// The signed synapse and its headers for `target`.
    pub fn sign<T: SynapseBody>(
        &self,
        target: &AxonTarget,
        body: T,
        timeout: Duration,
    ) -> (Synapse<T>, Vec<(String, String)>) {
        let mut synapse = Synapse::new(body, timeout.as_secs_f64());
        let nonce = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let body_hash = synapse.body_hash();
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
    pub async fn call<T: SynapseBody>(
        &self,
        target: &AxonTarget,
        body: T,
        timeout: Duration,
    ) -> CallResult<T> {
        let started = Instant::now();
        let (synapse, headers) = self.sign(target, body, timeout);
        let url = format!("http://{}:{}/{}", target.ip, target.port, T::NAME);
        let mut req = self.http.post(&url).timeout(timeout).json(&synapse);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let result = |code: i64, message: String, synapse| CallResult {
            hotkey: target.hotkey.clone(),
            status_code: code,
            status_message: message,
            latency_s: started.elapsed().as_secs_f64(),
            synapse,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return result(408, format!("timed out after {timeout:?}"), None);
            }
            Err(e) => return result(503, format!("service unavailable: {e}"), None),
        };
        let status = resp.status().as_u16() as i64;
        let header_message = resp
            .headers()
            .get("bt_header_axon_status_message")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return result(408, format!("timed out after {timeout:?}"), None);
            }
            Err(e) => return result(503, e.to_string(), None),
        };
        if status != 200 {
            let message = header_message
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return result(status, message, None);
        }
        match serde_json::from_slice::<Synapse<T>>(&bytes) {
            Ok(s) => result(
                200,
                header_message.unwrap_or_else(|| "Success".into()),
                Some(s),
            ),
            Err(e) => result(500, format!("unreadable answer: {e}"), None),
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
