//! Sending one notification: a JSON POST to the spec's URL with its headers, signed the Standard Webhooks way
//! when a key is given, through the deliveries' client (target policy, no redirects, no proxy). A failure is
//! tried again with backoff up to `MAX_ATTEMPTS`; a target the policy refuses is not.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use super::{NotifySpec, signature_headers};
use crate::action::signing::SigningKey;
use crate::backoff::Backoff;
use crate::delivery::policy::TargetPolicy;

/// Attempts before a notification is given up (its ledger row then says `failed`).
pub const MAX_ATTEMPTS: u32 = 8;
/// One attempt's bound.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts: 1 s doubling up to 10 minutes, ±20 % so replicas do not retry in step.
pub const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(600)).with_jitter(0.2);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// Any 2xx.
    Delivered,
    /// Failed; try again after this wait.
    Retry {
        /// Wait before the next attempt.
        after: Duration,
        /// What went wrong.
        error: String,
    },
    /// Failed for good: the target is refused, or the attempts are spent.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl Sent {
    /// The outcome as the metrics label it.
    pub fn outcome(&self) -> &'static str {
        match self {
            Sent::Delivered => "delivered",
            Sent::Retry { .. } => "retry",
            Sent::Failed { .. } => "failed",
        }
    }
}

/// One attempt to make.
pub struct Outgoing<'a> {
    /// The notification's id (`webhook-id`).
    pub id: &'a str,
    /// The JSON body.
    pub body: &'a [u8],
    /// Unix seconds of the attempt (`webhook-timestamp`).
    pub timestamp: i64,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

/// Make one attempt. `key` signs it: the spec's own secret, else whatever the caller falls back on.
pub async fn attempt(
    client: &reqwest::Client,
    policy: &TargetPolicy,
    spec: &NotifySpec,
    key: Option<&SigningKey>,
    outgoing: Outgoing<'_>,
) -> Sent {
    let Outgoing { id, body, timestamp, attempt } = outgoing;
    if let Err(refused) = policy.check_url(&spec.url) {
        return Sent::Failed { error: format!("target refused: {refused}") };
    }
    let mut request = client.post(&spec.url).timeout(TIMEOUT).header(CONTENT_TYPE, "application/json");
    for (name, value) in &spec.headers {
        // Checked when saved; one that no longer parses is left out rather than failing the notification.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            request = request.header(name, value);
        }
    }
    if let Some(key) = key {
        for (name, value) in signature_headers(key, id, timestamp, body) {
            request = request.header(name, value);
        }
    }
    let error = match request.body(body.to_vec()).send().await {
        Ok(response) if response.status().is_success() => return Sent::Delivered,
        Ok(response) => format!("HTTP {}", response.status().as_u16()),
        Err(err) => format!("{err}"),
    };
    if attempt >= MAX_ATTEMPTS {
        Sent::Failed { error: format!("{error} (after {attempt} attempts)") }
    } else {
        Sent::Retry { after: RETRY.wait(attempt.saturating_sub(1)), error }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use axum::http::HeaderMap;

    use super::*;
    use crate::delivery::WebhookSettings;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

    /// A receiver on 127.0.0.1:0 answering `status`, keeping what it got.
    async fn receiver(status: u16) -> (String, Received) {
        let received: Received = Arc::default();
        let kept = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push((headers, body.to_vec()));
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, received)
    }

    fn spec(url: String) -> NotifySpec {
        NotifySpec {
            url,
            on: super::super::NotifyOn::ALL.to_vec(),
            headers: BTreeMap::from([("X-Team".to_string(), "ops".to_string())]),
            signing_secret: Some(SECRET.to_string()),
            failure_threshold: 1,
        }
    }

    fn policy(settings: WebhookSettings) -> Arc<TargetPolicy> {
        Arc::new(TargetPolicy::from_config(&settings).unwrap())
    }

    #[tokio::test]
    async fn a_notification_is_posted_signed_with_its_headers() {
        let (url, received) = receiver(204).await;
        let policy = policy(WebhookSettings::default());
        let client = crate::delivery::http::client(policy.clone());
        let key = SigningKey::parse(SECRET).unwrap();
        let body = br#"{"type":"job.failure"}"#;
        let sent = attempt(
            &client,
            &policy,
            &spec(url),
            Some(&key),
            Outgoing { id: "ntf_1", body, timestamp: 1_700_000_000, attempt: 1 },
        )
        .await;
        assert_eq!(sent, Sent::Delivered);
        let received = received.lock().unwrap();
        let (headers, got) = &received[0];
        assert_eq!(got, body);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-team"], "ops");
        assert_eq!(headers["webhook-id"], "ntf_1");
        assert_eq!(headers["webhook-timestamp"], "1700000000");
        // Verified as a receiver would: its own HMAC over id.timestamp.body.
        let expected = SigningKey::parse(SECRET).unwrap().sign("ntf_1", 1_700_000_000, got);
        assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
    }

    #[tokio::test]
    async fn a_failure_is_retried_with_backoff_until_the_bound() {
        let (url, received) = receiver(503).await;
        let policy = policy(WebhookSettings::default());
        let client = crate::delivery::http::client(policy.clone());
        let spec = spec(url);
        match attempt(&client, &policy, &spec, None, Outgoing { id: "ntf_2", body: b"{}", timestamp: 0, attempt: 1 })
            .await
        {
            Sent::Retry { after, error } => {
                assert_eq!(error, "HTTP 503");
                assert!(after >= Duration::from_millis(800) && after <= Duration::from_millis(1200), "{after:?}");
            }
            other => panic!("{other:?}"),
        }
        let last = attempt(
            &client,
            &policy,
            &spec,
            None,
            Outgoing { id: "ntf_2", body: b"{}", timestamp: 0, attempt: MAX_ATTEMPTS },
        )
        .await;
        assert!(matches!(&last, Sent::Failed { error } if error.starts_with("HTTP 503")), "{last:?}");
        assert_eq!(received.lock().unwrap().len(), 2);
        assert!(!received.lock().unwrap()[0].0.contains_key("webhook-signature"));
    }

    #[tokio::test]
    async fn a_target_the_policy_refuses_is_not_called_nor_retried() {
        let (url, received) = receiver(204).await;
        let policy = policy(WebhookSettings { deny: vec!["127.0.0.0/8".into()], ..WebhookSettings::default() });
        let client = crate::delivery::http::client(policy.clone());
        let sent = attempt(
            &client,
            &policy,
            &spec(url),
            None,
            Outgoing { id: "ntf_3", body: b"{}", timestamp: 0, attempt: 1 },
        )
        .await;
        assert!(matches!(&sent, Sent::Failed { error } if error.starts_with("target refused")), "{sent:?}");
        assert_eq!(sent.outcome(), "failed");
        assert!(received.lock().unwrap().is_empty());
    }
}
