//! JSON-RPC over HTTP to a substrate node. Subtensor nodes answer HTTP POSTs on the same port as
//! their WebSocket endpoint, so `ws://` and `wss://` addresses are taken as `http://`/`https://`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::subnet::chain::ChainError;

/// A JSON-RPC endpoint.
#[derive(Debug)]
pub struct Rpc {
    http: reqwest::Client,
    url: String,
    next_id: AtomicU64,
}

impl Rpc {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Rpc, ChainError> {
        let url = if let Some(rest) = endpoint.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = endpoint.strip_prefix("ws://") {
            format!("http://{rest}")
        } else if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            endpoint.to_string()
        } else {
            return Err(ChainError::Rpc {
                endpoint: endpoint.into(),
                message: "expected a ws://, wss://, http:// or https:// address".into(),
            });
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ChainError::Rpc {
                endpoint: endpoint.into(),
                message: e.to_string(),
            })?;
        Ok(Rpc {
            http,
            url,
            next_id: AtomicU64::new(1),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, message: impl Into<String>) -> ChainError {
        ChainError::Rpc {
            endpoint: self.url.clone(),
            message: message.into(),
        }
    }

    /// Calls `method` and deserialises its `result`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(url = %self.url, method, id, "json-rpc request");
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.error(format!("{method}: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.error(format!("{method}: {e}")))?;
        let value: Value = serde_json::from_str(&text).map_err(|_| {
            self.error(format!(
                "{method}: HTTP {status}, not JSON-RPC: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if let Some(err) = value.get("error") {
            let message = err.get("message").and_then(Value::as_str).unwrap_or("");
            let data = err
                .get("data")
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(self.error(format!("{method}: {message}{data}")));
        }
        let result = value.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| self.error(format!("{method}: {e}")))
    }
}

/// `0x…` hex into bytes.
pub fn from_hex(s: &str) -> Result<Vec<u8>, ChainError> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
        .map_err(|e| ChainError::Decode(format!("bad hex {s:.20}…: {e}")))
}

/// Bytes as `0x…` hex.
pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A 32-byte block hash from `0x…` hex.
pub fn hash32(s: &str) -> Result<[u8; 32], ChainError> {
    from_hex(s)?
        .try_into()
        .map_err(|_| ChainError::Decode(format!("not a 32-byte hash: {s}")))
}
