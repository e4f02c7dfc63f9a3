//! apsched: APScheduler's model (triggers, job stores, executors, one scheduler) as an HTTP service whose jobs
//! call webhooks. `run` is the one entry point of production and tests alike.

pub mod action;
pub mod api;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod error;
pub mod executor;
pub mod job;
pub mod metrics;
pub mod scheduler;
pub mod store;
pub mod trigger;
pub mod ui;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::Config;
use scheduler::Scheduler;
use scheduler::clock::{Clock, SystemClock};

/// How long a SIGTERM'd server waits for deliveries in flight before it exits anyway (they stay unfinished in
/// the ledger and are delivered again at the next start).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serve the API on `listener` and run the scheduler until `shutdown` is cancelled (by a signal, or by
/// `POST /v1/scheduler/shutdown`). Returns once the server has stopped.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let scheduler = Scheduler::new(config, clock).await?;
    let scheduler_task = scheduler.spawn();
    let streams_stop = CancellationToken::new();
    let app = api::app(api::AppState {
        scheduler: scheduler.clone(),
        server_shutdown: shutdown.clone(),
        streams_stop: streams_stop.clone(),
        job_counts: Default::default(),
    });
    let listen = listener.local_addr()?;
    if scheduler.config.api.tokens.is_empty() {
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
