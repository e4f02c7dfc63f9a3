//! The notifier: claims due notifications from a store's ledger with a lease (so replicas send each once), sends
//! each to its job's `notify` (else `[notify]`), and records the outcome. It runs as its own task, never in the
//! scheduler's loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::NotifySpec;
use super::ledger::{Finish, Notification};
use super::send::{Outgoing, Sent, attempt};
use crate::action::signing::SigningKey;
use crate::delivery::policy::TargetPolicy;
use crate::metrics::Metrics;
use crate::scheduler::clock::Clock;
use crate::store::{JobStore, StoreResult};

/// Notifications claimed at once.
const BATCH: usize = 32;
/// How long a claim holds a notification: longer than an attempt's timeout, so a live sender keeps it.
const LEASE: Duration = Duration::from_secs(60);
/// How often the task looks for due notifications.
pub const POLL: Duration = Duration::from_secs(1);

/// Sends one store's notifications.
pub struct Notifier {
    /// The store whose ledger it reads.
    pub store: Arc<dyn JobStore>,
    /// `[notify]`: for jobs without their own.
    pub default: Option<NotifySpec>,
    /// The deliveries' target policy.
    pub policy: Arc<TargetPolicy>,
    /// The deliveries' client (resolves through the policy).
    pub client: reqwest::Client,
    /// Counts attempts by type and outcome.
    pub metrics: Arc<Metrics>,
    /// The scheduler's clock.
    pub clock: Arc<dyn Clock>,
    /// This process is the store's only user (memory, SQLite): leases left at start-up are a dead process's.
    pub exclusive: bool,
}

impl Notifier {
    /// Claim what is due now and send it; how many were claimed.
    pub async fn run_once(&self) -> StoreResult<usize> {
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::MAX);
        let claimed = self.store.claim_notifications(now, now + lease, BATCH).await?;
        for notification in &claimed {
            let finish = self.send(notification, now).await?;
            self.store.finish_notification(&notification.id, &finish).await?;
        }
        Ok(claimed.len())
    }

    async fn send(&self, notification: &Notification, now: DateTime<Utc>) -> StoreResult<Finish> {
        // The job's notify as it is now, so a mended target takes the notifications still pending; a job removed
        // meanwhile (a one-shot job is, by its last fire) leaves the target it had when the notification was written.
        let spec = match self.store.get_job(&notification.job_id).await? {
            Some(job) => job.notify.or_else(|| self.default.clone()),
            None => notification.target.clone().or_else(|| self.default.clone()),
        };
        let kind = super::NotifyOn::parse(&notification.kind).map_or("unknown", super::NotifyOn::as_str);
        let Some(spec) = spec else {
            self.metrics.notification(kind, "failed");
            return Ok(Finish::Failed("the job is gone, or has no notify and none is configured".into()));
        };
        let key = spec.signing_secret.as_deref().and_then(|secret| SigningKey::parse(secret).ok());
        let body = serde_json::to_vec(&notification.payload).unwrap_or_default();
        let outgoing =
            Outgoing { id: &notification.id, body: &body, timestamp: now.timestamp(), attempt: notification.attempts };
        let sent = attempt(&self.client, &self.policy, &spec, key.as_ref(), outgoing).await;
        self.metrics.notification(kind, sent.outcome());
        Ok(match sent {
            Sent::Delivered => Finish::Delivered(self.clock.now()),
            Sent::Retry { after, error } => {
                Finish::Retry(now + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX), error)
            }
            Sent::Failed { error } => Finish::Failed(error),
        })
    }

    /// Run until `stop`, as its own task.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if self.exclusive {
                match self.store.release_notification_leases().await {
                    Ok(0) => {}
                    Ok(released) => tracing::info!(released, "notifications a stopped process was sending go again"),
                    Err(err) => tracing::warn!(error = %err, "cannot release the notifications' leases"),
                }
            }
            loop {
                if let Err(err) = self.run_once().await {
                    tracing::warn!(error = %err, "notifications: could not read the ledger; trying again");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::delivery::WebhookSettings;
    use crate::notify::NotifyOn;
    use crate::scheduler::clock::SystemClock;
    use crate::store::memory::MemoryStore;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

    #[tokio::test]
    async fn a_due_notification_is_sent_signed_once_and_marked_delivered() {
        let received: Received = Arc::default();
        let kept = received.clone();
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push((headers, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
        let policy = Arc::new(TargetPolicy::from_config(&WebhookSettings::default()).unwrap());
        let default = crate::notify::parse(json!({"url": url, "signing_secret": SECRET})).unwrap();
        let notifier = Notifier {
            store: store.clone(),
            default: Some(default),
            policy: policy.clone(),
            client: crate::delivery::http::client(policy),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(SystemClock),
            exclusive: true,
        };
        let payload = json!({"type": "job.failure", "job": {"id": "nightly"}, "consecutive_failures": 1});
        let notification = Notification::pending("nightly", NotifyOn::Failure, payload.clone(), Utc::now());
        store.insert_notifications(std::slice::from_ref(&notification)).await.unwrap();

        assert_eq!(notifier.run_once().await.unwrap(), 1);
        assert_eq!(notifier.run_once().await.unwrap(), 0, "delivered: never claimed again");
        let received = received.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        let (headers, body) = &received[0];
        assert_eq!(serde_json::from_slice::<serde_json::Value>(body).unwrap(), payload);
        assert_eq!(headers["webhook-id"], notification.id.as_str());
        let timestamp: i64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        let expected = SigningKey::parse(SECRET).unwrap().sign(&notification.id, timestamp, body);
        assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
        // The ledger says delivered: a claim far in the future finds nothing.
        let later = Utc::now() + chrono::Duration::days(1);
        assert!(store.claim_notifications(later, later, 10).await.unwrap().is_empty());
    }
}
