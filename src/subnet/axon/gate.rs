//! The stake-priority gate: a concurrency limit that hands free slots to the highest stake
//! waiting, and a waiter that gives up costs nothing.

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// Concurrency limit that hands free slots to the highest stake waiting.
pub(super) struct Gate {
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

pub(super) struct Permit {
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
    pub(super) fn new(permits: usize) -> Gate {
        Gate {
            state: Arc::new(Mutex::new(GateState {
                free: permits,
                seq: 0,
                waiting: BinaryHeap::new(),
            })),
        }
    }

    /// A slot, waiting up to `wait` behind at most `max_waiting` others (none when that many
    /// wait already: the caller answers busy at once instead of growing the queue).
    pub(super) async fn acquire(
        &self,
        stake: f64,
        wait: Duration,
        max_waiting: usize,
    ) -> Option<Permit> {
        let mut rx = {
            let mut s = self.state.lock().expect("gate lock");
            if s.free > 0 {
                s.free -= 1;
                return Some(Permit {
                    state: self.state.clone(),
                });
            }
            s.waiting.retain(|w| !w.tx.is_closed());
            if s.waiting.len() >= max_waiting {
                return None;
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
        let first = gate
            .acquire(1.0, Duration::from_secs(1), usize::MAX)
            .await
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for stake in [1.0, 50.0, 10.0] {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = g
                    .acquire(stake, Duration::from_secs(5), usize::MAX)
                    .await
                    .unwrap();
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
        let held = gate
            .acquire(1.0, Duration::from_secs(1), usize::MAX)
            .await
            .unwrap();
        assert!(
            gate.acquire(1.0, Duration::from_millis(20), usize::MAX)
                .await
                .is_none()
        );
        // With no queue allowed, a full gate says no at once.
        let started = std::time::Instant::now();
        assert!(gate.acquire(1.0, Duration::from_secs(5), 0).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(held);
        assert!(
            gate.acquire(1.0, Duration::from_millis(20), 0)
                .await
                .is_some()
        );
    }
}
