//! The axon: an HTTP server (axum) answering `POST /{SynapseName}` the way the Bittensor SDK's
//! axon does. Before a handler sees a request: body size limit (413), headers and JSON (400),
//! body hash (400), nonce freshness and monotonicity per (hotkey, uuid) and the sr25519
//! signature over `{nonce}.{dendrite}.{axon}.{uuid}.{body_hash}` (401), blacklist: unknown
//! hotkey, no validator permit, too little stake (403), priority by stake when busy (503), the
//! handler under the request's timeout (408). Every refusal is logged with its reason.

use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::oneshot;

use super::chain::Metagraph;
use super::synapse::{CodingTask, Forecast, Synapse, SynapseBody, TerminalInfo};
use super::wallet::{Keypair, verify};

/// Nonces may be this much older than now (plus the request's timeout), as in the SDK.
const ALLOWED_DELTA_NS: i64 = 4_000_000_000;

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
}

impl Default for AxonConfig {
    fn default() -> Self {
        AxonConfig {
            max_body_bytes: 1 << 20,
            require_validator_permit: true,
            min_stake: 0.0,
            max_concurrent: 16,
        }
    }
}

type Handler<T> = Arc<
    dyn Fn(Synapse<T>) -> Pin<Box<dyn Future<Output = Result<T, HandlerError>> + Send>>
        + Send
        + Sync,
>;

/// A handler that cannot answer: the caller gets this status and message instead of a
/// synapse (e.g. 500 from a miner whose model is down).
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
    metagraph: Arc<RwLock<Metagraph>>,
    nonces: Mutex<HashMap<String, i64>>,
    cfg: AxonConfig,
    gate: Gate,
    coding: Option<Handler<CodingTask>>,
    forecast: Option<Handler<Forecast>>,
    stats: Arc<AxonStats>,
}

/// An axon under construction.
pub struct Axon {
    inner: Inner,
}

impl Axon {
    pub fn new(keypair: Keypair, metagraph: Metagraph, cfg: AxonConfig) -> Axon {
        let permits = cfg.max_concurrent.max(1);
        Axon {
            inner: Inner {
                keypair,
                metagraph: Arc::new(RwLock::new(metagraph)),
                nonces: Mutex::new(HashMap::new()),
                gate: Gate::new(permits),
                cfg,
                coding: None,
                forecast: None,
                stats: Arc::new(AxonStats::default()),
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

    /// The metagraph the blacklist reads; replace its contents to follow the chain.
    pub fn metagraph_handle(&self) -> Arc<RwLock<Metagraph>> {
        self.inner.metagraph.clone()
    }

    pub fn stats(&self) -> Arc<AxonStats> {
        self.inner.stats.clone()
    }

    /// Serves on `listener` until the task is dropped or aborted.
    pub fn serve(self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let max = self.inner.cfg.max_body_bytes;
        let state = Arc::new(self.inner);
        let app = axum::Router::new()
            .route("/{name}", post(dispatch))
            // The size check below answers first; this is the backstop for chunked bodies.
            .layer(DefaultBodyLimit::max(max + 1))
            .with_state(state);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("axon stopped: {e}");
            }
        })
    }
}

/// A refusal: status and message.
struct Refusal(u16, String);

async fn dispatch(
    State(state): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let result = match name.as_str() {
        "CodingTask" => match state.coding.clone() {
            Some(h) => handle(&state, &headers, &body, h, started).await,
            None => Err(Refusal(404, "synapse CodingTask is not served here".into())),
        },
        "Forecast" => match state.forecast.clone() {
            Some(h) => handle(&state, &headers, &body, h, started).await,
            None => Err(Refusal(404, "synapse Forecast is not served here".into())),
        },
        other => Err(Refusal(404, format!("unknown synapse {other}"))),
    };
    match result {
        Ok(resp) => {
            state.stats.handled.fetch_add(1, Ordering::Relaxed);
            resp
        }
        Err(Refusal(code, message)) => {
            state.stats.refused.fetch_add(1, Ordering::Relaxed);
            let caller = headers
                .get("bt_header_dendrite_hotkey")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            tracing::warn!(synapse = %name, caller, status = code, "refused: {message}");
            let mut resp = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(serde_json::json!({"message": message})),
            )
                .into_response();
            let h = resp.headers_mut();
            put(h, "bt_header_axon_status_code", &code.to_string());
            put(h, "bt_header_axon_status_message", &message);
            resp
        }
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

async fn handle<T: SynapseBody>(
    state: &Inner,
    headers: &HeaderMap,
    body: &[u8],
    handler: Handler<T>,
    started: Instant,
) -> Result<Response, Refusal> {
    if body.len() > state.cfg.max_body_bytes {
        return Err(Refusal(
            413,
            format!(
                "body of {} bytes exceeds {}",
                body.len(),
                state.cfg.max_body_bytes
            ),
        ));
    }
    let dendrite = TerminalInfo::from_headers(
        "dendrite",
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    );
    let timeout: f64 = header(headers, "timeout")
        .and_then(|t| t.parse().ok())
        .unwrap_or(12.0);
    let mut synapse: Synapse<T> = serde_json::from_slice(body)
        .map_err(|e| Refusal(400, format!("malformed synapse JSON: {e}")))?;
    let body_hash = synapse.body_hash();
    let claimed = header(headers, "computed_body_hash").unwrap_or("");
    if claimed != body_hash {
        return Err(Refusal(
            400,
            "body hash does not match computed_body_hash".into(),
        ));
    }

    // Authentication.
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
    let sig = hex::decode(signature.trim_start_matches("0x"))
        .map_err(|_| Refusal(401, "signature is not hex".into()))?;
    let message = format!("{nonce}.{hotkey}.{}.{uuid}.{claimed}", state.keypair.ss58());
    let endpoint = format!("{hotkey}:{uuid}");
    {
        let nonces = state.nonces.lock().expect("nonce lock");
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let window = now - ALLOWED_DELTA_NS - (timeout * 1e9) as i64;
        match nonces.get(&endpoint) {
            None if nonce <= window => {
                return Err(Refusal(
                    401,
                    format!("nonce is too old: {:.2}s", (now - nonce) as f64 / 1e9),
                ));
            }
            Some(last) if nonce <= *last => {
                return Err(Refusal(
                    401,
                    "nonce is not newer than the last one processed".into(),
                ));
            }
            _ => {}
        }
    }
    if !verify(hotkey, message.as_bytes(), &sig) {
        return Err(Refusal(401, "signature mismatch".into()));
    }

    // Blacklist.
    let stake = {
        let mg = state.metagraph.read().expect("metagraph lock");
        let Some(n) = mg.by_hotkey(hotkey) else {
            return Err(Refusal(403, format!("hotkey {hotkey} is not registered")));
        };
        if state.cfg.require_validator_permit && !n.validator_permit {
            return Err(Refusal(403, "caller has no validator permit".into()));
        }
        if n.stake < state.cfg.min_stake {
            return Err(Refusal(
                403,
                format!(
                    "stake {} below the minimum {}",
                    n.stake, state.cfg.min_stake
                ),
            ));
        }
        n.stake
    };
    {
        // Only a request that passed every check moves the nonce on.
        let mut nonces = state.nonces.lock().expect("nonce lock");
        let last = nonces.entry(endpoint).or_insert(nonce);
        if nonce > *last {
            *last = nonce;
        }
    }

    // Priority, then the handler under the request's timeout.
    let budget = Duration::from_secs_f64(timeout.max(0.001));
    let Some(_permit) = state.gate.acquire(stake, budget).await else {
        return Err(Refusal(
            503,
            "busy: requests of higher stake are served first".into(),
        ));
    };
    let left = budget.saturating_sub(started.elapsed());
    synapse.dendrite = Some(dendrite.clone());
    let answer = tokio::time::timeout(left, handler(synapse.clone()))
        .await
        .map_err(|_| Refusal(408, format!("handler exceeded the {timeout}s timeout")))?
        .map_err(|e| Refusal(e.status, e.message))?;
    synapse.body = answer;
    let axon = TerminalInfo {
        status_code: Some(200),
        status_message: Some("Success".into()),
        process_time: Some(started.elapsed().as_secs_f64()),
        hotkey: Some(state.keypair.ss58()),
        version: Some(super::synapse::PROTOCOL_VERSION),
        ..TerminalInfo::default()
    };
    synapse.axon = Some(axon.clone());
    let mut resp = axum::Json(&synapse).into_response();
    let h = resp.headers_mut();
    for (k, v) in axon
        .headers("axon")
        .into_iter()
        .chain(dendrite.headers("dendrite"))
    {
        put(h, &k, &v);
    }
    Ok(resp)
}

/// Concurrency limit that hands free slots to the highest stake waiting.
struct Gate {
    state: Arc<Mutex<GateState>>,
}

struct GateState {
    free: usize,
    seq: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    stake: u64,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        (self.stake, self.seq) == (o.stake, o.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    /// Higher stake first, then first come.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.stake.cmp(&o.stake).then(o.seq.cmp(&self.seq))
    }
}

struct Permit {
    state: Arc<Mutex<GateState>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        release(&self.state);
    }
}

fn release(state: &Arc<Mutex<GateState>>) {
    let mut s = state.lock().expect("gate lock");
    while let Some(w) = s.waiting.pop() {
        if w.tx.send(()).is_ok() {
            return;
        }
    }
    s.free += 1;
}

impl Gate {
    fn new(permits: usize) -> Gate {
        Gate {
            state: Arc::new(Mutex::new(GateState {
                free: permits,
                seq: 0,
                waiting: BinaryHeap::new(),
            })),
        }
    }

    async fn acquire(&self, stake: f64, wait: Duration) -> Option<Permit> {
        let mut rx = {
            let mut s = self.state.lock().expect("gate lock");
            if s.free > 0 {
                s.free -= 1;
                return Some(Permit {
                    state: self.state.clone(),
                });
            }
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter {
                stake: (stake.max(0.0) * 1e9) as u64,
                seq,
                tx,
            });
            rx
        };
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(())) => Some(Permit {
                state: self.state.clone(),
            }),
            _ => {
                // Granted just as we gave up: pass the slot on.
                rx.close();
                if rx.try_recv().is_ok() {
                    release(&self.state);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn free_slots_go_to_the_highest_stake() {
        let gate = Arc::new(Gate::new(1));
        let first = gate.acquire(1.0, Duration::from_secs(1)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for stake in [1.0, 50.0, 10.0] {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = g.acquire(stake, Duration::from_secs(5)).await.unwrap();
                o.lock().unwrap().push(stake as u32);
                drop(p);
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [50, 10, 1]);
        // A waiter that gives up gets nothing and costs nothing.
        let held = gate.acquire(1.0, Duration::from_secs(1)).await.unwrap();
        assert!(gate.acquire(1.0, Duration::from_millis(20)).await.is_none());
        drop(held);
        assert!(gate.acquire(1.0, Duration::from_millis(20)).await.is_some());
    }
}
