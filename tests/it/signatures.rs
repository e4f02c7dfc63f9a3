//! Standard Webhooks signatures, checked by an independent implementation of the rule written here with the
//! `hmac` and `sha2` crates: `v1,base64(HMAC-SHA256(base64-decode(secret after "whsec_"), "{id}.{ts}.{body}"))`.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::harness::{Received, Receiver, Server, memory_config};

const GLOBAL_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// 32 bytes, base64.
const JOB_SECRET: &str = "whsec_c2VjcmV0LWtleS1vZi10aGUtam9iLXNpZ25pbmctMzI=";
/// Standard Webhooks: receivers reject timestamps further than this from their clock.
const TOLERANCE_SECONDS: i64 = 300;

/// What a receiver does: recompute the signature over the raw body and compare in constant time.
pub(crate) fn verify(secret: &str, hit: &Received) -> Result<(), String> {
    let id = hit.header("webhook-id").ok_or("no webhook-id")?;
    let timestamp = hit.header("webhook-timestamp").ok_or("no webhook-timestamp")?;
    let signatures = hit.header("webhook-signature").ok_or("no webhook-signature")?;
    let seconds: i64 = timestamp.parse().map_err(|_| "timestamp is not an integer")?;
    if (chrono::Utc::now().timestamp() - seconds).abs() > TOLERANCE_SECONDS {
        return Err(format!("timestamp {seconds} is too far from now"));
    }
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    for signature in signatures.split(' ') {
        let Some(encoded) = signature.strip_prefix("v1,") else { continue };
        let Ok(candidate) = STANDARD.decode(encoded) else { continue };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&hit.body);
        if mac.verify_slice(&candidate).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no valid v1 signature in {signatures:?}"))
}

#[tokio::test]
async fn the_global_secret_signs_every_attempt_and_webhook_id_is_the_idempotency_key() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.webhooks.signing_secret = Some(GLOBAL_SECRET.into());
    let server = Server::start(config).await;
    let job = json!({"id": "signed", "action": {"url": receiver.url("flaky/1/503/s"), "json": {"order": 42, "note": "ünïcode"},
                     "retry": {"max_attempts": 2, "backoff_seconds": 0.1}}});
    assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    let hits = receiver.wait_for("flaky/1/503/s", 2).await;
    for hit in &hits {
        verify(GLOBAL_SECRET, hit).unwrap();
        assert_eq!(hit.header("webhook-id"), hit.header("idempotency-key"));
        assert!(verify(JOB_SECRET, hit).is_err(), "another secret does not verify");
        let mut tampered = hit.clone();
        tampered.body = axum::body::Bytes::from_static(br#"{"order":43}"#);
        assert!(verify(GLOBAL_SECRET, &tampered).is_err(), "a changed body does not verify");
    }
    assert_eq!(hits[0].header("webhook-id"), hits[1].header("webhook-id"), "a retry keeps webhook-id");
    server.stop().await;
}

#[tokio::test]
async fn a_jobs_own_secret_wins_and_is_masked_in_every_response() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.webhooks.signing_secret = Some(GLOBAL_SECRET.into());
    let server = Server::start(config).await;
    let job = json!({"id": "own", "paused": true, "trigger": {"type": "interval", "hours": 1},
                     "action": {"url": receiver.url("ok/own"), "body": "plain text", "signing_secret": JOB_SECRET}});
    let (status, added) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["action"]["signing_secret"], "********");
    let (_, got) = server.get("/v1/jobs/own").await;
    assert_eq!(got["action"]["signing_secret"], "********");
    let (_, listed) = server.get("/v1/jobs").await;
    assert_eq!(listed["jobs"][0]["action"]["signing_secret"], "********");
    let (status, _) = server.post("/v1/jobs/own/run", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let hits = receiver.wait_for("ok/own", 1).await;
    verify(JOB_SECRET, &hits[0]).unwrap();
    assert!(verify(GLOBAL_SECRET, &hits[0]).is_err());
    assert_eq!(&hits[0].body[..], b"plain text");
    server.stop().await;
}

#[tokio::test]
async fn without_a_secret_nothing_is_signed_and_bad_secrets_are_refused() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    server.post("/v1/jobs", json!({"id": "plain", "action": {"url": receiver.url("ok/plain")}})).await;
    let hits = receiver.wait_for("ok/plain", 1).await;
    assert_eq!(hits[0].header("webhook-signature"), None);
    assert_eq!(hits[0].header("webhook-id"), None);

    for bad in ["s3cret-but-not-whsec", "whsec_!!!", "whsec_c2hvcnQ="] {
        let job = json!({"action": {"url": receiver.url("ok/x"), "signing_secret": bad}});
        let (status, problem) = server.post("/v1/jobs", job).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], "action.signing_secret");
        assert!(!problem["detail"].as_str().unwrap().contains(bad), "the secret is not echoed: {problem}");
    }
    server.stop().await;
}

#[test]
fn a_bad_configured_secret_stops_start_up() {
    let mut config = memory_config();
    config.webhooks.signing_secret = Some("whsec_short".into());
    let err = config.validated().unwrap_err().to_string();
    assert!(err.contains("webhooks.signing_secret"), "{err}");
}
