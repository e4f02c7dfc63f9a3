//! Templated webhook calls end to end: what the receiver gets is rendered per attempt (scheduled time, attempt,
//! idempotency key, job, run kind), signed as sent; a template that does not compile is refused at save naming its
//! field; one that fails at delivery fails the run with the error recorded; without `template` nothing is rendered.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, memory_config};
use crate::signatures::verify;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn body_of(hit: &crate::harness::Received) -> Value {
    serde_json::from_slice(&hit.body).expect("a JSON body")
}

#[tokio::test]
async fn a_template_renders_the_fire_per_attempt_and_the_signature_covers_what_is_sent() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.webhooks.signing_secret = Some(SECRET.into());
    let server = Server::start(config).await;
    // Fires now, and stays for the run-now below.
    let job = json!({"id": "tpl", "name": "Templated", "trigger": {"type": "interval", "hours": 1},
        "next_run_time": chrono::Utc::now().to_rfc3339(),
        "action": {"url": receiver.url("flaky/1/503/tpl/{{ job.id }}"), "template": true,
                   "headers": {"X-Attempt": "{{ attempt }}", "X-Trace": "plain"},
                   "json": {"when": "{{ scheduled_time }}", "ts": "{{ scheduled_timestamp }}", "n": 7,
                            "fire": {"key": "{{ idempotency_key }}", "kind": "{{ run.kind }}", "name": "{{ job.name }}"}},
                   "retry": {"max_attempts": 2, "backoff_seconds": 0.1}}});
    let (status, added) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["action"]["template"], true);
    assert_eq!(added["action"]["url"], receiver.url("flaky/1/503/tpl/{{ job.id }}"), "stored as written");

    let hits = receiver.wait_for("flaky/1/503/tpl/tpl", 2).await;
    for (attempt, hit) in hits.iter().enumerate() {
        let body = body_of(hit);
        assert_eq!(hit.header("x-attempt").as_deref(), Some(format!("{}", attempt + 1).as_str()));
        assert_eq!(hit.header("x-trace").as_deref(), Some("plain"));
        assert_eq!(body["when"], hit.header("apsched-scheduled-time").unwrap().as_str());
        let when = chrono::DateTime::parse_from_rfc3339(body["when"].as_str().unwrap()).unwrap();
        assert_eq!(body["ts"], when.timestamp().to_string());
        assert_eq!(body["n"], 7);
        assert_eq!(body["fire"]["key"], hit.header("idempotency-key").unwrap().as_str());
        assert_eq!(body["fire"]["kind"], "scheduled");
        assert_eq!(body["fire"]["name"], "Templated");
        verify(SECRET, hit).unwrap();
    }

    // Run now: a new key, and the kind says so.
    let (status, run) = server.post("/v1/jobs/tpl/run", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let hits = receiver.wait_for("flaky/1/503/tpl/tpl", 3).await;
    let body = body_of(&hits[2]);
    assert_eq!(body["fire"]["kind"], "manual");
    assert_eq!(body["fire"]["key"], run["idempotency_key"]);
    server.stop().await;
}

#[tokio::test]
async fn a_template_that_does_not_compile_is_refused_naming_its_field() {
    let server = Server::start(memory_config()).await;
    let cases = [
        (json!({"url": "http://127.0.0.1:9/", "headers": {"X-Foo": "{{ job.id "}}), "action.headers.X-Foo"),
        (json!({"url": "http://127.0.0.1:9/", "json": {"a": {"b": "{% if %}"}}}), "action.json.a.b"),
        (json!({"url": "http://127.0.0.1:9/", "body": "{{ schedule_time }}"}), "action.body"),
        (json!({"url": "{{ job.id }}/x"}), "action.url"),
    ];
    for (action, field) in cases {
        let mut action = action;
        action["template"] = json!(true);
        let (status, problem) = server.post("/v1/jobs", json!({"id": "bad", "action": action})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    assert_eq!(server.get("/v1/jobs/bad").await.0, StatusCode::NOT_FOUND, "nothing was saved");
    server.stop().await;
}

#[tokio::test]
async fn a_render_failure_fails_the_run_with_the_error_and_without_template_bodies_go_as_written() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let failing = json!({"id": "no-label", "action": {"url": receiver.url("ok/no-label"), "template": true,
        "body": "team {{ job.labels.team }}", "retry": {"max_attempts": 3, "backoff_seconds": 0.1}}});
    assert_eq!(server.post("/v1/jobs", failing).await.0, StatusCode::CREATED);
    let runs = server.wait_runs("no-label", |runs| runs.first().is_some_and(|run| run["status"] == "failed")).await;
    let error = runs[0]["error"].as_str().unwrap();
    assert!(error.starts_with("template: action.body: "), "{error}");
    assert_eq!(runs[0]["attempts"], 1, "a template that fails would fail again: not retried");
    assert_eq!(runs[0]["http_status"], Value::Null);

    let plain = json!({"id": "plain", "action": {"url": receiver.url("ok/plain/{{ job.id }}"), "body": "{{ job.id }} {% raw %}"}});
    assert_eq!(server.post("/v1/jobs", plain).await.0, StatusCode::CREATED);
    let hits = receiver.wait_for("ok/plain/", 1).await;
    assert_eq!(&hits[0].body[..], b"{{ job.id }} {% raw %}");
    assert!(receiver.matching("ok/no-label").is_empty(), "the failed template made no request");
    server.stop().await;
}
