//! The validator's model proxy for agents run as code: the only route out of an agent's
//! sandbox. It speaks OpenAI's chat completions (`POST /v1/chat/completions`, `GET
//! /v1/models`), holds the validator's key (the agent's own `Authorization` header is
//! dropped, the key is added on the way out), allows a list of models (403 otherwise), fixes
//! the sampling seed per problem ([`seed_for`]), refuses past a per-run dollar cap, a request
//! count or a request rate (429), and counts tokens and dollars per run ([`ProxyUsage`]).
//!
//! One proxy serves one agent run. Requests are answered one at a time, so the cap is checked
//! against everything spent before: the request that crosses the cap is the last one answered.
//! Streaming is not offered (`stream` is forced off), so every answer carries its usage.
//! When the upstream reports no usage the tokens are estimated (4 characters a token) and the
//! run's usage says so.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::models::{lookup, resolve_model};

/// Default dollar cap of one run.
pub const DEFAULT_CAP_USD: f64 = 0.30;
/// Largest request body the proxy reads.
const MAX_REQUEST: usize = 1 << 20;
/// Largest upstream answer the proxy reads.
const MAX_ANSWER: usize = 8 << 20;

/// What one proxy allows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// The validator's model endpoint, e.g. `https://api.openai.com/v1`.
    pub upstream: String,
    /// The validator's key; never serialised (the container gets it in its environment).
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Allowed model ids (aliases are resolved first). A request naming no model gets the
    /// first.
    pub models: Vec<String>,
    /// Dollars one run may spend (price table; unpriced models cost nothing).
    pub cap_usd: f64,
    /// Requests one run may make in all.
    pub max_requests: u64,
    /// Requests per minute.
    pub per_minute: u32,
    /// The sampling seed every request gets.
    pub seed: u64,
    /// Where the usage is written after each request (read by the host when the proxy runs
    /// in a container).
    #[serde(skip)]
    pub usage_file: Option<PathBuf>,
    /// Time one upstream request may take.
    pub upstream_timeout: Duration,
}

impl ProxyConfig {
    /// A proxy for `upstream` allowing `models`, with the default cap and limits.
    pub fn new(upstream: &str, models: &[&str], seed: u64) -> ProxyConfig {
        ProxyConfig {
            upstream: upstream.trim_end_matches('/').to_owned(),
            api_key: None,
            models: models.iter().map(|m| resolve_model(m)).collect(),
            cap_usd: DEFAULT_CAP_USD,
            max_requests: 200,
            per_minute: 60,
            seed,
            usage_file: None,
            upstream_timeout: Duration::from_secs(300),
        }
    }
}

/// The fixed seed of a problem: the first 31 bits of the sha256 of its task id (small enough
/// for every server's seed type).
pub fn seed_for(task_id: &str) -> u64 {
    let h = Sha256::digest(task_id.as_bytes());
    u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x7fff_ffff)
}

/// Tokens, dollars and refusals of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyUsage {
    /// Requests answered by the upstream (any status).
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// True when some answer had no usage and its tokens were estimated.
    pub estimated: bool,
    /// Requests refused for a model outside the list (403).
    pub refused_model: u64,
    /// Requests refused past the dollar cap or the request count (429).
    pub refused_cap: u64,
    /// Requests refused past the rate (429).
    pub refused_rate: u64,
    /// Requests refused as malformed (400) or failed upstream (502).
    pub failed: u64,
}

struct Inner {
    cfg: ProxyConfig,
    http: reqwest::Client,
    usage: std::sync::Mutex<ProxyUsage>,
    recent: std::sync::Mutex<VecDeque<Instant>>,
    /// Held across an upstream call: one request at a time.
    serial: Mutex<()>,
}

/// A running proxy: its address, the run's usage, and a stop.
pub struct ProxyHandle {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// The run's usage so far.
    pub fn usage(&self) -> ProxyUsage {
        self.inner
            .usage
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    fn new(cfg: ProxyConfig) -> Inner {
        Inner {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(cfg.upstream_timeout)
                .build()
                .unwrap_or_default(),
            cfg,
            usage: std::sync::Mutex::new(ProxyUsage::default()),
            recent: std::sync::Mutex::new(VecDeque::new()),
            serial: Mutex::new(()),
        }
    }
}

/// Serves the proxy on `listener` until the handle is stopped or dropped.
pub fn spawn(listener: tokio::net::TcpListener, cfg: ProxyConfig) -> std::io::Result<ProxyHandle> {
    let addr = listener.local_addr()?;
    let inner = Arc::new(Inner::new(cfg));
    let app = router(inner.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "model proxy stopped");
        }
    });
    Ok(ProxyHandle { addr, inner, task })
}

/// Serves the proxy on `listener` until the process ends (the proxy container's command).
pub async fn serve_forever(
    listener: tokio::net::TcpListener,
    cfg: ProxyConfig,
) -> std::io::Result<()> {
    let inner = Arc::new(Inner::new(cfg));
    inner.write_usage();
    axum::serve(listener, router(inner)).await
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(inner)
}

/// An OpenAI-shaped error answer.
fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": kind, "code": kind}}).to_string(),
    )
        .into_response()
}

async fn models(State(inner): State<Arc<Inner>>) -> Response {
    let data: Vec<Value> = inner
        .cfg
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "agentao-proxy"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

impl Inner {
    fn count(&self, f: impl FnOnce(&mut ProxyUsage)) {
        if let Ok(mut u) = self.usage.lock() {
            f(&mut u);
        }
    }

    /// Takes a slot in the rate window, or says the rate is spent.
    fn take_rate(&self) -> bool {
        let Ok(mut recent) = self.recent.lock() else {
            return false;
        };
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            recent.pop_front();
        }
        if recent.len() >= self.cfg.per_minute as usize {
            return false;
        }
        recent.push_back(now);
        true
    }

    fn write_usage(&self) {
        let Some(path) = &self.cfg.usage_file else {
            return;
        };
        let usage = self.usage.lock().map(|u| u.clone()).unwrap_or_default();
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec(&usage).unwrap_or_default();
        if std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            warn!(path = %path.display(), "cannot write the proxy's usage");
        }
    }
}

async fn chat(State(inner): State<Arc<Inner>>, _headers: HeaderMap, body: Bytes) -> Response {
    let answer = chat_inner(&inner, &body).await;
    inner.write_usage();
    answer
}

async fn chat_inner(inner: &Inner, body: &[u8]) -> Response {
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        inner.count(|u| u.failed += 1);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body must be a JSON object",
        );
    };
    let model = match request.get("model") {
        None | Some(Value::Null) => inner.cfg.models.first().cloned().unwrap_or_default(),
        Some(Value::String(m)) => resolve_model(m),
        Some(_) => String::new(),
    };
    if !inner.cfg.models.contains(&model) {
        inner.count(|u| u.refused_model += 1);
        return error(
            StatusCode::FORBIDDEN,
            "model_not_allowed",
            &format!("model {model:?} is not allowed here"),
        );
    }
    // One request at a time: the cap below sees everything spent before this one.
    let _turn = inner.serial.lock().await;
    let (spent, made) = inner
        .usage
        .lock()
        .map(|u| (u.cost_usd, u.requests))
        .unwrap_or((f64::INFINITY, u64::MAX));
    if spent >= inner.cfg.cap_usd || made >= inner.cfg.max_requests {
        inner.count(|u| u.refused_cap += 1);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            &format!(
                "this run's model budget is spent (${spent:.4} of ${:.2}, {made} of {} requests)",
                inner.cfg.cap_usd, inner.cfg.max_requests
            ),
        );
    }
    if !inner.take_rate() {
        inner.count(|u| u.refused_rate += 1);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            &format!("more than {} requests a minute", inner.cfg.per_minute),
        );
    }
    request.insert("model".into(), Value::String(model.clone()));
    request.insert("seed".into(), json!(inner.cfg.seed));
    request.insert("stream".into(), Value::Bool(false));
    request.remove("stream_options");
    let prompt_chars = body.len() as u64;
    let mut call = inner
        .http
        .post(format!("{}/chat/completions", inner.cfg.upstream))
        .json(&Value::Object(request));
    if let Some(key) = &inner.cfg.api_key {
        call = call.bearer_auth(key);
    }
    let started = Instant::now();
    let answer = match call.send().await {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "model proxy: upstream unreachable");
            inner.count(|u| u.failed += 1);
            return error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the model endpoint did not answer",
            );
        }
    };
    let status = answer.status();
    let bytes = match read_capped(answer).await {
        Ok(b) => b,
        Err(why) => {
            inner.count(|u| u.failed += 1);
            return error(StatusCode::BAD_GATEWAY, "upstream_error", &why);
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let (prompt, completion, estimated) = match (status.is_success(), &parsed) {
        (false, _) => (0, 0, false),
        (true, Some(v)) => match (
            v["usage"]["prompt_tokens"].as_u64(),
            v["usage"]["completion_tokens"].as_u64(),
        ) {
            (Some(p), Some(c)) => (p, c, false),
            _ => {
                let text = v["choices"][0]["message"].to_string();
                (
                    prompt_chars.div_ceil(4),
                    (text.len() as u64).div_ceil(4),
                    true,
                )
            }
        },
        (true, None) => (
            prompt_chars.div_ceil(4),
            (bytes.len() as u64).div_ceil(4),
            true,
        ),
    };
    let cost = lookup(&model).map_or(0.0, |m| {
        (prompt as f64 * m.prompt_per_mtok + completion as f64 * m.completion_per_mtok) / 1e6
    });
    inner.count(|u| {
        u.requests += 1;
        u.prompt_tokens += prompt;
        u.completion_tokens += completion;
        u.cost_usd += cost;
        u.estimated |= estimated;
    });
    debug!(%model, %status, prompt, completion, cost, latency_s = started.elapsed().as_secs_f64(), "model proxy answered");
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn read_capped(mut answer: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_ANSWER {
                    return Err("the model's answer is too large".into());
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(format!("reading the model's answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_fixed_per_task_and_fits_31_bits() {
        assert_eq!(seed_for("tinycalc-1"), seed_for("tinycalc-1"));
        assert_ne!(seed_for("tinycalc-1"), seed_for("tinycalc-2"));
        assert!(seed_for("x") < (1 << 31));
    }

    #[test]
    fn the_key_is_never_serialised() {
        let mut cfg = ProxyConfig::new("http://x/v1", &["gpt4omini"], 1);
        cfg.api_key = Some("sk-secret".into());
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(!text.contains("sk-secret"), "{text}");
        assert_eq!(cfg.models, vec!["gpt-4o-mini".to_owned()]);
    }

    #[tokio::test]
    async fn the_rate_window_refuses_past_its_size() {
        let mut cfg = ProxyConfig::new("http://127.0.0.1:9/v1", &["m"], 1);
        cfg.per_minute = 2;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = spawn(listener, cfg).unwrap();
        assert!(handle.inner.take_rate());
        assert!(handle.inner.take_rate());
        assert!(!handle.inner.take_rate());
    }
}
