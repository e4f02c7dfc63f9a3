//! apsched: APScheduler's model (triggers, job stores, executors, one scheduler) as a Rust library and as an
//! HTTP service whose jobs call webhooks.
//!
//! As a library: build a [`Scheduler`], add jobs whose action is a webhook call ([`JobSpec`]) or a Rust async
//! function ([`Scheduler::add_fn_job`]), and run it in the background ([`Scheduler::start`]) or the foreground
//! ([`Scheduler::run_until`]):
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let scheduler = apsched::Scheduler::builder()
//!     .jobstore("default", apsched::store::Memory::new())
//!     .executor("default", 4)
//!     .build()
//!     .await?;
//! let every_minute: apsched::Trigger = serde_json::from_value(serde_json::json!({"type": "interval", "minutes": 1}))?;
//! scheduler.add_fn_job("tick", every_minute, |ctx| async move {
//!     println!("fired for {}", ctx.scheduled_time);
//!     Ok(())
//! }).await?;
//! scheduler.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await;
//! # Ok(())
//! # }
//! ```
//!
//! As a service: [`run`] serves the REST API over a scheduler built from a [`settings::Config`]; it is the one
//! entry point of production and tests alike.

#![warn(missing_docs)]

pub mod action;
pub mod api;
pub mod audit;
pub mod backfill;
pub mod backoff;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod error;
pub mod executor;
pub mod health;
pub mod integral;
pub mod job;
pub mod labels;
pub mod metrics;
pub mod notify;
pub mod scheduler;
pub mod settings;
pub mod store;
pub mod trigger;
pub mod ui;

pub use action::{Action, HttpAction};
pub use audit::{AuditAction, AuditEntry, AuditQuery, Change};
pub use delivery::JobContext;
pub use job::{Job, Run, RunStatus};
pub use scheduler::events::{Event, EventKind};
pub use scheduler::{Error, JobChanges, JobSpec, Scheduler, SchedulerBuilder, SchedulerState};
/// A trigger as the REST API takes it (`{"type": "cron", "hour": 9, …}`); deserialise one from that JSON.
pub use trigger::TriggerSpec as Trigger;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use scheduler::clock::{Clock, SystemClock};
use settings::Config;

/// How long a SIGTERM'd server waits for deliveries in flight before it exits anyway (they stay unfinished in
/// the ledger and are delivered again at the next start).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serve the API on `listener` and run the scheduler until `shutdown` is cancelled (by a signal, or by
/// `POST /v1/scheduler/shutdown`). Returns once the server has stopped.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// `run` with the clock the scheduler reads (tests drive a manual one).
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let scheduler = build_scheduler(&config, clock).await?;
    let scheduler_task = scheduler.start();
    let streams_stop = CancellationToken::new();
    let app = api::app(api::AppState {
        scheduler: scheduler.clone(),
        api: Arc::new(config.api.clone()),
        server_shutdown: shutdown.clone(),
        streams_stop: streams_stop.clone(),
    });
    let listen = listener.local_addr()?;
    if config.api.tokens.is_empty() {
        tracing::warn!(%listen, "no API tokens are configured: anyone who can reach this address may use the API");
    }
    tracing::info!(%listen, "apsched serving");
    // On shutdown, stop the scheduler before the HTTP server, so event streams still carry scheduler_shutdown and
    // the API answers while deliveries in flight get a bounded time to finish.
    let graceful = {
        let scheduler = scheduler.clone();
        async move {
            shutdown.cancelled().await;
            // `POST /v1/scheduler/shutdown` has already stopped it, waiting or not, as the client asked.
            if scheduler.state() != scheduler::SchedulerState::Stopped
                && tokio::time::timeout(SHUTDOWN_GRACE, scheduler.shutdown(true)).await.is_err()
            {
                tracing::warn!(
                    "deliveries still running after the shutdown grace; they will be delivered again at start"
                );
            }
            streams_stop.cancel();
        }
    };
    axum::serve(listener, app).with_graceful_shutdown(graceful).await?;
    scheduler.shutdown(false).await;
    scheduler_task.abort();
    Ok(())
}

/// Open the configured job stores (running their migrations) and build the scheduler over them, stopped.
pub async fn build_scheduler(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Scheduler>> {
    let mut builder = Scheduler::builder()
        .timezone(config.tz()?)
        .job_defaults(config.job_defaults.clone())
        .lease_seconds(config.scheduler.lease_seconds)
        .run_retention(config.runs.clone())
        .audit_retention(config.audit.clone())
        .webhooks(config.webhooks.clone())
        .max_jobs_per_store(config.api.max_jobs_per_store)
        .notify(config.notify.clone())
        .clock(clock);
    for (name, store_config) in &config.jobstores {
        builder = builder.shared_jobstore(name, store::open(name, store_config).await?);
    }
    for (name, executor) in &config.executors {
        builder = builder.executor(name, executor.max_workers);
    }
    builder.build().await
}
