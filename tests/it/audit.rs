//! Issue 14, the audit trail: every change made through the API is recorded with the token's name, the
//! `apsched-reason` header and the job before and after as the API showed it (secrets masked); read back through
//! `GET /v1/jobs/{id}/history` (also after the job is gone) and `GET /v1/audit` with filters and pages; pruned by
//! `[audit] retention_seconds`.

use std::sync::Arc;

use apsched::api::auth::{ApiToken, Role};
use apsched::scheduler::clock::ManualClock;
use apsched::settings::Config;
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use crate::harness::postgres::{ScratchSchema, postgres_config};
use crate::harness::{PATIENCE, Receiver, Server, memory_config, sqlite_config};

const CI: &str = "ci-token-0123456789abcdef";
const OPS: &str = "ops-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef";
const SECRET_HEADER: &str = "Bearer s3cret-value-of-the-receiver";
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Two named tokens that change things and an unnamed reader (`token-3`).
fn with_tokens(mut config: Config) -> Config {
    config.api.tokens = vec![
        ApiToken::named("ci", CI, Role::Write),
        ApiToken::named("ops", OPS, Role::Admin),
        ApiToken::new(READER, Role::Read),
    ];
    config
}

/// A request as `token`, with an optional `apsched-reason`; status and JSON body.
async fn call(
    server: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
    reason: Option<&str>,
) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.client.request(method, format!("{}{}", server.base, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(reason) = reason {
        request = request.header("apsched-reason", reason);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The entries of an audit page, asserting it answered 200.
async fn entries(server: &Server, token: Option<&str>, path: &str) -> (Vec<Value>, Value) {
    let (status, body) = call(server, token, "GET", path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    (body["entries"].as_array().cloned().unwrap(), body["next_cursor"].clone())
}

fn summary(entries: &[Value]) -> Vec<(String, String, Value)> {
    entries
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_string(),
                entry["actor"].as_str().unwrap().to_string(),
                entry["reason"].clone(),
            )
        })
        .collect()
}

async fn who_did_what_and_why(config: Config) {
    let receiver = Receiver::start().await;
    let server = Server::start(with_tokens(config)).await;
    let job = json!({
        "id": "nightly", "trigger": {"type": "interval", "hours": 1},
        "action": {"url": receiver.url("ok/nightly"), "headers": {"Authorization": SECRET_HEADER, "X-Team": "data"},
                   "signing_secret": SIGNING_SECRET}
    });
    let (status, added) = call(&server, Some(CI), "POST", "/v1/jobs", Some(job), Some("first deploy")).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let rename = json!({"name": "Nightly report"});
    let (status, renamed) = call(&server, Some(OPS), "PATCH", "/v1/jobs/nightly", Some(rename), Some("clearer")).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    let (status, paused) = call(&server, Some(OPS), "POST", "/v1/jobs/nightly/pause", None, None).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    let (status, resumed) =
        call(&server, Some(CI), "POST", "/v1/jobs/nightly/resume", None, Some("incident over")).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let (status, run) = call(&server, Some(CI), "POST", "/v1/jobs/nightly/run", None, Some("backfill one")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    receiver.wait_for("ok/nightly", 1).await;

    // Requests that fail change nothing and record nothing.
    let bad_patch = json!({"max_instances": 0});
    assert_eq!(
        call(&server, Some(CI), "PATCH", "/v1/jobs/nightly", Some(bad_patch), None).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(call(&server, Some(OPS), "POST", "/v1/jobs/absent/pause", None, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&server, Some(READER), "DELETE", "/v1/jobs/nightly", None, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&server, Some(CI), "POST", "/v1/scheduler/pause", None, None).await.0, StatusCode::FORBIDDEN);

    let (status, _) = call(&server, Some(OPS), "POST", "/v1/scheduler/pause", None, Some("maintenance")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&server, Some(OPS), "POST", "/v1/scheduler/resume", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, last_seen) = call(&server, Some(READER), "GET", "/v1/jobs/nightly", None, None).await;
    let (status, _) = call(&server, Some(CI), "DELETE", "/v1/jobs/nightly", None, Some("retired")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The job is gone; its history is not. The reader (an unnamed token) may read it.
    let (history, next) = entries(&server, Some(READER), "/v1/jobs/nightly/history").await;
    assert_eq!(next, Value::Null);
    assert_eq!(
        summary(&history),
        [
            ("remove", "ci", json!("retired")),
            ("run", "ci", json!("backfill one")),
            ("resume", "ci", json!("incident over")),
            ("pause", "ops", Value::Null),
            ("modify", "ops", json!("clearer")),
            ("add", "ci", json!("first deploy")),
        ]
        .map(|(action, actor, reason)| (action.to_string(), actor.to_string(), reason))
    );
    assert!(history.iter().all(|entry| entry["job_id"] == "nightly" && entry["id"].is_string()));
    // Before and after are the job exactly as the API showed it, null where it did not exist.
    let (remove, run_entry, resume, pause, modify, add) =
        (&history[0], &history[1], &history[2], &history[3], &history[4], &history[5]);
    assert_eq!((&add["before"], &add["after"]), (&Value::Null, &added));
    assert_eq!((&modify["before"], &modify["after"]), (&added, &renamed));
    assert_eq!((&pause["before"], &pause["after"]), (&renamed, &paused));
    assert_eq!((&resume["before"], &resume["after"]), (&paused, &resumed));
    assert_eq!((&run_entry["before"], &run_entry["after"]), (&resumed, &resumed));
    assert_eq!((&remove["before"], &remove["after"]), (&last_seen, &Value::Null));
    assert_eq!(add["after"]["action"]["headers"]["Authorization"], "********");
    assert_eq!(add["after"]["action"]["headers"]["X-Team"], "data");
    assert_eq!(add["after"]["action"]["signing_secret"], "********");
    let everything = serde_json::to_string(&entries(&server, Some(OPS), "/v1/audit").await.0).unwrap();
    assert!(!everything.contains("s3cret") && !everything.contains("MfKQ9r8"), "a secret in the audit: {everything}");

    // The whole trail, and filtered by actor and by action.
    let (all, _) = entries(&server, Some(READER), "/v1/audit").await;
    assert_eq!(all.len(), 8, "{all:#?}");
    let (by_ops, _) = entries(&server, Some(READER), "/v1/audit?actor=ops").await;
    let actions: Vec<&str> = by_ops.iter().map(|entry| entry["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["scheduler_resume", "scheduler_pause", "pause", "modify"]);
    let (paused_scheduler, _) = entries(&server, Some(READER), "/v1/audit?action=scheduler_pause").await;
    assert_eq!(paused_scheduler.len(), 1);
    let entry = &paused_scheduler[0];
    assert_eq!(
        (&entry["actor"], &entry["reason"], &entry["job_id"]),
        (&json!("ops"), &json!("maintenance"), &Value::Null)
    );
    assert_eq!((&entry["before"], &entry["after"]), (&Value::Null, &Value::Null));
    let (none, _) = entries(&server, Some(READER), "/v1/audit?actor=token-3").await;
    assert!(none.is_empty(), "the reader changed nothing: {none:#?}");

    // Reading the audit needs a token like any other read.
    assert_eq!(call(&server, None, "GET", "/v1/audit", None, None).await.0, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_audit_shows_who_did_each_change_and_why_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    who_did_what_and_why(sqlite_config(&dir.path().join("apsched.db"))).await;
}

#[tokio::test]
async fn the_audit_shows_who_did_each_change_and_why_on_postgres() {
    let schema = ScratchSchema::create().await;
    who_did_what_and_why(postgres_config(schema.url(), 4)).await;
}

#[tokio::test]
async fn without_tokens_the_actor_is_anonymous_and_remove_all_records_each_job() {
    let server = Server::start(memory_config()).await;
    for id in ["a", "b"] {
        let job =
            json!({"id": id, "trigger": {"type": "interval", "hours": 1}, "action": {"url": "http://127.0.0.1:9/"}});
        assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    // Replacing a job is an add whose `before` is the job it replaced.
    let (_, original) = server.get("/v1/jobs/b").await;
    let replacement = json!({"id": "b", "name": "again", "trigger": {"type": "interval", "hours": 2},
                             "action": {"url": "http://127.0.0.1:9/"}, "replace_existing": true});
    let (status, replaced) = server.post("/v1/jobs", replacement).await;
    assert_eq!(status, StatusCode::CREATED, "{replaced}");
    let (history, _) = entries(&server, None, "/v1/jobs/b/history?limit=1").await;
    assert_eq!(
        (&history[0]["action"], &history[0]["before"], &history[0]["after"]),
        (&json!("add"), &original, &replaced)
    );

    let (status, removed) = call(&server, None, "DELETE", "/v1/jobs", None, Some("clean slate")).await;
    assert_eq!((status, &removed["removed"]), (StatusCode::OK, &json!(2)));
    let (removals, _) = entries(&server, None, "/v1/audit?action=remove_all").await;
    let mut ids: Vec<&str> = removals.iter().map(|entry| entry["job_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"]);
    for entry in &removals {
        assert_eq!(
            (&entry["actor"], &entry["reason"], &entry["after"]),
            (&json!("anonymous"), &json!("clean slate"), &Value::Null)
        );
        assert_eq!(entry["before"]["id"], entry["job_id"]);
    }
    let (history, _) = entries(&server, None, "/v1/jobs/a/history").await;
    assert_eq!(summary(&history)[0].0, "remove_all");
    assert_eq!(summary(&history)[1], ("add".to_string(), "anonymous".to_string(), Value::Null));
    server.stop().await;
}

#[tokio::test]
async fn the_audit_pages_filters_and_refuses_bad_filters_by_name() {
    let server = Server::start(memory_config()).await;
    for index in 0..5 {
        let job = json!({"id": format!("j{index}"), "trigger": {"type": "interval", "hours": 1},
                         "action": {"url": "http://127.0.0.1:9/"}, "paused": true});
        assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    let (all, _) = entries(&server, None, "/v1/audit").await;
    let ids: Vec<&str> = all.iter().map(|entry| entry["job_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["j4", "j3", "j2", "j1", "j0"]);

    // Pages of two: every entry once, in order, and the last page says so.
    let mut paged = Vec::new();
    let mut path = "/v1/audit?limit=2".to_string();
    loop {
        let (page, next) = entries(&server, None, &path).await;
        assert!(page.len() <= 2);
        paged.extend(page.iter().map(|entry| entry["job_id"].as_str().unwrap().to_string()));
        match next.as_str() {
            Some(cursor) => path = format!("/v1/audit?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, ids);

    // `since` is inclusive; its time may carry any offset.
    let third = chrono::DateTime::parse_from_rfc3339(all[2]["time"].as_str().unwrap()).unwrap();
    let since = third.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600).unwrap()).to_rfc3339();
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("since", &since).finish();
    let (recent, _) = entries(&server, None, &format!("/v1/audit?{query}")).await;
    assert_eq!(recent.len(), 3, "{recent:#?}");
    let (adds, _) = entries(&server, None, "/v1/audit?action=add&actor=anonymous&limit=1000").await;
    assert_eq!(adds.len(), 5);

    // Bad filters: 422 naming the parameter, for both lists.
    for (query, field) in [
        ("since=yesterday", "since"),
        ("action=delete", "action"),
        ("actor=", "actor"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        for list in ["/v1/audit", "/v1/jobs/j0/history"] {
            let (status, body) = server.get(&format!("{list}?{query}")).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{list}?{query}: {body}");
            assert_eq!(body["field"], field, "{list}?{query}: {body}");
        }
    }
    assert_eq!(server.get("/v1/audit?cursor=not-one").await.0, StatusCode::BAD_REQUEST);
    let (status, body) = server.get("/v1/jobs/never-was/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A reason that is too long is refused, and the change is not made.
    let long = "x".repeat(apsched::audit::MAX_REASON_LENGTH + 1);
    let (status, body) = call(&server, None, "POST", "/v1/jobs/j0/resume", None, Some(&long)).await;
    assert_eq!((status, &body["field"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("apsched-reason")), "{body}");
    assert_eq!(server.get("/v1/jobs/j0").await.1["paused"], true);
    assert_eq!(entries(&server, None, "/v1/jobs/j0/history").await.0.len(), 1);

    // A reason in UTF-8 is kept as it is; bytes that are not UTF-8 are read as ISO-8859-1, as HTTP once defined them.
    for (sent, recorded) in [("zurück nach Plan ✓".as_bytes(), "zurück nach Plan ✓"), (&b"caf\xe9"[..], "café")]
    {
        let response = server
            .client
            .post(format!("{}/v1/jobs/j1/resume", server.base))
            .header("apsched-reason", reqwest::header::HeaderValue::from_bytes(sent).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (history, _) = entries(&server, None, "/v1/jobs/j1/history?limit=1").await;
        assert_eq!(history[0]["reason"], recorded);
    }
    server.stop().await;
}

#[tokio::test]
async fn retention_prunes_old_entries_and_keeps_recent_ones() {
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let mut config = memory_config();
    config.audit.retention_seconds = 3600;
    config.runs.prune_interval_seconds = 1;
    let server = Server::start_with_clock(config, clock.clone()).await;
    let paused = |id: &str| json!({"id": id, "trigger": {"type": "interval", "hours": 1}, "action": {"url": "http://127.0.0.1:9/"}, "paused": true});
    assert_eq!(server.post("/v1/jobs", paused("old")).await.0, StatusCode::CREATED);
    clock.advance(chrono::TimeDelta::hours(2));
    assert_eq!(server.post("/v1/jobs", paused("new")).await.0, StatusCode::CREATED);

    // The pruner runs every second: the entry two hours old goes, the fresh one stays.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (old, _) = entries(&server, None, "/v1/jobs/old/history").await;
        if old.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never pruned: {old:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (new, _) = entries(&server, None, "/v1/jobs/new/history").await;
    assert_eq!(summary(&new), [("add".to_string(), "anonymous".to_string(), Value::Null)]);
    server.stop().await;
}
