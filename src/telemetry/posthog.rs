//! Opt-in product telemetry through posthog-rs: off unless a PostHog project key is given.
//!
//! posthog-rs (0.30) builds and sends the batches (`/batch/` on the configured host, its event
//! format and library properties). Its own fire-and-forget queue does not say what became of
//! an event (no success hook; events cut off by its shutdown are not reported), so we queue
//! ourselves: `capture` is a `try_send` on a bounded channel (a full one drops and counts), and
//! one background task sends a batch every [`FLUSH_INTERVAL`] through the SDK's
//! `capture_batch_immediate`, each bounded by [`REQUEST_TIMEOUT`]; a batch that fails or times
//! out is dropped and counted. A PostHog that is down or slow costs events, never a round.
//!
//! What is sent is only what [`Event`] names: kinds, counts, scores, seconds, dollars, tokens,
//! and the model and agent names a miner reported, scrubbed of anything that looks like a file
//! path or an IP address. Never patches, problem statements, keys, paths or addresses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Events waiting to be sent at most; beyond that new ones are dropped (and counted).
pub const MAX_QUEUE: usize = 1000;
/// How often the background worker sends what it has.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// How long one batch request may take before it is given up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Events in one batch request at most.
pub const MAX_BATCH: usize = 100;
/// How long shutting down may wait for the last batch.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest model or agent name sent.
const MAX_NAME: usize = 80;

/// Where and as whom to send.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The PostHog project key (`POSTHOG_API_KEY`).
    pub api_key: String,
    /// The PostHog host (`POSTHOG_HOST`; posthog-rs's US host when `None`).
    pub host: Option<String>,
    /// Who the events are about: the neuron's hotkey (SS58).
    pub distinct_id: String,
}

/// One thing worth counting. Every field is a kind, a number or a scrubbed name.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    RoundStarted {
        round_id: String,
        miners: usize,
    },
    RoundFinished {
        round_id: String,
        answers: usize,
        resolved: usize,
        seconds: f64,
    },
    AnswerScored {
        round_id: String,
        miner_uid: u16,
        /// The outcome's kind (`resolved`, `patch_rejected`, `timeout`, ...).
        outcome: String,
        score: f64,
        latency_s: f64,
        cost_usd: f64,
        prompt_tokens: u64,
        completion_tokens: u64,
        model: String,
        agent: String,
    },
    TaskForged {
        package: String,
        kind: String,
        seconds: f64,
    },
    TaskHarvested {
        package: String,
        kind: String,
        seconds: f64,
    },
    /// Something failed; `kind` is a fixed name (`round`, `weights`, `metagraph`, ...).
    Error {
        kind: String,
    },
}

impl Event {
    /// The PostHog event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RoundStarted { .. } => "round_started",
            Event::RoundFinished { .. } => "round_finished",
            Event::AnswerScored { .. } => "answer_scored",
            Event::TaskForged { .. } => "task_forged",
            Event::TaskHarvested { .. } => "task_harvested",
            Event::Error { .. } => "error",
        }
    }

    /// The event's properties, scrubbed.
    pub fn properties(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::json;
        match self {
            Event::RoundStarted { round_id, miners } => {
                vec![
                    ("round_id", json!(scrub(round_id))),
                    ("miners", json!(miners)),
                ]
            }
            Event::RoundFinished {
                round_id,
                answers,
                resolved,
                seconds,
            } => vec![
                ("round_id", json!(scrub(round_id))),
                ("answers", json!(answers)),
                ("resolved", json!(resolved)),
                ("seconds", json!(seconds)),
            ],
            Event::AnswerScored {
                round_id,
                miner_uid,
                outcome,
                score,
                latency_s,
                cost_usd,
                prompt_tokens,
                completion_tokens,
                model,
                agent,
            } => vec![
                ("round_id", json!(scrub(round_id))),
                ("miner_uid", json!(miner_uid)),
                ("outcome", json!(scrub(outcome))),
                ("score", json!(score)),
                ("latency_s", json!(latency_s)),
                ("cost_usd", json!(cost_usd)),
                ("prompt_tokens", json!(prompt_tokens)),
                ("completion_tokens", json!(completion_tokens)),
                ("model", json!(scrub(model))),
                ("agent", json!(scrub(agent))),
            ],
            Event::TaskForged {
                package,
                kind,
                seconds,
            }
            | Event::TaskHarvested {
                package,
                kind,
                seconds,
            } => vec![
                ("package", json!(scrub(package))),
                ("kind", json!(scrub(kind))),
                ("seconds", json!(seconds)),
            ],
            Event::Error { kind } => vec![("kind", json!(scrub(kind)))],
        }
    }
}

/// A free-form name made safe to send: cut to [`MAX_NAME`] characters, and replaced by
/// `redacted` when it looks like a file path or holds an IP address.
pub fn scrub(name: &str) -> String {
    let looks_like_path = name.starts_with('/')
        || name.starts_with('~')
        || name.starts_with("./")
        || name.starts_with("..")
        || name.contains('\\')
        || name.contains("/.")
        || name.contains("//");
    if looks_like_path || holds_ip(name) || name.chars().any(char::is_control) {
        return "redacted".into();
    }
    name.chars().take(MAX_NAME).collect()
}

/// Whether `s` holds an IPv4 or IPv6 address anywhere in it.
fn holds_ip(s: &str) -> bool {
    s.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .any(|w| {
            let w = w.trim_matches('.');
            w.parse::<std::net::IpAddr>().is_ok()
                || w.parse::<std::net::SocketAddr>().is_ok()
                || w.rsplit_once(':')
                    .is_some_and(|(h, _)| h.parse::<std::net::Ipv4Addr>().is_ok())
        })
}

#[derive(Default)]
struct Counters {
    captured: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

struct Inner {
    tx: tokio::sync::mpsc::Sender<posthog_rs::Event>,
    distinct_id: String,
    counters: Arc<Counters>,
    stop: tokio_util::sync::CancellationToken,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The telemetry handle: cheap to clone, and a no-op when off.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

impl Telemetry {
    /// Telemetry that sends nothing.
    pub fn off() -> Telemetry {
        Telemetry::default()
    }

    /// Starts the background sender for `config`; off when the key is blank.
    pub async fn start(config: TelemetryConfig) -> Telemetry {
        if config.api_key.trim().is_empty() {
            return Telemetry::off();
        }
        let mut builder = posthog_rs::ClientOptionsBuilder::default();
        builder
            .api_key(config.api_key)
            .disable_geoip(true)
            .request_timeout_seconds(REQUEST_TIMEOUT.as_secs())
            .max_capture_attempts(1u32)
            .shutdown_timeout_ms(SHUTDOWN_TIMEOUT.as_millis() as u64);
        if let Some(host) = config.host.filter(|h| !h.trim().is_empty()) {
            builder.host(host);
        }
        let options = match builder.build() {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "telemetry off: bad PostHog options");
                return Telemetry::off();
            }
        };
        let client = posthog_rs::client(options).await;
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_QUEUE);
        let counters = Arc::new(Counters::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let worker = tokio::spawn(send_loop(client, rx, counters.clone(), stop.clone()));
        tracing::info!("telemetry on (PostHog)");
        Telemetry {
            inner: Some(Arc::new(Inner {
                tx,
                distinct_id: config.distinct_id,
                counters,
                stop,
                worker: Mutex::new(Some(worker)),
            })),
        }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `event` for the background sender; never waits, never fails. A full queue
    /// drops the event and counts it.
    pub fn capture(&self, event: Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut e = posthog_rs::Event::new(event.name(), inner.distinct_id.as_str());
        for (k, v) in event.properties() {
            let _ = e.insert_prop(k, v);
        }
        inner.counters.captured.fetch_add(1, Ordering::Relaxed);
        if inner.tx.try_send(e).is_err() {
            inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped so far (queue full, or their batch was not delivered in time).
    pub fn dropped(&self) -> u64 {
        self.count(|c| &c.dropped)
    }

    /// Events delivered so far.
    pub fn sent(&self) -> u64 {
        self.count(|c| &c.sent)
    }

    /// Events handed to the sender so far.
    pub fn captured(&self) -> u64 {
        self.count(|c| &c.captured)
    }

    fn count(&self, which: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| which(&i.counters).load(Ordering::Relaxed))
    }

    /// Sends what is queued (bounded by [`SHUTDOWN_TIMEOUT`]) and stops the sender; logs how
    /// many events were sent and dropped.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        inner.stop.cancel();
        let worker = inner.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = worker {
            let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT * 2, w).await;
        }
        tracing::info!(
            captured = self.captured(),
            sent = self.sent(),
            dropped = self.dropped(),
            "telemetry stopped"
        );
    }
}

/// The background sender: a batch every [`FLUSH_INTERVAL`] (or at [`MAX_BATCH`] events),
/// each given [`REQUEST_TIMEOUT`]; a batch that fails or times out is dropped and counted.
async fn send_loop(
    client: posthog_rs::Client,
    mut rx: tokio::sync::mpsc::Receiver<posthog_rs::Event>,
    counters: Arc<Counters>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
            e = rx.recv() => match e {
                Some(e) => {
                    batch.push(e);
                    if batch.len() < MAX_BATCH {
                        continue;
                    }
                    false
                }
                None => true,
            },
        };
        if stopping {
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
        }
        for chunk in std::mem::take(&mut batch).chunks(MAX_BATCH) {
            let limit = if stopping {
                SHUTDOWN_TIMEOUT
            } else {
                REQUEST_TIMEOUT
            };
            send(&client, chunk.to_vec(), &counters, limit).await;
        }
        if stopping {
            return;
        }
    }
}

async fn send(
    client: &posthog_rs::Client,
    batch: Vec<posthog_rs::Event>,
    counters: &Counters,
    limit: Duration,
) {
    let n = batch.len() as u64;
    match tokio::time::timeout(limit, client.capture_batch_immediate(batch, false)).await {
        Ok(Ok(_)) => {
            counters.sent.fetch_add(n, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            counters.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::debug!(error = %e, events = n, "telemetry batch dropped");
        }
        Err(_) => {
            counters.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::debug!(events = n, "telemetry batch timed out; dropped");
        }
    }
}

static GLOBAL: OnceLock<Telemetry> = OnceLock::new();

/// Makes `t` the process's telemetry (the CLI does this once; later calls change nothing).
pub fn install(t: Telemetry) {
    let _ = GLOBAL.set(t);
}

/// The process's telemetry (off until [`install`]ed).
pub fn global() -> Telemetry {
    GLOBAL.get().cloned().unwrap_or_default()
}

/// Captures `event` on the process's telemetry: one line at each place worth counting.
pub fn capture(event: Event) {
    if let Some(t) = GLOBAL.get() {
        t.capture(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_like_paths_or_addresses_are_redacted() {
        for bad in [
            "/root/.bittensor/wallets/v",
            "~/secret",
            "../../wallets",
            "C:\\keys",
            "10.0.0.7",
            "model@192.168.1.1:8091",
            "[::1]:80",
            "fe80::1",
            "x\ny",
        ] {
            assert_eq!(scrub(bad), "redacted", "{bad}");
        }
        for good in [
            "gpt-4o-mini",
            "openai/gpt-4o",
            "smollm2-135m",
            "agentao-agent 0.1.0",
        ] {
            assert_eq!(scrub(good), good);
        }
        assert_eq!(scrub(&"a".repeat(500)).len(), MAX_NAME);
    }

    #[test]
    fn every_event_carries_only_its_documented_fields() {
        let scored = Event::AnswerScored {
            round_id: "r-0".into(),
            miner_uid: 3,
            outcome: "resolved".into(),
            score: 0.9,
            latency_s: 12.5,
            cost_usd: 0.01,
            prompt_tokens: 10,
            completion_tokens: 5,
            model: "/home/me/model.gguf".into(),
            agent: "agentao".into(),
        };
        let keys: Vec<_> = scored.properties().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "round_id",
                "miner_uid",
                "outcome",
                "score",
                "latency_s",
                "cost_usd",
                "prompt_tokens",
                "completion_tokens",
                "model",
                "agent"
            ]
        );
        let model = &scored.properties()[8].1;
        assert_eq!(model, "redacted", "a path as model name is not sent");
        let forged = Event::TaskForged {
            package: "idna".into(),
            kind: "flip_comparison".into(),
            seconds: 40.0,
        };
        assert_eq!(forged.name(), "task_forged");
        let keys: Vec<_> = forged.properties().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["package", "kind", "seconds"]);
    }

    #[test]
    fn off_captures_nothing() {
        let t = Telemetry::off();
        t.capture(Event::Error { kind: "x".into() });
        assert_eq!((t.captured(), t.dropped(), t.is_on()), (0, 0, false));
    }
}
