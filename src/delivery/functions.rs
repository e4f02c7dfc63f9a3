//! Rust functions as jobs: registered by name (APScheduler refers to its callables by reference), so a job stored
//! in SQLite or PostgreSQL names its function and finds it again after a restart, once the program has registered
//! it again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

/// What a function job is told about the fire it runs for.
#[derive(Debug, Clone, PartialEq)]
pub struct JobContext {
    /// The job's id.
    pub job_id: String,
    /// When the fire was scheduled (not when it started).
    pub scheduled_time: DateTime<Utc>,
    /// Unique to this (job, scheduled time); the same when a fire is delivered again after a crash.
    pub idempotency_key: String,
    /// 1 for the first call of this fire; more when it is delivered again after a crash.
    pub attempt: u32,
}

type JobFn = Arc<dyn Fn(JobContext) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// The registered functions, shared by the scheduler and its deliveries.
#[derive(Clone, Default)]
pub struct Functions {
    by_name: Arc<RwLock<HashMap<String, JobFn>>>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by_name = self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        f.debug_set().entries(by_name.keys()).finish()
    }
}

impl Functions {
    /// Register `function` as `name`, replacing a function registered under that name before.
    pub fn register<F, Fut>(&self, name: impl Into<String>, function: F)
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let boxed: JobFn = Arc::new(move |context| Box::pin(function(context)));
        self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.into(), boxed);
    }

    /// Whether a function is registered as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(name)
    }

    /// Call the function registered as `name`; the error is what the run records. A panic fails the run (on its
    /// own task, so it cannot take the delivery down with it).
    pub async fn call(&self, name: &str, context: JobContext) -> Result<(), String> {
        let function = self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(name).cloned();
        let Some(function) = function else {
            return Err(format!("no function is registered as {name:?} in this process"));
        };
        // Its own task, so a panic fails the run instead of the delivery; aborted with the call (a cancelled run).
        let task = tokio::spawn(function(context));
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("{err:#}")),
            Err(join) if join.is_panic() => Err("the function panicked".to_string()),
            Err(_) => Err("the function was cancelled".to_string()),
        }
    }
}

/// Aborts the task when dropped: a call abandoned mid-way (its run cancelled) stops its function too.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
