//! Backfills end to end: the past fires of a per-minute cron delivered once each, with their own scheduled time
//! and the `apsched-backfill` header; a repeat skips them all; the pace holds; a cancel stops delivery; a restart
//! on a SQLite file goes on where it was; two replicas on PostgreSQL share one backfill; bad input is a 422.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::harness::postgres::{ScratchSchema, postgres_config};
use crate::harness::*;

/// Start of a 10-minute range ending at the last whole minute: ten fires of a per-minute cron.
fn last_minutes(n: i64) -> (String, String) {
    let end = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let start = end - TimeDelta::minutes(n);
    (start.to_rfc3339(), end.to_rfc3339())
}

async fn per_minute_job(server: &Server, id: &str, url: &str) {
    let job = json!({"id": id, "trigger": {"type": "cron", "minute": "*"}, "action": {"url": url}});
    let (status, body) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn start(server: &Server, job_id: &str, body: Value) -> Value {
    let (status, backfill) = server.post(&format!("/v1/jobs/{job_id}/backfill"), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{backfill}");
    assert_eq!(backfill["state"], "running", "{backfill}");
    backfill
}

/// Wait until the backfill's state is no longer running.
async fn finished(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        let (status, backfill) = server.get(&format!("/v1/backfills/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{backfill}");
        if backfill["state"] != "running" {
            return backfill;
        }
        assert!(Instant::now() < deadline, "backfill never finished: {backfill}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The backfill deliveries the receiver got, by scheduled time: how many of each.
fn delivered_fires(hits: &[Received]) -> BTreeMap<DateTime<Utc>, usize> {
    let mut fires = BTreeMap::new();
    for hit in hits.iter().filter(|hit| hit.header("apsched-backfill").as_deref() == Some("true")) {
        let time = DateTime::parse_from_rfc3339(&hit.header("apsched-scheduled-time").unwrap()).unwrap();
        *fires.entry(time.with_timezone(&Utc)).or_insert(0) += 1;
    }
    fires
}

fn assert_each_once(hits: &[Received], start: &str, n: i64) {
    let start = DateTime::parse_from_rfc3339(start).unwrap().with_timezone(&Utc);
    let expected: BTreeMap<DateTime<Utc>, usize> = (0..n).map(|i| (start + TimeDelta::minutes(i), 1)).collect();
    assert_eq!(delivered_fires(hits), expected);
}

#[tokio::test]
async fn a_backfill_delivers_each_past_fire_once_and_a_repeat_skips_them() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    per_minute_job(&server, "minutely", &receiver.url("bf/once")).await;
    let (from, to) = last_minutes(10);
    let body = json!({"start": from, "end": to, "rate_per_second": 50});
    let backfill = start(&server, "minutely", body.clone()).await;
    assert_eq!((backfill["total"].as_u64(), backfill["job_id"].as_str()), (Some(10), Some("minutely")));
    let done = finished(&server, backfill["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        (done["delivered"].as_u64(), done["skipped"].as_u64(), done["pending"].as_u64()),
        (Some(10), Some(0), Some(0))
    );
    assert_each_once(&receiver.matching("bf/once"), &from, 10);
    let runs = server.runs("minutely").await;
    let backfilled: Vec<&Value> = runs.iter().filter(|run| run["kind"] == "backfill").collect();
    assert_eq!(backfilled.len(), 10, "{runs:#?}");

    let again = start(&server, "minutely", body).await;
    let done = finished(&server, again["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        (done["delivered"].as_u64(), done["skipped"].as_u64(), done["total"].as_u64()),
        (Some(0), Some(10), Some(10))
    );
    assert_each_once(&receiver.matching("bf/once"), &from, 10);

    let (status, list) = server.get("/v1/jobs/minutely/backfills").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["backfills"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [again["id"].as_str().unwrap(), backfill["id"].as_str().unwrap()], "newest first");
    let (_, audit) = server.get("/v1/jobs/minutely/history").await;
    assert!(audit.to_string().contains("\"backfill\""), "{audit}");
    server.stop().await;
}

#[tokio::test]
async fn a_backfill_keeps_its_pace() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    per_minute_job(&server, "paced", &receiver.url("bf/paced")).await;
    let (from, to) = last_minutes(10);
    let posted = Instant::now();
    let backfill = start(&server, "paced", json!({"start": from, "end": to, "rate_per_second": 5})).await;
    let done = finished(&server, backfill["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let hits: Vec<Received> =
        (receiver.matching("bf/paced").into_iter()).filter(|hit| hit.header("apsched-backfill").is_some()).collect();
    assert_eq!(hits.len(), 10);
    // The first fire is taken after the request, and each next one at least 1/5 s after the one before: the
    // tenth cannot be sent before nine intervals have passed.
    let spread = hits.last().unwrap().arrived - posted;
    let gaps: Vec<Duration> = hits.windows(2).map(|pair| pair[1].arrived - pair[0].arrived).collect();
    assert!(spread >= Duration::from_millis(1795), "10 fires at 5/s arrived within {spread:?}: {gaps:?}");
}

#[tokio::test]
async fn a_cancelled_backfill_delivers_no_more() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    per_minute_job(&server, "cancelled", &receiver.url("bf/cancel")).await;
    let (from, to) = last_minutes(30);
    let backfill = start(&server, "cancelled", json!({"start": from, "end": to, "rate_per_second": 2})).await;
    let id = backfill["id"].as_str().unwrap();
    receiver.wait_for("bf/cancel", 1).await;
    let (status, cancelled) = server.send("DELETE", &format!("/v1/backfills/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let done = finished(&server, id).await;
    assert_eq!(done["state"], "cancelled");
    assert!(done["delivered"].as_u64().unwrap() < 30, "{done}");
    // Another cancel changes nothing.
    let (status, again) = server.send("DELETE", &format!("/v1/backfills/{id}"), None).await;
    assert_eq!((status, &again["state"]), (StatusCode::OK, &json!("cancelled")));
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_goes_on_with_its_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("apsched.db");
    let receiver = Receiver::start().await;
    let first = Server::start(sqlite_config(&file)).await;
    per_minute_job(&first, "resumed", &receiver.url("bf/restart")).await;
    let (from, to) = last_minutes(10);
    let backfill = start(&first, "resumed", json!({"start": from, "end": to, "rate_per_second": 4})).await;
    let id = backfill["id"].as_str().unwrap();
    receiver.wait_for("bf/restart", 3).await;
    first.stop().await;
    let before = delivered_fires(&receiver.matching("bf/restart")).len();
    assert!(before < 10, "stopped mid-backfill");

    let second = Server::start(sqlite_config(&file)).await;
    let done = finished(&second, id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["delivered"].as_u64(), Some(10), "{done}");
    assert_each_once(&receiver.matching("bf/restart"), &from, 10);
    second.stop().await;
}

#[tokio::test]
async fn two_replicas_share_a_backfill_without_double_delivery() {
    let _turn = crate::harness::timing_bound_turn().await;
    let schema = ScratchSchema::create().await;
    let receiver = Receiver::start().await;
    let first = Server::start(postgres_config(schema.url(), 4)).await;
    let second = Server::start(postgres_config(schema.url(), 4)).await;
    per_minute_job(&first, "shared", &receiver.url("bf/shared")).await;
    let (from, to) = last_minutes(40);
    let backfill = start(&first, "shared", json!({"start": from, "end": to, "rate_per_second": 40})).await;
    let done = finished(&second, backfill["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["delivered"].as_u64(), Some(40), "{done}");
    assert_each_once(&receiver.matching("bf/shared"), &from, 40);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn bad_backfills_are_422_naming_the_field_and_unknown_ones_404() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    per_minute_job(&server, "checked", &receiver.url("bf/bad")).await;
    let (from, to) = last_minutes(10);
    let future = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    for (body, field) in [
        (json!({"start": to, "end": from}), "end"),
        (json!({"start": to, "end": to}), "end"),
        (json!({"start": from, "end": future}), "end"),
        (json!({"start": "yesterday", "end": to}), "start"),
        (json!({"start": from, "end": "soon"}), "end"),
        (json!({"start": from, "end": to, "max_runs": 100_001}), "max_runs"),
        (json!({"start": from, "end": to, "max_runs": 0}), "max_runs"),
        (json!({"start": from, "end": to, "rate_per_second": 0}), "rate_per_second"),
        (json!({"start": from, "end": to, "rate_per_second": 1001}), "rate_per_second"),
    ] {
        let (status, problem) = server.post("/v1/jobs/checked/backfill", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    // More fires than max_runs: the oldest max_runs are taken.
    let backfill =
        start(&server, "checked", json!({"start": from, "end": to, "max_runs": 3, "rate_per_second": 100})).await;
    assert_eq!(backfill["total"], 3);
    let (status, _) = server.post("/v1/jobs/nope/backfill", json!({"start": from, "end": to})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for method in ["GET", "DELETE"] {
        let (status, _) = server.send(method, "/v1/backfills/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    let (status, _) = server.get("/v1/jobs/nope/backfills").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}
