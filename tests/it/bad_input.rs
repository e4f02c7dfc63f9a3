//! Every bad input gets a 4xx problem+json that names the field, and changes nothing.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

async fn assert_problem(
    server: &Server,
    method: &str,
    path: &str,
    body: Vec<u8>,
    status: StatusCode,
    field: Option<&str>,
) {
    let (got, content_type, problem) = server.send_raw(method, path, body.clone()).await;
    let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    assert_eq!(got, status, "{method} {path} {shown}: {problem}");
    assert_eq!(content_type, "application/problem+json", "{method} {path} {shown}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
    if let Some(field) = field {
        assert_eq!(problem["field"], field, "{method} {path} {shown}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(field.rsplit('.').next().unwrap()), "{problem}");
    }
}

fn job(overrides: Value) -> Vec<u8> {
    let mut job = json!({"id": "j", "trigger": {"type": "date", "run_date": "2099-01-01T00:00:00Z"},
                         "action": {"url": "http://127.0.0.1:9/hook"}});
    for (key, value) in overrides.as_object().unwrap() {
        if value.is_null() {
            job.as_object_mut().unwrap().remove(key);
        } else {
            job[key] = value.clone();
        }
    }
    serde_json::to_vec(&job).unwrap()
}

#[tokio::test]
async fn bad_jobs_are_refused_with_the_field_named_and_nothing_is_stored() {
    let server = Server::start(memory_config()).await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    assert_problem(&server, "POST", "/v1/jobs", b"{\"id\": ".to_vec(), StatusCode::BAD_REQUEST, None).await;
    assert_problem(&server, "POST", "/v1/jobs", b"not json".to_vec(), StatusCode::BAD_REQUEST, None).await;
    assert_problem(&server, "POST", "/v1/jobs", b"[]".to_vec(), unprocessable, None).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"action": {"url": 5}}), "action.url"),
        (json!({"action": {"method": "POST"}}), "action.url"),
        (json!({"action": null}), "action"),
        (json!({"action": {"url": "example.com/hook"}}), "action.url"),
        (json!({"action": {"url": "ftp://example.com/"}}), "action.url"),
        (json!({"action": {"url": "http://127.0.0.1/", "method": "BREW"}}), "action.method"),
        (json!({"action": {"url": "http://127.0.0.1/", "headers": {"a b": "c"}}}), "action.headers"),
        (json!({"action": {"url": "http://127.0.0.1/", "timeout_seconds": -1}}), "action.timeout_seconds"),
        (json!({"id": "x".repeat(10_000)}), "id"),
        (json!({"id": ""}), "id"),
        (json!({"id": "has space"}), "id"),
        (json!({"id": 7}), "id"),
        (json!({"colour": "red"}), "colour"),
        (json!({"trigger": {"type": "weekly"}}), "trigger.type"),
        (
            json!({"trigger": {"type": "date", "run_date": "2099-01-01", "timezone": "Mars/Olympus"}}),
            "trigger.timezone",
        ),
        (json!({"trigger": {"type": "date", "run_date": "someday"}}), "trigger.run_date"),
        (json!({"trigger": {"type": "date", "run_date": "2099-01-01", "extra": 1}}), "trigger.extra"),
        (json!({"trigger": "daily"}), "trigger"),
        (json!({"max_instances": 0}), "max_instances"),
        (json!({"max_instances": -1}), "max_instances"),
        (json!({"misfire_grace_time": "soon"}), "misfire_grace_time"),
        (json!({"coalesce": "yes"}), "coalesce"),
        (json!({"executor": "nope"}), "executor"),
        (json!({"jobstore": "nope"}), "jobstore"),
        (json!({"next_run_time": "whenever"}), "next_run_time"),
        (json!({"name": "n".repeat(600)}), "name"),
    ];
    for (overrides, field) in cases {
        assert_problem(&server, "POST", "/v1/jobs", job(overrides), unprocessable, Some(field)).await;
    }
    let huge = job(json!({"action": {"url": "http://127.0.0.1/", "body": "x".repeat(1024 * 1024 + 1)}}));
    assert_problem(&server, "POST", "/v1/jobs", huge, StatusCode::PAYLOAD_TOO_LARGE, None).await;
    let (_, jobs) = server.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "a refused job was stored");
    server.stop().await;
}

#[tokio::test]
async fn conflicts_and_unknown_jobs() {
    let server = Server::start(memory_config()).await;
    let (status, _) = server.send_raw("POST", "/v1/jobs", job(json!({}))).await.into_status();
    assert_eq!(status, StatusCode::CREATED);
    assert_problem(&server, "POST", "/v1/jobs", job(json!({})), StatusCode::CONFLICT, None).await;
    let replacement = job(json!({"name": "second", "replace_existing": true}));
    let (status, _, replaced) = server.send_raw("POST", "/v1/jobs", replacement).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replaced["name"], "second");
    for (method, path) in [
        ("GET", "/v1/jobs/missing"),
        ("PATCH", "/v1/jobs/missing"),
        ("DELETE", "/v1/jobs/missing"),
        ("POST", "/v1/jobs/missing/pause"),
        ("POST", "/v1/jobs/missing/resume"),
        ("POST", "/v1/jobs/missing/run"),
        ("GET", "/v1/jobs/missing/runs"),
        ("GET", "/v1/nothing-here"),
    ] {
        assert_problem(&server, method, path, b"{}".to_vec(), StatusCode::NOT_FOUND, None).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_patches_change_nothing() {
    let server = Server::start(memory_config()).await;
    server.send_raw("POST", "/v1/jobs", job(json!({}))).await;
    let (_, before) = server.get("/v1/jobs/j").await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"trigger": {"type": "date", "run_date": "nope"}}), "trigger.run_date"),
        (json!({"action": {"url": "nope"}}), "action.url"),
        (json!({"max_instances": 0}), "max_instances"),
        (json!({"executor": "nope"}), "executor"),
        (json!({"jobstore": "default"}), "jobstore"),
        (json!({"id": "renamed"}), "id"),
        (json!({"paused": "yes"}), "paused"),
    ];
    for (patch, field) in cases {
        assert_problem(&server, "PATCH", "/v1/jobs/j", serde_json::to_vec(&patch).unwrap(), unprocessable, Some(field))
            .await;
    }
    assert_problem(&server, "PATCH", "/v1/jobs/j", b"{".to_vec(), StatusCode::BAD_REQUEST, None).await;
    let (_, after) = server.get("/v1/jobs/j").await;
    assert_eq!(before, after);
    server.stop().await;
}

#[tokio::test]
async fn bad_queries_previews_and_control_bodies() {
    let server = Server::start(memory_config()).await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    for path in [
        "/v1/jobs?limit=abc",
        "/v1/jobs?paused=maybe",
        "/v1/jobs?cursor=%21%21",
        "/v1/jobs?sort=name",
        "/v1/jobs/j/runs?status=done",
    ] {
        assert_problem(&server, "GET", path, Vec::new(), StatusCode::BAD_REQUEST, None).await;
    }
    for path in ["/v1/jobs?limit=0", "/v1/jobs?limit=1001"] {
        assert_problem(&server, "GET", path, Vec::new(), unprocessable, Some("limit")).await;
    }
    assert_problem(&server, "GET", "/v1/jobs?jobstore=nope", Vec::new(), unprocessable, Some("jobstore")).await;
    assert_problem(&server, "DELETE", "/v1/jobs?jobstore=nope", Vec::new(), unprocessable, Some("jobstore")).await;
    let date = json!({"type": "date", "run_date": "2099-01-01"});
    let previews: Vec<(Value, &str)> = vec![
        (json!({"trigger": date, "count": 0}), "count"),
        (json!({"trigger": date, "count": 1001}), "count"),
        (json!({"trigger": date, "now": "yesterday"}), "now"),
        (json!({"trigger": {"type": "date", "run_date": "x"}}), "trigger.run_date"),
        (json!({"count": 3}), "trigger"),
        // serde alone would read a tag's variant index: `0` as `date`.
        (json!({"trigger": {"type": 0, "run_date": "2099-01-01"}}), "trigger.type"),
        (
            json!({"trigger": {"type": "or", "triggers": [{"type": 0, "run_date": "2099-01-01"}]}}),
            "trigger.triggers[0].type",
        ),
        (
            json!({"trigger": {"type": "or", "triggers": [{"type": "date", "run_dat": 1}]}}),
            "trigger.triggers[0].run_dat",
        ),
    ];
    for (body, field) in previews {
        assert_problem(
            &server,
            "POST",
            "/v1/triggers/preview",
            serde_json::to_vec(&body).unwrap(),
            unprocessable,
            Some(field),
        )
        .await;
    }
    assert_problem(
        &server,
        "POST",
        "/v1/scheduler/shutdown",
        br#"{"wait": "yes"}"#.to_vec(),
        unprocessable,
        Some("wait"),
    )
    .await;
    // A bad bulk change is refused before any job is selected, even when none would be.
    let stale = br#"{"stale_after_seconds": 0}"#.to_vec();
    assert_problem(
        &server,
        "PATCH",
        "/v1/jobs?selector=team%3Dnone",
        stale,
        unprocessable,
        Some("stale_after_seconds"),
    )
    .await;
    // serde reads a struct from an array of its fields; a body is an object.
    let array = br#"["maintenance", null]"#.to_vec();
    assert_problem(&server, "POST", "/v1/jobs/any/pause", array, unprocessable, Some("body")).await;
    // An optional body is an object when sent: `null` is no PauseIn (the spec says so; leave the body out instead).
    assert_problem(&server, "POST", "/v1/jobs/any/pause", b"null".to_vec(), unprocessable, Some("body")).await;
    assert_problem(&server, "POST", "/v1/scheduler/shutdown", b" null ".to_vec(), unprocessable, Some("body")).await;
    let catchup = br#"{"max_catchup_runs": 0}"#.to_vec();
    assert_problem(&server, "PATCH", "/v1/jobs?selector=team%3Dnone", catchup, unprocessable, Some("max_catchup_runs"))
        .await;
    let (_, scheduler) = server.get("/v1/scheduler").await;
    assert_eq!(scheduler["state"], "running", "a refused shutdown stopped the scheduler");
    server.stop().await;
}

#[tokio::test]
async fn docs_and_spec_are_served_offline() {
    let server = Server::start(memory_config()).await;
    let (status, spec) = server.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/v1/jobs"].is_object());
    let docs = server.client.get(format!("{}/docs/", server.base)).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Everything the page loads comes from the server itself.
    assert!(!html.contains("https://") && !html.contains("http://"), "the docs page loads from outside: {html}");
    let bundle = server.client.get(format!("{}/docs/swagger-ui-bundle.js", server.base)).send().await.unwrap();
    assert_eq!(bundle.status().as_u16(), 200);
    server.stop().await;
}

trait IntoStatus {
    fn into_status(self) -> (StatusCode, Value);
}

impl IntoStatus for (StatusCode, String, Value) {
    fn into_status(self) -> (StatusCode, Value) {
        (self.0, self.2)
    }
}

/// JSON Schema counts `5.0` as an integer, so clients and generators may write one: every integer field of a
/// request takes it, and a number with a fraction is 422 naming the field.
#[tokio::test]
async fn integral_numbers_are_integers_and_fractions_are_refused() {
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 3.0});
    let body = job(json!({"max_instances": 11596.0, "misfire_grace_time": 30.0,
                          "action": {"url": "http://127.0.0.1:9/hook", "retry": retry},
                          "trigger": {"type": "calendarinterval", "days": 2.0, "hour": 4.0, "minute": 0.0}}));
    let (status, _, added) = server.send_raw("POST", "/v1/jobs", body).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["max_instances"], 11596);
    assert_eq!(added["misfire_grace_time"], 30);
    assert_eq!(added["action"]["retry"]["max_attempts"], 3);
    assert_eq!((&added["trigger"]["days"], &added["trigger"]["hour"]), (&json!(2), &json!(4)));
    let patch = serde_json::to_vec(&json!({"max_instances": 2.0, "trigger": {"type": "cron", "minute": 5.0}})).unwrap();
    let (status, _, patched) = server.send_raw("PATCH", "/v1/jobs/j", patch).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!((&patched["max_instances"], &patched["trigger"]["minute"]), (&json!(2), &json!(5)));
    let preview = json!({"trigger": {"type": "interval", "seconds": 5}, "count": 3.0});
    let (status, _, fires) =
        server.send_raw("POST", "/v1/triggers/preview", serde_json::to_vec(&preview).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{fires}");
    assert_eq!(fires["fire_times"].as_array().map(Vec::len), Some(3));

    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    // Inside a trigger serde names the trigger (its `type` tag buffers the fields); the detail names the value.
    let cases: Vec<(Value, &str)> = vec![
        (json!({"id": "k", "max_instances": 2.5}), "max_instances"),
        (json!({"id": "k", "misfire_grace_time": 0.5}), "misfire_grace_time"),
        (
            json!({"id": "k", "action": {"url": "http://127.0.0.1/", "retry": {"max_attempts": 1.5}}}),
            "action.retry.max_attempts",
        ),
        (json!({"id": "k", "trigger": {"type": "calendarinterval", "days": 1.5}}), "trigger"),
    ];
    for (overrides, field) in cases {
        assert_problem(&server, "POST", "/v1/jobs", job(overrides), unprocessable, Some(field)).await;
    }
    let preview = serde_json::to_vec(&json!({"trigger": {"type": "interval", "seconds": 5}, "count": 2.5})).unwrap();
    assert_problem(&server, "POST", "/v1/triggers/preview", preview, unprocessable, Some("count")).await;
    let (_, missing) = server.get("/v1/jobs/k").await;
    assert_eq!(missing["status"], 404, "a refused job was stored: {missing}");
    server.stop().await;
}
