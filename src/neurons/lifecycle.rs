//! How a neuron lives unattended: the one retry policy for transient chain and RPC errors
//! ([`Backoff`], [`retry`]), and background work that stops by a deadline ([`Background`]: a
//! `TaskTracker` whose tasks have names, so whatever is still running at the deadline is
//! logged by name and then aborted, which drops it and lets its guards clean up).
//!
//! Cancellation comes from outside as a `CancellationToken` (the CLI cancels it on SIGINT or
//! SIGTERM); nothing here listens for signals.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The retry policy for transient errors: waits of `first`, doubling up to `max`, until
/// `give_up_after` has passed since the first failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling to 30 s, for at most 10 minutes: a node restart or a short network
    /// outage is ridden out; a chain gone for longer ends the neuron, for its supervisor.
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// Why [`retry`] stopped without a value.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E: std::error::Error + 'static> {
    /// The error is not transient: retrying would not help.
    #[error(transparent)]
    Permanent(E),
    /// Still failing after the policy's bound.
    #[error("{what} still failing after {attempts} attempts over {elapsed:?}: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: E,
    },
    /// The token was cancelled while waiting to retry.
    #[error("{what}: cancelled while retrying")]
    Cancelled { what: String },
}

/// Runs `op` until it succeeds, retrying errors `transient` accepts under `policy`; each retry
/// is one WARN line, giving up is the error. A cancelled `cancel` ends the waiting.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    policy: &Backoff,
    cancel: &CancellationToken,
    transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut delay = policy.first;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let e = match op().await {
            Ok(v) => return Ok(v),
            Err(e) if !transient(&e) => return Err(RetryError::Permanent(e)),
            Err(e) => e,
        };
        let elapsed = started.elapsed();
        if elapsed + delay > policy.give_up_after {
            return Err(RetryError::GaveUp {
                what: what.to_owned(),
                attempts,
                elapsed,
                last: e,
            });
        }
        tracing::warn!(attempt = attempts, retry_in = ?delay, error = %e, "{what} failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return Err(RetryError::Cancelled { what: what.to_owned() }),
        }
        delay = (delay * 2).min(policy.max);
    }
}

/// Background tasks with names, stopped together by a deadline.
#[derive(Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    running: Arc<Mutex<BTreeMap<u64, (String, AbortHandle)>>>,
    next: Arc<AtomicU64>,
}

/// Removes a task's entry when the task ends, however it ends.
struct Entry {
    id: u64,
    running: Arc<Mutex<BTreeMap<u64, (String, AbortHandle)>>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.running
            .lock()
            .expect("background lock")
            .remove(&self.id);
    }
}

impl Background {
    pub fn new() -> Background {
        Background::default()
    }

    /// Spawns `fut` as the task `name`.
    pub fn spawn<F>(&self, name: impl Into<String>, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            id,
            running: self.running.clone(),
        };
        // The entry is registered before the task can finish, under the same lock.
        let mut running = self.running.lock().expect("background lock");
        let handle = self.tracker.spawn(async move {
            let _entry = entry;
            fut.await
        });
        running.insert(id, (name.into(), handle.abort_handle()));
        handle
    }

    /// Names of the tasks running now.
    pub fn running(&self) -> Vec<String> {
        let running = self.running.lock().expect("background lock");
        running.values().map(|(n, _)| n.clone()).collect()
    }

    /// Takes no more tasks and waits up to `deadline` for the running ones; those still
    /// running then are logged by name and aborted (dropped, so their guards run). Returns
    /// their names.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let stragglers: Vec<(String, AbortHandle)> = {
            let running = self.running.lock().expect("background lock");
            running.values().cloned().collect()
        };
        for (name, handle) in &stragglers {
            tracing::warn!(task = %name, ?deadline, "still running at the shutdown deadline; aborted");
            handle.abort();
        }
        // Aborted tasks end at their next await; their guards need a moment.
        let _ = tokio::time::timeout(Duration::from_secs(30), self.tracker.wait()).await;
        stragglers.into_iter().map(|(n, _)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str);

    fn quick() -> Backoff {
        Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
            give_up_after: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_they_pass_or_the_bound() {
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let v = retry(
            "x",
            &quick(),
            &cancel,
            |_: &E| true,
            || {
                calls += 1;
                let n = calls;
                async move { if n <= 3 { Err(E("down")) } else { Ok(n) } }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 4);
        let r: Result<(), _> = retry(
            "x",
            &quick(),
            &cancel,
            |_: &E| true,
            || async { Err(E("down")) },
        )
        .await;
        assert!(matches!(r, Err(RetryError::GaveUp { attempts, .. }) if attempts > 3));
        let mut calls = 0;
        let r: Result<(), _> = retry(
            "x",
            &quick(),
            &cancel,
            |_: &E| false,
            || {
                calls += 1;
                async { Err(E("bad")) }
            },
        )
        .await;
        assert!(matches!(r, Err(RetryError::Permanent(_))));
        assert_eq!(calls, 1, "a permanent error is not retried");
        cancel.cancel();
        let r: Result<(), _> = retry(
            "x",
            &quick(),
            &cancel,
            |_: &E| true,
            || async { Err(E("down")) },
        )
        .await;
        assert!(matches!(r, Err(RetryError::Cancelled { .. })));
    }

    #[tokio::test]
    async fn stragglers_are_named_and_aborted_at_the_deadline() {
        let bg = Background::new();
        bg.spawn("quick", async {});
        let slow = bg.spawn("slow", tokio::time::sleep(Duration::from_secs(60)));
        let started = Instant::now();
        let left = bg.shutdown(Duration::from_millis(100)).await;
        assert_eq!(left, ["slow"]);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(slow.await.unwrap_err().is_cancelled());
        assert!(bg.running().is_empty());
        let bg = Background::new();
        bg.spawn("done", async {});
        assert!(bg.shutdown(Duration::from_secs(1)).await.is_empty());
    }
}
