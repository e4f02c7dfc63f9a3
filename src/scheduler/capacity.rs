//! A bound on the jobs one store may hold, so a runaway client (or a loop in one) cannot fill it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use crate::store::JobStore;

/// How long a store's job count is trusted before counting again. A count is a scan of the store's jobs, which at
/// a few thousand adds a second cost more than the adds themselves; within this time the count goes up with every
/// add this process makes (removals are not subtracted, which only errs towards counting).
const JOB_COUNT_TRUSTED_FOR: Duration = Duration::from_secs(1);

/// The bound and each store's job count as last counted plus the adds since, and when it was counted.
pub struct Capacity {
    max_jobs_per_store: u64,
    by_store: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Capacity {
    /// At most `max_jobs_per_store` jobs in each store.
    pub fn new(max_jobs_per_store: u64) -> Capacity {
        Capacity { max_jobs_per_store, by_store: Mutex::new(HashMap::new()) }
    }

    /// Count one more job in `store` if the recent count leaves room for it without counting again.
    fn take_room(&self, store: &str) -> bool {
        let mut by_store = self.by_store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match by_store.get_mut(store) {
            Some((count, counted_at))
                if counted_at.elapsed() < JOB_COUNT_TRUSTED_FOR
                    && count.saturating_add(1) < self.max_jobs_per_store =>
            {
                *count += 1;
                true
            }
            _ => false,
        }
    }

    fn counted(&self, store: &str, count: u64) {
        let mut by_store = self.by_store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        by_store.insert(store.to_string(), (count, Instant::now()));
    }

    /// Refuse a job that would grow a full store; replacing a job it already holds is fine. Concurrent adds may
    /// pass the check together, so the bound can be exceeded by the adds in flight, and, with replicas sharing a
    /// store, by what the others added within `JOB_COUNT_TRUSTED_FOR`.
    pub async fn check(&self, store_name: &str, store: &dyn JobStore, id: &str) -> Result<()> {
        if self.take_room(store_name) {
            return Ok(());
        }
        let limit = self.max_jobs_per_store;
        let count = store.count_jobs().await?;
        if count >= limit && store.get_job(id).await?.is_none() {
            return Err(Error::Conflict(format!(
                "the job store holds its maximum of {limit} jobs ([api] max_jobs_per_store); remove some first"
            )));
        }
        self.counted(store_name, count.saturating_add(1));
        Ok(())
    }
}
