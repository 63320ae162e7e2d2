//! The warm pool: containers created and started before a request for them arrives, and the
//! background work that takes container removal off the critical path.
//!
//! - Demand drives it: [`Engine::warm`] is told the sandboxes about to be asked for, in order
//!   (the images of a batch or a round); the pool keeps idle containers for the first
//!   `max_sandboxes` of those still to come, so its size is bounded by the sandbox budget and
//!   its images are the hot ones. An idle container holds no budget permit; a taken one holds
//!   one like a cold start, so no more than `max_sandboxes` run work at once.
//! - [`super::Sandbox::start`] takes a matching idle container (same image, limits, run id,
//!   environment and working directory) or starts one cold; the take refills in the
//!   background. A container is never handed out twice: one request, one container.
//! - Idle containers carry the usual labels; their PID 1 sleeps the wall clock plus
//!   [`IDLE_MAX`] and their deadline label says so, so the reaper and auto-removal cover a
//!   killed agentao. An idle container older than `IDLE_MAX` is removed, not handed out.
//! - [`super::Sandbox::release`] and the pool's own removals run in background tasks that
//!   [`super::settle`] and [`Engine::shutdown`] drain and wait for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::backend::{Placement, SandboxBackend};
use super::{Engine, SandboxSpec};

/// How long a pooled container may wait idle before it is replaced.
pub const IDLE_MAX: Duration = Duration::from_secs(600);

/// The runtime background removals run on (one worker thread, made on first use).
static REMOVER: std::sync::LazyLock<Option<tokio::runtime::Runtime>> =
    std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentao-remover")
            .enable_all()
            .build()
            .ok()
    });

/// Every pool of this process, drained by [`super::settle`].
static POOLS: std::sync::LazyLock<Mutex<Vec<Weak<Pool>>>> =
    std::sync::LazyLock::new(|| Mutex::new(Vec::new()));

/// One engine handle's pool (shared by its clones).
pub(super) struct Pool {
    docker: bollard::Docker,
    /// What started the pool's containers, and removes them.
    backend: Arc<dyn SandboxBackend>,
    /// Where to reconnect from `Drop` (another runtime).
    addr: String,
    state: Mutex<State>,
    /// Fills and removals in flight.
    pub(super) tasks: TaskTracker,
}

#[derive(Default)]
struct State {
    enabled: bool,
    /// Idle containers the pool may hold at once (the sandbox budget).
    cap: usize,
    /// Requests announced and not yet served, in order.
    queue: VecDeque<String>,
    specs: HashMap<String, SandboxSpec>,
    idle: HashMap<String, VecDeque<Idle>>,
    filling: HashMap<String, usize>,
    closed: bool,
}

struct Idle {
    placed: Placement,
    made: Instant,
}

/// What the pool holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Idle containers ready to be taken.
    pub idle: usize,
    /// Containers being created for the pool.
    pub filling: usize,
    /// Requests announced and not yet served.
    pub announced: usize,
}

/// The pool key: everything a container is created with (a spec with its own command or
/// network never matches a container created for another).
pub(super) fn key_of(spec: &SandboxSpec) -> String {
    format!(
        "{}\0{:?}\0{}\0{:?}\0{:?}\0{:?}\0{:?}\0{}",
        spec.image,
        spec.limits,
        spec.run_id,
        spec.env,
        spec.workdir,
        spec.network,
        spec.cmd,
        spec.setup.as_ref().map_or("", |s| s.digest())
    )
}

impl Pool {
    pub(super) fn new(
        docker: bollard::Docker,
        addr: &str,
        cap: usize,
        enabled: bool,
        backend: Arc<dyn SandboxBackend>,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            docker,
            backend,
            addr: addr.to_owned(),
            state: Mutex::new(State {
                enabled,
                cap,
                ..State::default()
            }),
            tasks: TaskTracker::new(),
        });
        if let Ok(mut all) = POOLS.lock() {
            all.retain(|p| p.strong_count() > 0);
            all.push(Arc::downgrade(&pool));
        }
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn enabled(&self) -> bool {
        self.lock().enabled
    }

    pub(super) fn stats(&self) -> PoolStats {
        let s = self.lock();
        PoolStats {
            idle: s.idle.values().map(VecDeque::len).sum(),
            filling: s.filling.values().sum(),
            announced: s.queue.len(),
        }
    }

    /// An idle container for `spec`, when one is ready; counts the request as served.
    pub(super) fn take(&self, engine: &Engine, spec: &SandboxSpec) -> Option<Placement> {
        let key = key_of(spec);
        let mut stale = Vec::new();
        let taken = {
            let mut s = self.lock();
            if !s.enabled || s.closed {
                return None;
            }
            if let Some(at) = s.queue.iter().position(|k| *k == key) {
                s.queue.remove(at);
            }
            let mut taken = None;
            if let Some(idle) = s.idle.get_mut(&key) {
                while let Some(c) = idle.pop_front() {
                    if c.made.elapsed() < IDLE_MAX {
                        taken = Some(c.placed);
                        break;
                    }
                    stale.push(c.placed);
                }
            }
            taken
        };
        for placed in stale {
            self.remove_later(placed);
        }
        self.rebalance(engine);
        taken
    }

    /// Replaces the announced demand with `specs` (in the order they will be asked for) and
    /// fills or trims the pool to match.
    pub(super) fn announce(&self, engine: &Engine, specs: Vec<SandboxSpec>) {
        {
            let mut s = self.lock();
            if !s.enabled || s.closed {
                return;
            }
            s.queue.clear();
            for spec in specs {
                let key = key_of(&spec);
                s.queue.push_back(key.clone());
                s.specs.insert(key, spec);
            }
        }
        self.rebalance(engine);
    }

    /// Starts fills where the pool holds fewer containers than the next `cap` requests need,
    /// and removes idle ones no request in that window needs.
    fn rebalance(&self, engine: &Engine) {
        let mut fills = Vec::new();
        let mut surplus = Vec::new();
        {
            let mut s = self.lock();
            if s.closed {
                return;
            }
            let mut want: HashMap<String, usize> = HashMap::new();
            for key in s.queue.iter().take(s.cap) {
                *want.entry(key.clone()).or_default() += 1;
            }
            let keys: Vec<String> = s.idle.keys().cloned().collect();
            for key in keys {
                let wanted = want.get(&key).copied().unwrap_or(0);
                let filling = s.filling.get(&key).copied().unwrap_or(0);
                if let Some(idle) = s.idle.get_mut(&key) {
                    while idle.len() + filling > wanted && !idle.is_empty() {
                        surplus.extend(idle.pop_back().map(|c| c.placed));
                    }
                }
            }
            s.idle.retain(|_, v| !v.is_empty());
            let mut held: usize = s.idle.values().map(VecDeque::len).sum::<usize>()
                + s.filling.values().sum::<usize>();
            let mut order: Vec<String> = Vec::new();
            for key in s.queue.iter().take(s.cap) {
                if !order.contains(key) {
                    order.push(key.clone());
                }
            }
            for key in order {
                let have = s.idle.get(&key).map_or(0, VecDeque::len)
                    + s.filling.get(&key).copied().unwrap_or(0);
                let wanted = want.get(&key).copied().unwrap_or(0);
                let Some(spec) = s.specs.get(&key).cloned() else {
                    continue;
                };
                for _ in have..wanted {
                    if held >= s.cap {
                        break;
                    }
                    held += 1;
                    *s.filling.entry(key.clone()).or_default() += 1;
                    fills.push((key.clone(), spec.clone()));
                }
            }
            let live: std::collections::HashSet<&String> = s.queue.iter().collect();
            let keep: Vec<String> = s
                .specs
                .keys()
                .filter(|k| {
                    live.contains(k) || s.idle.contains_key(*k) || s.filling.contains_key(*k)
                })
                .cloned()
                .collect();
            s.specs.retain(|k, _| keep.contains(k));
        }
        for placed in surplus {
            self.remove_later(placed);
        }
        for (key, spec) in fills {
            self.fill(engine, key, spec);
        }
    }

    fn fill(&self, engine: &Engine, key: String, spec: SandboxSpec) {
        let engine = engine.clone();
        self.tasks.spawn(async move {
            let made = super::Sandbox::prepare_idle(&engine, &spec, IDLE_MAX).await;
            let leftover = {
                let mut s = engine.pool.lock();
                if let Some(n) = s.filling.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        s.filling.remove(&key);
                    }
                }
                match made {
                    Ok(placed) if !s.closed => {
                        debug!(container = ?placed, image = %spec.image, "pooled");
                        s.idle.entry(key).or_default().push_back(Idle {
                            placed,
                            made: Instant::now(),
                        });
                        None
                    }
                    Ok(placed) => Some(placed),
                    Err(e) => {
                        // No more fills for it until it is announced again: the request
                        // itself starts cold and reports the error.
                        warn!(image = %spec.image, error = %e, "could not fill the sandbox pool");
                        s.specs.remove(&key);
                        None
                    }
                }
            };
            match leftover {
                Some(placed) => {
                    let backend = engine.backend();
                    if let Err(e) = backend.remove(&engine.docker, &placed).await {
                        warn!(error = %e, "could not remove a pooled container at shutdown");
                    }
                }
                // The demand may have moved on while it was being made.
                None => engine.pool.rebalance(&engine),
            }
        });
    }

    /// Removes a container in the background, on the remover's runtime (a thread of its own,
    /// so a caller that blocks or drops its runtime does not hold removals up), tracked by
    /// this pool; `keep` (a guard and its budget permit) is dropped once it is gone.
    pub(super) fn remove_in_background(&self, placed: Placement, keep: impl Send + 'static) {
        let (addr, version) = (self.addr.clone(), self.docker.client_version());
        let backend = self.backend.clone();
        let removal = self.tasks.track_future(async move {
            let removed = match bollard::Docker::connect_with_unix(&addr, 120, &version) {
                Ok(docker) => backend.remove(&docker, &placed).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = removed {
                warn!(error = %e, "could not remove a container in the background; the reaper will");
            }
            drop(keep);
        });
        match &*REMOVER {
            Some(rt) => {
                rt.spawn(removal);
            }
            None => {
                tokio::spawn(removal);
            }
        }
    }

    fn remove_later(&self, placed: Placement) {
        self.remove_in_background(placed, ());
    }

    /// Forgets the announced demand and removes every idle container, waiting (up to a
    /// minute) for fills in flight so that none is left idle: the end of a batch.
    pub(super) async fn empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (idle, filling) = {
                let mut s = self.lock();
                s.queue.clear();
                let idle: Vec<Placement> = s
                    .idle
                    .drain()
                    .flat_map(|(_, v)| v)
                    .map(|c| c.placed)
                    .collect();
                (idle, s.filling.values().sum::<usize>())
            };
            for placed in idle {
                if let Err(e) = self.backend.remove(&self.docker, &placed).await {
                    warn!(error = %e, "could not remove an idle container; the reaper will");
                }
            }
            if filling == 0 || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops filling, removes every idle container and waits for the background work.
    pub(super) async fn drain(&self, deadline: Duration) {
        let idle: Vec<Placement> = {
            let mut s = self.lock();
            s.closed = true;
            s.queue.clear();
            s.idle
                .drain()
                .flat_map(|(_, v)| v)
                .map(|c| c.placed)
                .collect()
        };
        for placed in idle {
            self.remove_later(placed);
        }
        self.tasks.close();
        if tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("sandbox removals still running at exit; the reaper will finish them");
        }
        self.tasks.reopen();
    }
}

impl Drop for Pool {
    /// The last handle went without [`Engine::shutdown`]: its idle containers are removed
    /// from a short-lived thread with its own runtime (as a dropped guard's are).
    fn drop(&mut self) {
        let idle: Vec<Placement> = {
            let mut s = self.lock();
            s.idle
                .drain()
                .flat_map(|(_, v)| v)
                .map(|c| c.placed)
                .collect()
        };
        if idle.is_empty() {
            return;
        }
        let version = self.docker.client_version();
        let addr = self.addr.clone();
        let backend = self.backend.clone();
        let joined = std::thread::spawn(move || {
            let docker = bollard::Docker::connect_with_unix(&addr, 60, &version).ok()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                for placed in idle {
                    let _ = backend.remove(&docker, &placed).await;
                }
            });
            Some(())
        })
        .join();
        if !matches!(joined, Ok(Some(()))) {
            warn!("could not remove a dropped pool's idle containers; the reaper will");
        }
    }
}

/// Drains every pool of this process (see [`super::settle`]).
pub(super) async fn drain_all(deadline: Duration) {
    let pools: Vec<Arc<Pool>> = POOLS
        .lock()
        .map(|all| all.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    for pool in pools {
        pool.drain(deadline).await;
    }
}
