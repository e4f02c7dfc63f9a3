//! The scheduler end to end: real server, real receiver, real stores; short real intervals with generous bounds.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::harness::*;

fn interval_job(id: &str, url: &str, seconds: u32) -> serde_json::Value {
    json!({"id": id, "trigger": {"type": "interval", "seconds": seconds}, "action": {"url": url}})
}

#[tokio::test]
async fn an_interval_job_fires_repeatedly_with_delivery_headers() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let (status, job) = server.post("/v1/jobs", interval_job("tick", &receiver.url("ok/tick"), 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let got = receiver.wait_for("ok/tick", 3).await;
    let mut scheduled = Vec::new();
    let mut keys = Vec::new();
    for request in &got[..3] {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("apsched-job-id").as_deref(), Some("tick"));
        let time = request.header("apsched-scheduled-time").expect("scheduled time header");
        scheduled.push(DateTime::parse_from_rfc3339(&time).expect("RFC 3339").with_timezone(&Utc));
        keys.push(request.header("idempotency-key").expect("idempotency key"));
    }
    // One second apart on the trigger's grid, each with its own key.
    assert_eq!(scheduled[1] - scheduled[0], chrono::TimeDelta::seconds(1));
    assert_eq!(scheduled[2] - scheduled[1], chrono::TimeDelta::seconds(1));
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3);
    let runs = server.wait_runs("tick", |runs| count_status(runs, "succeeded") >= 3).await;
    assert!(runs.iter().all(|run| run["status"] != "failed"), "{runs:#?}");
    assert_eq!(runs[0]["http_status"], 200);
    server.stop().await;
}

#[tokio::test]
async fn pause_stops_deliveries_and_resume_restarts_them() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    server.post("/v1/jobs", interval_job("p", &receiver.url("ok/p"), 1)).await;
    receiver.wait_for("ok/p", 1).await;
    let (status, paused) = server.post("/v1/jobs/p/pause", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_run_time"], serde_json::Value::Null);
    // A delivery already claimed may still land; after it settles nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = receiver.matching("ok/p").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.matching("ok/p").len(), settled, "a paused job fired");
    let (status, resumed) = server.post("/v1/jobs/p/resume", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["paused"], false);
    assert!(resumed["next_run_time"].is_string());
    receiver.wait_for("ok/p", settled + 2).await;
    server.stop().await;
}

#[tokio::test]
async fn a_removed_job_stops_firing() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    server.post("/v1/jobs", interval_job("r", &receiver.url("ok/r"), 1)).await;
    receiver.wait_for("ok/r", 1).await;
    let (status, _) = server.send("DELETE", "/v1/jobs/r", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = receiver.matching("ok/r").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.matching("ok/r").len(), settled, "a removed job fired");
    assert_eq!(server.get("/v1/jobs/r").await.0, StatusCode::NOT_FOUND);
    // Its history outlives it.
    assert!(!server.runs("r").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn run_now_fires_once_outside_the_schedule() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "manual", "paused": true, "trigger": {"type": "interval", "hours": 1},
                     "action": {"url": receiver.url("ok/manual"), "method": "PUT", "json": {"x": 1}}});
    assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    let (status, run) = server.post("/v1/jobs/manual/run", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["status"], "pending");
    let got = receiver.wait_for("ok/manual", 1).await;
    assert_eq!(got[0].method, "PUT");
    assert_eq!(got[0].header("content-type").as_deref(), Some("application/json"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&got[0].body).unwrap(), json!({"x": 1}));
    assert_eq!(got[0].header("idempotency-key").unwrap(), run["idempotency_key"].as_str().unwrap());
    server.wait_runs("manual", |runs| count_status(runs, "succeeded") == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.matching("ok/manual").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_job_without_trigger_runs_once_now_and_is_removed() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let (status, job) =
        server.post("/v1/jobs", json!({"id": "once", "action": {"url": receiver.url("ok/once")}})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(job["trigger"]["type"], "date");
    assert!(job["trigger"]["run_date"].is_string());
    receiver.wait_for("ok/once", 1).await;
    server.wait_runs("once", |runs| count_status(runs, "succeeded") == 1).await;
    assert_eq!(server.get("/v1/jobs/once").await.0, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn max_instances_skips_an_overlapping_fire() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "slow", "max_instances": 1, "trigger": {"type": "interval", "seconds": 1},
                     "action": {"url": receiver.url("slow/2500/x")}});
    server.post("/v1/jobs", job).await;
    let runs = server.wait_runs("slow", |runs| count_status(runs, "skipped") >= 1).await;
    let skipped = runs.iter().find(|run| run["status"] == "skipped").unwrap();
    assert!(skipped["error"].as_str().unwrap().contains("max_instances"));
    // Never two deliveries at once.
    let got = receiver.matching("slow/2500");
    assert!(got.len() <= 2, "{} deliveries in ~2.5 s with max_instances 1", got.len());
    server.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_is_recorded_as_failed() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "bad", "action": {"url": receiver.url("status/503/x")}});
    server.post("/v1/jobs", job).await;
    let runs = server.wait_runs("bad", |runs| count_status(runs, "failed") == 1).await;
    assert_eq!(runs[0]["http_status"], 503);
    assert_eq!(runs[0]["attempts"], 1);
    assert_eq!(runs[0]["response_excerpt"], "503 for status/503/x");
    let unreachable = json!({"id": "down", "action": {"url": "http://127.0.0.1:9/nothing", "timeout_seconds": 2}});
    server.post("/v1/jobs", unreachable).await;
    let runs = server.wait_runs("down", |runs| count_status(runs, "failed") == 1).await;
    assert!(runs[0]["error"].as_str().unwrap().contains("connection"), "{:#?}", runs[0]);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_with_wait_lets_a_slow_delivery_finish() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    server.post("/v1/jobs", json!({"id": "long", "action": {"url": receiver.url("slow/1500/long")}})).await;
    let got = receiver.wait_for("slow/1500", 1).await;
    let (status, body) = server.post("/v1/scheduler/shutdown", json!({"wait": true})).await;
    let answered_at = std::time::Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "stopped");
    let finished = got[0].answered.lock().unwrap().expect("the slow delivery finished before shutdown answered");
    assert!(finished <= answered_at);
    server.stopped().await;
}

#[tokio::test]
async fn scheduler_pause_holds_every_job_and_resume_releases_them() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let (status, body) = server.post("/v1/scheduler/pause", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "paused");
    server.post("/v1/jobs", json!({"id": "held", "action": {"url": receiver.url("ok/held")}})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.matching("ok/held").is_empty(), "fired while the scheduler was paused");
    let (_, body) = server.post("/v1/scheduler/resume", json!(null)).await;
    assert_eq!(body["state"], "running");
    receiver.wait_for("ok/held", 1).await;
    server.stop().await;
}

/// A restarted server keeps its jobs (SQLite) and applies coalesce / misfire_grace_time to what it missed: the
/// second start runs with a clock an hour ahead, as if the server had been down that long.
#[tokio::test]
async fn a_restart_keeps_jobs_and_applies_coalesce_and_misfire_to_the_backlog() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apsched.db");
    let server = Server::start(sqlite_config(&path)).await;
    let every_minute = |id: &str, coalesce: bool, grace: serde_json::Value| {
        json!({"id": id, "coalesce": coalesce, "misfire_grace_time": grace,
               "trigger": {"type": "interval", "minutes": 1},
               "action": {"url": receiver.url(&format!("ok/{id}"))}})
    };
    server.post("/v1/jobs", every_minute("folded", true, json!(60))).await;
    server.post("/v1/jobs", every_minute("late", false, json!(600))).await;
    server.post("/v1/jobs", every_minute("forgiving", false, json!(null))).await;
    server.stop().await;

    let an_hour_later = std::sync::Arc::new(ShiftedClock(chrono::TimeDelta::hours(1)));
    let server = Server::start_with_clock(sqlite_config(&path), an_hour_later).await;
    let (status, jobs) = server.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 3);

    // coalesce: 60 fires were missed; one delivery, with the latest missed time, the rest recorded as coalesced.
    let runs = server.wait_runs("folded", |runs| count_status(runs, "succeeded") == 1).await;
    assert_eq!(count_status(&runs, "coalesced"), 59, "{:#?}", &runs[..3]);
    assert_eq!(receiver.matching("ok/folded").len(), 1);
    // No coalesce, 10-minute grace: the last ~10 are delivered, the older ~50 missed.
    let runs =
        server.wait_runs("late", |runs| count_status(runs, "succeeded") + count_status(runs, "missed") == 60).await;
    let delivered = count_status(&runs, "succeeded");
    assert!((9..=11).contains(&delivered), "{delivered} delivered within the grace time");
    // No grace limit: every missed fire is delivered.
    server.wait_runs("forgiving", |runs| count_status(runs, "succeeded") == 60).await;
    server.stop().await;
}
