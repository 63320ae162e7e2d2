//! The axon: an HTTP/1.1 server (hyper, axum routing) answering `POST /{SynapseName}` the way
//! the Bittensor SDK's axon does. Before a handler sees a request: the `timeout` header (400
//! when it is not a number of seconds), the body's size (413) and arrival in time (408), the
//! JSON (400), the dendrite's hotkey, nonce and uuid, the nonce's freshness, the sr25519
//! signature over `{nonce}.{dendrite}.{axon}.{uuid}.{body_hash}` and the body against that
//! signed hash (401), the blacklist: unknown hotkey, no validator permit, too little stake
//! (403), the nonce's single use (401), priority by stake when busy (503), the handler under
//! the request's timeout (408). Every refusal is a JSON `{"message"}` with the SDK's
//! `bt_header_axon_*` headers, so an SDK dendrite reads its status, and a log line.
//!
//! Nonces. The SDK's axon takes a nonce if it is newer than the last one of the same
//! (hotkey, uuid), or, for the first one, no older than 4 s plus the request's `timeout`. It
//! verifies headers one request at a time on one event loop, in arrival order, so concurrent
//! calls from one SDK dendrite (increasing nonces, sent at once) all pass there. Our requests
//! are checked on several threads after their bodies arrived, so their order is lost; we keep
//! instead, per (hotkey, uuid), the nonces already used within the window (the newest 256;
//! older ones fold into a floor that works like the SDK's "last nonce"), and take a nonce that
//! was never used, is above the floor and is fresh. A replay is refused exactly as in the SDK;
//! an out-of-order arrival is taken, as the SDK's dendrite expects. Two more rules than the
//! SDK: the freshness window applies to every nonce, not just the first, and the `timeout`
//! that widens it (an unsigned header) counts for at most [`AxonConfig::max_window_timeout`]
//! (60 s: no never-seen request older than 64 s is taken, whatever it claims); and a nonce
//! older than the axon's own start is refused, so a request captured before a restart cannot be
//! replayed after it. The book lives in memory: refusing what predates the start needs no disk
//! write per request and loses nothing a restart could replay (a clock behind ours by `d`
//! seconds has its first `d` seconds of requests refused).
//!
//! Connections: at most [`AxonConfig::max_connections`] open at once (more wait in the
//! listen backlog), headers within [`AxonConfig::header_timeout`] (an idle keep-alive
//! connection is closed after it too), a body within [`AxonConfig::body_timeout`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

mod gate;
mod nonces;
mod serve;

use gate::Gate;
use nonces::NonceBook;
pub use serve::Serving;

use super::chain::Metagraph;
use super::exchanges::{AgentCode, Forecast, TaskBundle};
use super::synapse::{
    CodingTask, HASH_OF_NOTHING, PROTOCOL_VERSION, Synapse, SynapseBody, TerminalInfo,
};
use super::wallet::{Keypair, verify};

/// Nonces may be this much older than now (plus the request's timeout), as in the SDK.
const ALLOWED_DELTA_NS: i64 = 4_000_000_000;
/// The `timeout` a request without the header gets (the SDK's default).
const DEFAULT_TIMEOUT_S: f64 = 12.0;
/// Used nonces remembered per (hotkey, uuid); older ones fold into the floor.
const RECENT_PER_ENDPOINT: usize = 256;
/// (hotkey, uuid) pairs remembered at once; only callers that passed every check add one.
const MAX_ENDPOINTS: usize = 16_384;
/// The 503 message of a request that arrives while the axon stops.
pub const SHUTTING_DOWN: &str = "axon shutting down: not taking requests";
/// The 503 message of a request still being handled at the shutdown deadline.
pub const SHUT_DOWN_MID_REQUEST: &str =
    "axon shutting down: the request was not finished by the deadline";

/// What the axon accepts.
#[derive(Debug, Clone)]
pub struct AxonConfig {
    pub max_body_bytes: usize,
    /// Callers need a validator permit.
    pub require_validator_permit: bool,
    /// Callers need at least this stake (TAO).
    pub min_stake: f64,
    /// Requests handled at once; more wait, highest stake first.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; past that a request is answered 503 (busy) at once.
    pub max_waiting: usize,
    /// The largest `timeout` honoured as the handler's budget (the original validator gave
    /// miners 600 s).
    pub max_timeout: Duration,
    /// The most a request's `timeout` widens its nonce window (4 s + timeout). The header is
    /// unsigned, so this bounds how old a request never seen before may be.
    pub max_window_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A request's headers must arrive within this; an idle keep-alive connection is closed
    /// after it.
    pub header_timeout: Duration,
    /// A request's body must arrive within this (408 otherwise).
    pub body_timeout: Duration,
}

impl Default for AxonConfig {
    fn default() -> Self {
        AxonConfig {
            max_body_bytes: 1 << 20,
            require_validator_permit: true,
            min_stake: 0.0,
            max_concurrent: 16,
            max_waiting: usize::MAX,
            max_timeout: Duration::from_secs(3600),
            max_window_timeout: Duration::from_secs(60),
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

type Handler<T> = Arc<
    dyn Fn(Synapse<T>) -> Pin<Box<dyn Future<Output = Result<T, HandlerError>> + Send>>
        + Send
        + Sync,
>;

/// A handler that cannot answer: the caller gets this status and message instead of a
/// synapse (e.g. 503 from a miner whose model is down).
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerError {
    pub status: u16,
    pub message: String,
}

/// Counters for operators and tests.
#[derive(Debug, Default)]
pub struct AxonStats {
    pub handled: AtomicU64,
    pub refused: AtomicU64,
}

struct Inner {
    keypair: Keypair,
    uuid: String,
    metagraph: Arc<RwLock<Metagraph>>,
    nonces: Mutex<NonceBook>,
    cfg: AxonConfig,
    gate: Gate,
    coding: Option<Handler<CodingTask>>,
    forecast: Option<Handler<Forecast>>,
    agent_code: Option<Handler<AgentCode>>,
    bundles: Option<Handler<TaskBundle>>,
    stats: Arc<AxonStats>,
    /// Cancelled when the axon stops taking requests.
    stop: tokio_util::sync::CancellationToken,
    /// Cancelled when requests still being handled must be answered now (503).
    force: tokio_util::sync::CancellationToken,
    /// Requests being handled, by name, for the log at the shutdown deadline.
    in_flight: serve::InFlight,
}

/// An axon under construction.
pub struct Axon {
    inner: Inner,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Axon {
    /// A new axon; nonces signed before this moment are refused.
    pub fn new(keypair: Keypair, metagraph: Metagraph, cfg: AxonConfig) -> Axon {
        let permits = cfg.max_concurrent.max(1);
        Axon {
            inner: Inner {
                keypair,
                uuid: uuid::Uuid::new_v4().to_string(),
                metagraph: Arc::new(RwLock::new(metagraph)),
                nonces: Mutex::new(NonceBook::new(now_ns())),
                gate: Gate::new(permits),
                cfg,
                coding: None,
                forecast: None,
                agent_code: None,
                bundles: None,
                stats: Arc::new(AxonStats::default()),
                stop: Default::default(),
                force: Default::default(),
                in_flight: Default::default(),
            },
        }
    }

    /// Serves `CodingTask` with `f`.
    pub fn coding_task<F, Fut>(self, f: F) -> Axon
    where
        F: Fn(Synapse<CodingTask>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CodingTask> + Send + 'static,
    {
        self.coding_task_or_error(move |s| {
            let answer = f(s);
            async move { Ok(answer.await) }
        })
    }

    /// Serves `CodingTask` with `f`, which may answer with an error status instead.
    pub fn coding_task_or_error<F, Fut>(mut self, f: F) -> Axon
    where
        F: Fn(Synapse<CodingTask>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CodingTask, HandlerError>> + Send + 'static,
    {
        self.inner.coding = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Serves `Forecast` with `f`.
    pub fn forecast<F, Fut>(mut self, f: F) -> Axon
    where
        F: Fn(Synapse<Forecast>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Forecast> + Send + 'static,
    {
        self.inner.forecast = Some(Arc::new(move |s| {
            let answer = f(s);
            Box::pin(async move { Ok(answer.await) })
        }));
        self
    }

    /// Serves `AgentCode` with `f`.
    pub fn agent_code<F, Fut>(mut self, f: F) -> Axon
    where
        F: Fn(Synapse<AgentCode>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AgentCode> + Send + 'static,
    {
        self.inner.agent_code = Some(Arc::new(move |s| {
            let answer = f(s);
            Box::pin(async move { Ok(answer.await) })
        }));
        self
    }

    /// Serves `TaskBundle` with `f`, which may answer with an error status (404: unknown).
    pub fn task_bundle<F, Fut>(mut self, f: F) -> Axon
    where
        F: Fn(Synapse<TaskBundle>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<TaskBundle, HandlerError>> + Send + 'static,
    {
        self.inner.bundles = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// The axon's own key (a neuron signs its requests with the key it serves under).
    pub fn keypair(&self) -> &Keypair {
        &self.inner.keypair
    }

    /// The metagraph the blacklist reads; replace its contents to follow the chain.
    pub fn metagraph_handle(&self) -> Arc<RwLock<Metagraph>> {
        self.inner.metagraph.clone()
    }

    pub fn stats(&self) -> Arc<AxonStats> {
        self.inner.stats.clone()
    }

    /// Serves on `listener` until the task is aborted: HTTP/1.1, at most `max_connections`
    /// connections at once, headers within `header_timeout`. [`Axon::serve_gracefully`] for
    /// an axon that can be stopped with its requests answered.
    pub fn serve(self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        self.serve_gracefully(listener).into_task()
    }
}

/// A refusal: status and message.
pub(super) struct Refusal(u16, String);

async fn dispatch(
    State(state): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let name = uri.path().trim_start_matches('/').to_owned();
    let caller = header(&headers, "bt_header_dendrite_hotkey").unwrap_or("?");
    let _in_flight = state.in_flight.enter(format!("{name} from {caller}"));
    let result = match name.as_str() {
        _ if state.stop.is_cancelled() => Err(Refusal(503, SHUTTING_DOWN.into())),
        "CodingTask" => match state.coding.clone() {
            Some(h) => handle(&state, &headers, body, h, started).await,
            None => Err(Refusal(404, "synapse CodingTask is not served here".into())),
        },
        "Forecast" => match state.forecast.clone() {
            Some(h) => handle(&state, &headers, body, h, started).await,
            None => Err(Refusal(404, "synapse Forecast is not served here".into())),
        },
        "AgentCode" => match state.agent_code.clone() {
            Some(h) => handle(&state, &headers, body, h, started).await,
            None => Err(Refusal(404, "synapse AgentCode is not served here".into())),
        },
        "TaskBundle" => match state.bundles.clone() {
            Some(h) => handle(&state, &headers, body, h, started).await,
            None => Err(Refusal(404, "synapse TaskBundle is not served here".into())),
        },
        other => Err(Refusal(404, format!("unknown synapse {other:?}"))),
    };
    match result {
        Ok(resp) => {
            state.stats.handled.fetch_add(1, Ordering::Relaxed);
            resp
        }
        Err(Refusal(code, message)) => {
            state.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(synapse = %name, caller, status = code, "refused: {message}");
            let mut resp = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(serde_json::json!({"message": message})),
            )
                .into_response();
            let axon = TerminalInfo {
                status_code: Some(code.into()),
                status_message: Some(message),
                process_time: Some(started.elapsed().as_secs_f64()),
                ..answering_axon(&state, &headers)
            };
            let h = resp.headers_mut();
            put(h, "name", &name);
            for (k, v) in axon.headers("axon") {
                put(h, &k, &v);
            }
            resp
        }
    }
}

/// Who answers, as the SDK's axon fills it: the address the dendrite called (echoed from its
/// `bt_header_axon_ip`/`_port`, so `r.axon.ip` is set on the SDK's side), our hotkey, version
/// and uuid, a nonce of ours.
fn answering_axon(state: &Inner, headers: &HeaderMap) -> TerminalInfo {
    let called = TerminalInfo::from_headers("axon", header_pairs(headers));
    TerminalInfo {
        ip: called.ip,
        port: called.port,
        version: Some(PROTOCOL_VERSION),
        nonce: Some(now_ns()),
        uuid: Some(state.uuid.clone()),
        hotkey: Some(state.keypair.ss58()),
        ..TerminalInfo::default()
    }
}

fn put(h: &mut HeaderMap, k: &str, v: &str) {
    if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(v)) {
        h.insert(k, v);
    }
}

fn header<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

fn header_pairs(h: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    h.iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
}

/// The request's `timeout` in seconds, capped at `max`; absent means the SDK's 12 s.
fn request_timeout(headers: &HeaderMap, max: Duration) -> Result<f64, Refusal> {
    let Some(raw) = headers.get("timeout") else {
        return Ok(DEFAULT_TIMEOUT_S.min(max.as_secs_f64()));
    };
    let t = raw
        .to_str()
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| *t >= 0.0 && !t.is_nan())
        .ok_or_else(|| {
            Refusal(
                400,
                format!(
                    "timeout header {:?} is not a number of seconds >= 0",
                    String::from_utf8_lossy(raw.as_bytes())
                ),
            )
        })?;
    Ok(t.min(max.as_secs_f64()))
}

/// The body, read as it streams in: refused past `max` bytes or after `deadline`.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    deadline: Duration,
) -> Result<Vec<u8>, Refusal> {
    let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max as u64
    {
        return Err(Refusal(413, format!("body of {len} bytes exceeds {max}")));
    }
    let read = async {
        let mut out = Vec::with_capacity(declared.map_or(0, |l| l as usize));
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Refusal(400, format!("body unreadable: {e}")))?;
            if out.len() + chunk.len() > max {
                return Err(Refusal(413, format!("body exceeds {max} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| Refusal(408, format!("body not received within {:?}", deadline)))?
}

async fn handle<T: SynapseBody>(
    state: &Inner,
    headers: &HeaderMap,
    body: Body,
    handler: Handler<T>,
    started: Instant,
) -> Result<Response, Refusal> {
    let cfg = &state.cfg;
    let timeout = request_timeout(headers, cfg.max_timeout)?;
    let body = read_body(headers, body, cfg.max_body_bytes, cfg.body_timeout).await?;
    let dendrite = TerminalInfo::from_headers("dendrite", header_pairs(headers));
    let mut synapse: Synapse<T> = serde_json::from_slice(&body)
        .map_err(|e| Refusal(400, format!("malformed synapse JSON: {e}")))?;
    drop(body);

    // Authentication: fresh nonce, signature over the claimed hash, body against that hash.
    let (Some(hotkey), Some(nonce), Some(uuid)) =
        (&dendrite.hotkey, dendrite.nonce, &dendrite.uuid)
    else {
        return Err(Refusal(
            401,
            "missing dendrite hotkey, nonce or uuid".into(),
        ));
    };
    let Some(signature) = &dendrite.signature else {
        return Err(Refusal(401, "missing signature".into()));
    };
    let claimed = header(headers, "computed_body_hash").unwrap_or("");
    let endpoint = format!("{hotkey}:{uuid}");
    let widest = cfg.max_window_timeout.as_nanos().min(i64::MAX as u128) as i64;
    let widening = ((timeout * 1e9) as i64).min(widest);
    let window = |now: i64| {
        now.saturating_sub(ALLOWED_DELTA_NS)
            .saturating_sub(widening)
    };
    let horizon = |now: i64| now.saturating_sub(ALLOWED_DELTA_NS).saturating_sub(widest);
    {
        let now = now_ns();
        let book = state.nonces.lock().expect("nonce lock");
        book.check(&endpoint, nonce, now, window(now))?;
    }
    let sig = hex::decode(signature.trim_start_matches("0x"))
        .map_err(|_| Refusal(401, "signature is not hex".into()))?;
    let message = format!("{nonce}.{hotkey}.{}.{uuid}.{claimed}", state.keypair.ss58());
    if !verify(hotkey, message.as_bytes(), &sig) {
        return Err(Refusal(401, "signature mismatch".into()));
    }
    // The SDK's axon answers a body that does not match its signed hash with a 500 (a
    // ValueError in its body check); it is an authentication failure, so 401 here.
    let bound = claimed == synapse.body_hash()
        || (claimed == HASH_OF_NOTHING && synapse.body.original_shape());
    if !bound {
        return Err(Refusal(
            401,
            format!(
                "body does not match its signed computed_body_hash (the hash covers {:?})",
                T::REQUIRED_HASH_FIELDS
            ),
        ));
    }

    // Blacklist.
    let stake = {
        let mg = state.metagraph.read().expect("metagraph lock");
        let Some(n) = mg.by_hotkey(hotkey) else {
            return Err(Refusal(403, format!("hotkey {hotkey} is not registered")));
        };
        if cfg.require_validator_permit && !n.validator_permit {
            return Err(Refusal(403, "caller has no validator permit".into()));
        }
        if n.stake < cfg.min_stake {
            return Err(Refusal(
                403,
                format!("stake {} below the minimum {}", n.stake, cfg.min_stake),
            ));
        }
        n.stake
    };
    {
        // Only a request that passed every check uses its nonce up.
        let now = now_ns();
        let mut book = state.nonces.lock().expect("nonce lock");
        book.commit(&endpoint, nonce, now, window(now), horizon(now))?;
    }

    // Priority, then the handler under the request's timeout.
    let budget = Duration::from_secs_f64(timeout.max(0.001));
    let busy = || {
        Refusal(
            503,
            "busy: requests of higher stake are served first".into(),
        )
    };
    let permit = tokio::select! {
        p = state.gate.acquire(stake, budget, cfg.max_waiting) => p,
        _ = state.stop.cancelled() => return Err(Refusal(503, SHUTTING_DOWN.into())),
    };
    let Some(_permit) = permit else {
        return Err(busy());
    };
    let left = budget.saturating_sub(started.elapsed());
    synapse.dendrite = Some(dendrite.clone());
    let answer = tokio::select! {
        a = tokio::time::timeout(left, handler(synapse.clone())) => a
            .map_err(|_| Refusal(408, format!("handler exceeded the {timeout}s timeout")))?
            .map_err(|e| Refusal(e.status, e.message))?,
        _ = state.force.cancelled() => return Err(Refusal(503, SHUT_DOWN_MID_REQUEST.into())),
    };
    synapse.body = answer;
    synapse.timeout = timeout;
    let axon = TerminalInfo {
        status_code: Some(200),
        status_message: Some("Success".into()),
        process_time: Some(started.elapsed().as_secs_f64()),
        ..answering_axon(state, headers)
    };
    synapse.axon = Some(axon);
    synapse.computed_body_hash = String::new();
    let json = serde_json::to_vec(&synapse).map_err(|e| Refusal(500, e.to_string()))?;
    synapse.total_size = json.len() as i64;
    let mut out = synapse.to_headers();
    let header_size: usize = out.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    for (k, v) in out.iter_mut() {
        if k == "header_size" {
            *v = header_size.to_string();
        }
    }
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    let h = resp.headers_mut();
    for (k, v) in out {
        put(h, &k, &v);
    }
    Ok(resp)
}
