//! Labels and selectors through the real server, on every store: a selector picks exactly the jobs it should (also
//! those without the label, for `!=`, `notin` and `!key`), page by page; bulk changes and removals report their count
//! and apply; bad labels and selectors are refused naming the field, changing nothing; and a bulk resume on one
//! replica wakes the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apsched::scheduler::clock::ManualClock;
use apsched::settings::Config;
use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

use crate::harness::postgres::*;
use crate::harness::*;

fn hook() -> Value {
    json!({"url": "http://127.0.0.1:9/hook"})
}

/// A job firing daily in the far future (so nothing fires during a test), with `labels`.
fn job(id: &str, labels: Value) -> Value {
    json!({"id": id, "labels": labels, "action": hook(),
           "trigger": {"type": "interval", "days": 1, "start_date": "2099-01-01T00:00:00Z"}})
}

/// Jobs with and without the labels the selectors ask about; "pay-paused" is added paused.
async fn add_jobs(server: &Server) {
    let jobs = [
        job("pay-gold", json!({"team": "payments", "tier": "gold"})),
        job("pay-silver", json!({"team": "payments", "tier": "silver"})),
        job("bill-gold", json!({"team": "billing", "tier": "gold", "legacy": ""})),
        job("ops", json!({"team": "ops"})),
        job("bare", json!({})),
        json!({"id": "pay-paused", "paused": true, "labels": {"team": "payments", "tier": "bronze"}, "action": hook(),
               "trigger": {"type": "interval", "days": 1, "start_date": "2099-01-01T00:00:00Z"}}),
    ];
    for job in jobs {
        let (status, body) = server.post("/v1/jobs", job).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// `selector` written into a query string.
fn query(selector: &str) -> String {
    form_urlencoded::byte_serialize(selector.as_bytes()).collect()
}

/// The ids `GET /v1/jobs?selector=…` lists, following cursors with pages of `limit`, in list order.
async fn listed(server: &Server, selector: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/jobs?selector={}&limit={limit}", query(selector));
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{selector}: {page}");
        ids.extend(page["jobs"].as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn selectors_pick_exactly_the_matching_jobs(config: Config) {
    let server = Server::start(config).await;
    add_jobs(&server).await;
    for (selector, expected) in [
        ("team=payments", &["pay-gold", "pay-paused", "pay-silver"][..]),
        ("team==payments,tier=gold", &["pay-gold"]),
        ("tier in (gold, silver)", &["bill-gold", "pay-gold", "pay-silver"]),
        ("tier", &["bill-gold", "pay-gold", "pay-paused", "pay-silver"]),
        ("team!=payments", &["bare", "bill-gold", "ops"]),
        ("tier notin (gold,silver)", &["bare", "ops", "pay-paused"]),
        ("!tier", &["bare", "ops"]),
        ("!legacy,tier=gold", &["pay-gold"]),
        ("region=eu", &[]),
        ("", &["bare", "bill-gold", "ops", "pay-gold", "pay-paused", "pay-silver"]),
    ] {
        for limit in [1, 2, 100] {
            assert_eq!(sorted(listed(&server, selector, limit).await), expected, "{selector:?}, pages of {limit}");
        }
    }
    // With the paused filter, in list order (paused jobs last).
    let (_, page) = server.get(&format!("/v1/jobs?paused=false&selector={}", query("team=payments"))).await;
    let ids: Vec<&str> = page["jobs"].as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pay-gold", "pay-silver"]);
    assert_eq!(listed(&server, "tier", 1).await, ["bill-gold", "pay-gold", "pay-silver", "pay-paused"]);
    // Labels are shown on the job.
    let (_, shown) = server.get("/v1/jobs/bill-gold").await;
    assert_eq!(shown["labels"], json!({"legacy": "", "team": "billing", "tier": "gold"}));
    assert_eq!(server.get("/v1/jobs/bare").await.1["labels"], json!({}));
    server.stop().await;
}

#[tokio::test]
async fn selectors_pick_exactly_the_matching_jobs_in_memory() {
    selectors_pick_exactly_the_matching_jobs(memory_config()).await;
}

#[tokio::test]
async fn selectors_pick_exactly_the_matching_jobs_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    selectors_pick_exactly_the_matching_jobs(sqlite_config(&dir.path().join("apsched.db"))).await;
}

#[tokio::test]
async fn selectors_pick_exactly_the_matching_jobs_in_postgres() {
    let schema = ScratchSchema::create().await;
    selectors_pick_exactly_the_matching_jobs(postgres_config(schema.url(), 3)).await;
}

async fn bulk_changes_report_their_count_and_apply(config: Config) {
    let server = Server::start(config).await;
    add_jobs(&server).await;
    let (_, before) = server.get("/v1/jobs/ops").await;
    let first_fire = server.get("/v1/jobs/pay-gold").await.1["next_run_time"].clone();
    assert!(first_fire.is_string(), "{first_fire}");

    let (status, body) =
        server.send("PATCH", &format!("/v1/jobs?selector={}", query("tier")), Some(json!({"paused": true}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"modified": 4})));
    for id in ["pay-gold", "pay-silver", "bill-gold", "pay-paused"] {
        let (_, job) = server.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!((job["paused"].clone(), job["next_run_time"].clone()), (json!(true), Value::Null), "{id}");
    }
    assert_eq!(server.get("/v1/jobs/ops").await.1, before, "a job the selector does not select is untouched");

    // Resuming recomputes the next run time, as resuming one job does.
    let (status, body) = server
        .send("PATCH", &format!("/v1/jobs?selector={}", query("team=payments")), Some(json!({"paused": false})))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"modified": 3})));
    let (_, resumed) = server.get("/v1/jobs/pay-paused").await;
    assert_eq!((resumed["paused"].clone(), resumed["next_run_time"].clone()), (json!(false), first_fire));
    assert_eq!(server.get("/v1/jobs/bill-gold").await.1["paused"], true);

    // Options and labels; the labels are replaced whole, and the selection follows them.
    let patch = json!({"max_instances": 4, "misfire_grace_time": null, "coalesce": false,
                       "labels": {"team": "platform"}});
    let (status, body) =
        server.send("PATCH", &format!("/v1/jobs?selector={}", query("tier in (gold)")), Some(patch)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"modified": 2})));
    let (_, changed) = server.get("/v1/jobs/pay-gold").await;
    assert_eq!(
        (&changed["max_instances"], &changed["misfire_grace_time"], &changed["coalesce"], &changed["labels"]),
        (&json!(4), &Value::Null, &json!(false), &json!({"team": "platform"}))
    );
    assert_eq!(sorted(listed(&server, "team=platform", 100).await), ["bill-gold", "pay-gold"]);
    assert!(listed(&server, "tier=gold", 100).await.is_empty());

    // A selector that selects nothing changes nothing.
    let (status, body) =
        server.send("PATCH", &format!("/v1/jobs?selector={}", query("region")), Some(json!({"paused": true}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"modified": 0})));

    // Removal by selector, then of everything left without one (as before).
    let (status, body) =
        server.send("DELETE", &format!("/v1/jobs?selector={}", query("team notin (platform)")), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 4})));
    assert_eq!(sorted(listed(&server, "", 100).await), ["bill-gold", "pay-gold"]);
    assert_eq!(server.send("DELETE", "/v1/jobs", None).await, (StatusCode::OK, json!({"removed": 2})));
    server.stop().await;
}

#[tokio::test]
async fn bulk_changes_report_their_count_and_apply_in_memory() {
    bulk_changes_report_their_count_and_apply(memory_config()).await;
}

#[tokio::test]
async fn bulk_changes_report_their_count_and_apply_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bulk_changes_report_their_count_and_apply(sqlite_config(&dir.path().join("apsched.db"))).await;
}

#[tokio::test]
async fn bulk_changes_report_their_count_and_apply_in_postgres() {
    let schema = ScratchSchema::create().await;
    bulk_changes_report_their_count_and_apply(postgres_config(schema.url(), 3)).await;
}

/// The field a 422 names.
async fn refused(server: &Server, method: &str, path: &str, body: Option<Value>) -> String {
    let (status, problem) = server.send(method, path, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path}: {problem}");
    problem["field"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn bad_labels_and_selectors_are_refused_naming_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sqlite_config(&dir.path().join("apsched.db"))).await;
    add_jobs(&server).await;
    let (_, before) = server.get("/v1/jobs?limit=100").await;

    for (labels, field) in [
        (json!({"bad key": "x"}), "labels"),
        (json!({"": "x"}), "labels"),
        (json!({"k".repeat(64): "x"}), "labels"),
        (json!({"team": "v".repeat(64)}), "labels.team"),
        (Value::Object((0..33).map(|i| (format!("k{i}"), json!("v"))).collect()), "labels"),
        (json!({"team": 1}), "labels.team"),
    ] {
        assert_eq!(refused(&server, "POST", "/v1/jobs", Some(job("new", labels.clone()))).await, field, "{labels}");
        let patch = Some(json!({"labels": labels.clone()}));
        assert_eq!(refused(&server, "PATCH", "/v1/jobs/ops", patch.clone()).await, field, "{labels}");
        assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=team", patch).await, field, "{labels}");
    }
    for selector in ["a,", "a in b", "a in (b", "!", "a b", "team: payments", "é", "a=b=c"] {
        let path = format!("/v1/jobs?selector={}", query(selector));
        assert_eq!(refused(&server, "GET", &path, None).await, "selector", "{selector}");
        assert_eq!(refused(&server, "DELETE", &path, None).await, "selector", "{selector}");
        assert_eq!(refused(&server, "PATCH", &path, Some(json!({"paused": true}))).await, "selector", "{selector}");
    }
    // A bulk change or removal needs a selector with at least one requirement, and leaves the schedule alone.
    let pause = Some(json!({"paused": true}));
    assert_eq!(refused(&server, "PATCH", "/v1/jobs", pause.clone()).await, "selector");
    assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=", pause.clone()).await, "selector");
    assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=%20", pause).await, "selector");
    assert_eq!(refused(&server, "DELETE", "/v1/jobs?selector=", None).await, "selector");
    let trigger = Some(json!({"trigger": {"type": "interval", "hours": 1}}));
    assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=team", trigger).await, "trigger");
    let next = Some(json!({"next_run_time": "2099-01-01T00:00:00Z"}));
    assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=team", next).await, "next_run_time");
    let executor = Some(json!({"executor": "nowhere", "paused": true}));
    assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=team", executor).await, "executor");
    let zero = Some(json!({"max_instances": 0}));
    assert_eq!(refused(&server, "PATCH", "/v1/jobs?selector=team", zero).await, "max_instances");

    assert_eq!(server.get("/v1/jobs?limit=100").await.1, before, "a refused request changed a job");
    server.stop().await;
}

#[tokio::test]
async fn a_bulk_resume_removes_a_job_whose_trigger_has_ended_as_resume_does() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_clock(sqlite_config(&dir.path().join("apsched.db")), clock.clone()).await;
    // Every ten minutes for the next hour; resumed two hours later, it has no fire time left. (A `date` trigger
    // would not do: its one fire stays due, however late, as when it is added with a past date.)
    let end = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let ended = json!({"id": "once", "paused": true, "labels": {"batch": "b"}, "action": hook(),
                       "trigger": {"type": "interval", "minutes": 10, "end_date": end}});
    assert_eq!(server.post("/v1/jobs", ended).await.0, StatusCode::CREATED);
    assert_eq!(server.post("/v1/jobs", job("daily", json!({"batch": "b"}))).await.0, StatusCode::CREATED);
    clock.advance(TimeDelta::hours(2));
    let (status, body) = server.send("PATCH", "/v1/jobs?selector=batch%3Db", Some(json!({"paused": false}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"modified": 2})));
    assert_eq!(server.get("/v1/jobs/once").await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.get("/v1/jobs/daily").await.1["paused"], false);
    server.stop().await;
}

/// A woken replica claims within milliseconds; generous for a loaded CI machine, far below the 300 s a replica
/// that was not woken would sleep.
const WAKE_BOUND: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_bulk_resume_on_one_replica_is_fired_at_once_by_another() {
    let schema = ScratchSchema::create().await;
    let receiver = Receiver::start().await;
    let changer = Server::start(postgres_config(schema.url(), 3)).await;
    let firer = Server::start(postgres_config(schema.url(), 3)).await;
    // Only the other replica fires, and only if the bulk change wakes it: with every job paused it sleeps.
    assert_eq!(changer.post("/v1/scheduler/pause", json!(null)).await.0, StatusCode::OK);
    for id in ["r1", "r2"] {
        let job = json!({"id": id, "paused": true, "labels": {"wave": "1"}, "action": {"url": receiver.url(&format!("ok/{id}"))},
                         "trigger": {"type": "interval", "seconds": 1}});
        assert_eq!(changer.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = Instant::now();
    let (status, body) = changer.send("PATCH", "/v1/jobs?selector=wave%3D1", Some(json!({"paused": false}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"modified": 2})));
    receiver.wait_for("ok/r1", 1).await;
    receiver.wait_for("ok/r2", 1).await;
    // The first fire is one interval after the resume; the wake-up must not add to it.
    let latency = resumed.elapsed();
    assert!(latency < Duration::from_secs(1) + WAKE_BOUND, "fired {latency:?} after the bulk resume");
    changer.stop().await;
    firer.stop().await;
}
