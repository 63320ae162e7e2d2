//! The accept loop and its graceful stop. [`Serving::shutdown`] stops taking connections (the
//! listener is closed), lets every open connection finish the request it is handling and
//! closes it after (hyper's graceful shutdown; a request arriving meanwhile is answered 503),
//! waits for them up to a deadline, and then answers what is still being handled with a 503
//! of its own, logging each by name, so a caller always gets an answer or a clean refusal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Axon, Inner};

/// Requests being handled, by name.
#[derive(Default)]
pub(super) struct InFlight {
    names: Arc<Mutex<BTreeMap<u64, String>>>,
    next: AtomicU64,
}

/// A request's entry, removed when it ends.
pub(super) struct InFlightEntry {
    id: u64,
    names: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        self.names.lock().expect("in-flight lock").remove(&self.id);
    }
}

impl InFlight {
    pub(super) fn enter(&self, name: String) -> InFlightEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.names.lock().expect("in-flight lock").insert(id, name);
        InFlightEntry {
            id,
            names: self.names.clone(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.names
            .lock()
            .expect("in-flight lock")
            .values()
            .cloned()
            .collect()
    }
}

/// A serving axon.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
    connections: TaskTracker,
    state: Arc<Inner>,
}

/// How long answers forced at the deadline get to reach their callers.
const FORCED_GRACE: Duration = Duration::from_secs(5);

impl Serving {
    /// The accept loop's task (aborting it stops taking connections; open ones go on).
    pub fn into_task(self) -> tokio::task::JoinHandle<()> {
        self.task
    }

    /// Stops: no new connections or requests, the ones in flight get until `deadline`, then
    /// whatever is still handled is answered 503 and named in the log. Returns those names.
    pub async fn shutdown(self, deadline: Duration) -> Vec<String> {
        self.state.stop.cancel();
        self.connections.close();
        let _ = self.task.await;
        if tokio::time::timeout(deadline, self.connections.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let names = self.state.in_flight.names();
        for name in &names {
            tracing::warn!(request = %name, ?deadline, "still handled at the shutdown deadline; answered 503");
        }
        self.state.force.cancel();
        if tokio::time::timeout(FORCED_GRACE, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("axon connections still open after the forced answers; dropping them");
        }
        names
    }
}

impl Axon {
    /// Serves on `listener` until [`Serving::shutdown`]: HTTP/1.1, at most `max_connections`
    /// connections at once, headers within `header_timeout`.
    pub fn serve_gracefully(self, listener: tokio::net::TcpListener) -> Serving {
        let cfg = self.inner.cfg.clone();
        let state = Arc::new(self.inner);
        // Every method and path comes to `dispatch`, so even a wrong one gets a JSON answer.
        let app = axum::Router::new()
            .fallback(super::dispatch)
            .with_state(state.clone());
        let permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
        let connections = TaskTracker::new();
        let stop: CancellationToken = state.stop.clone();
        let tracker = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = stop.cancelled() => return,
                };
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.cancelled() => return,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!("axon accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(cfg.header_timeout);
                let stop = stop.clone();
                tracker.spawn(async move {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    let ended = tokio::select! {
                        r = conn.as_mut() => r,
                        _ = stop.cancelled() => {
                            // Finish the request in hand, then close.
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!("axon connection ended: {e}");
                    }
                    drop(permit);
                });
            }
        });
        Serving {
            task,
            connections,
            state,
        }
    }
}
