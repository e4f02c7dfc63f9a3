//! Executors: named delivery pools (APScheduler's executors). A pool bounds how many webhook calls run at once;
//! the rest wait in its queue. A run waiting between two attempts holds no worker; the pool only counts it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

/// APScheduler's ThreadPoolExecutor default.
pub const DEFAULT_MAX_WORKERS: usize = 10;

/// One `[executors.<name>]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    /// How many deliveries of this pool run at once.
    pub max_workers: usize,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings { max_workers: DEFAULT_MAX_WORKERS }
    }
}

impl ExecutorSettings {
    /// The pools of an unconfigured service: `default`, of APScheduler's size.
    pub fn default_executors() -> BTreeMap<String, ExecutorSettings> {
        BTreeMap::from([("default".to_string(), ExecutorSettings::default())])
    }

    /// The named pools as a whole; an error's key is `<name>.<key>`, or empty when it is about the whole set.
    pub fn validate_executors(executors: &BTreeMap<String, ExecutorSettings>) -> Result<(), (String, String)> {
        for (name, executor) in executors {
            if executor.max_workers == 0 {
                return Err((format!("{name}.max_workers"), "must be at least 1".into()));
            }
        }
        // A run whose executor was removed from configuration falls back to it (see `Executors::pool`).
        if !executors.contains_key("default") {
            return Err((String::new(), "an executor named \"default\" is needed".into()));
        }
        Ok(())
    }
}

/// One executor: at most `max_workers` deliveries at once, the others queued.
pub struct Pool {
    max_workers: usize,
    permits: Arc<Semaphore>,
    running: AtomicUsize,
    queued: AtomicUsize,
    retrying: AtomicUsize,
}

/// A worker slot: counted as running until dropped.
pub struct Slot<'a> {
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.pool.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A run waiting to be tried again: counted as retrying until dropped.
pub struct Waiting<'a> {
    pool: &'a Pool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pool.retrying.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// An idle pool.
    pub fn new(max_workers: usize) -> Pool {
        Pool {
            max_workers,
            permits: Arc::new(Semaphore::new(max_workers)),
            running: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            retrying: AtomicUsize::new(0),
        }
    }

    /// Wait for a free worker.
    pub async fn slot(&self) -> Slot<'_> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        // The semaphore is never closed, so acquiring only fails if that changes; then run unbounded rather
        // than lose the fire.
        let permit = self.permits.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
        let permit = match permit {
            Ok(permit) => permit,
            Err(_) => Arc::new(Semaphore::new(1)).try_acquire_owned().expect("a fresh semaphore has a permit"),
        };
        Slot { pool: self, _permit: permit }
    }

    /// Count a run as waiting for its next attempt.
    pub fn waiting_to_retry(&self) -> Waiting<'_> {
        self.retrying.fetch_add(1, Ordering::Relaxed);
        Waiting { pool: self }
    }

    /// What the pool is doing now.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            max_workers: self.max_workers,
            running: self.running.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            retrying: self.retrying.load(Ordering::Relaxed),
        }
    }
}

/// An executor's occupancy.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct PoolStatus {
    /// The most deliveries it runs at once.
    pub max_workers: usize,
    /// Deliveries holding a worker.
    pub running: usize,
    /// Deliveries waiting for a worker.
    pub queued: usize,
    /// Runs waiting between two attempts; they hold no worker.
    pub retrying: usize,
}

/// The named delivery pools.
pub struct Executors {
    pools: BTreeMap<String, Pool>,
}

impl Executors {
    /// Pools of the given sizes, by name.
    pub fn with_sizes(sizes: &BTreeMap<String, usize>) -> Executors {
        Executors { pools: sizes.iter().map(|(name, workers)| (name.clone(), Pool::new(*workers))).collect() }
    }

    /// Whether a pool of this name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.pools.contains_key(name)
    }

    /// The named pool; a run whose executor was removed from configuration goes to `default`.
    pub fn pool(&self, name: &str) -> &Pool {
        self.pools.get(name).or_else(|| self.pools.get("default")).expect("configuration guarantees a default executor")
    }

    /// Every pool's status, by name.
    pub fn status(&self) -> BTreeMap<String, PoolStatus> {
        self.pools.iter().map(|(name, pool)| (name.clone(), pool.status())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pool_bounds_running_workers_and_counts_the_queue() {
        let pool = Arc::new(Pool::new(2));
        let a = pool.slot().await;
        let _b = pool.slot().await;
        assert_eq!(pool.status(), PoolStatus { max_workers: 2, running: 2, queued: 0, retrying: 0 });
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let _c = pool.slot().await;
            })
        };
        while pool.status().queued == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.status().queued, 1);
        drop(a);
        waiting.await.unwrap();
        assert_eq!(pool.status(), PoolStatus { max_workers: 2, running: 1, queued: 0, retrying: 0 });
    }
}
