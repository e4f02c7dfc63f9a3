//! The PostgreSQL store end to end, with in-process servers: a change on one replica wakes another at once
//! (LISTEN/NOTIFY), and a server that loses its database keeps running, says it is not ready, and loses no fire.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

use crate::harness::postgres::*;
use crate::harness::*;

/// Replicas sharing a schema in these tests; each has few connections, the tests make little traffic.
const POOL_SIZE: u32 = 3;
/// A woken replica claims within milliseconds; this bound is generous for a loaded CI machine, and far below the
/// 300 s a replica that was not woken would sleep.
const WAKE_BOUND: Duration = Duration::from_secs(2);

/// Scheduled time → idempotency keys of every delivery of it.
fn deliveries(receiver: &Receiver, prefix: &str) -> BTreeMap<DateTime<Utc>, Vec<String>> {
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for request in receiver.matching(prefix) {
        let time = request.header("apsched-scheduled-time").expect("scheduled time header");
        let time = DateTime::parse_from_rfc3339(&time).expect("RFC 3339").with_timezone(&Utc);
        by_time.entry(time).or_default().push(request.header("idempotency-key").expect("idempotency key"));
    }
    by_time
}

#[tokio::test]
async fn a_job_added_on_one_replica_is_fired_at_once_by_another() {
    let schema = ScratchSchema::create().await;
    let receiver = Receiver::start().await;
    let adder = Server::start(postgres_config(schema.url(), POOL_SIZE)).await;
    let firer = Server::start(postgres_config(schema.url(), POOL_SIZE)).await;
    // The adder does not fire, so only the other replica can, and only if the change wakes it: with no jobs it
    // sleeps for its 300 s safety wake.
    assert_eq!(adder.post("/v1/scheduler/pause", json!(null)).await.0, StatusCode::OK);
    // Both idle: the firer's loop has gone to sleep on an empty store.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let added = Instant::now();
    let (status, body) = adder.post("/v1/jobs", json!({"id": "now", "action": {"url": receiver.url("ok/now")}})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    receiver.wait_for("ok/now", 1).await;
    let latency = added.elapsed();
    assert!(latency < WAKE_BOUND, "fired {latency:?} after being added on the other replica");

    // A paused job resumed on the adder is also fired at once by the other.
    let later = json!({"id": "resumed", "paused": true, "trigger": {"type": "interval", "seconds": 1},
                       "action": {"url": receiver.url("ok/resumed")}});
    assert_eq!(adder.post("/v1/jobs", later).await.0, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = Instant::now();
    assert_eq!(adder.post("/v1/jobs/resumed/resume", json!(null)).await.0, StatusCode::OK);
    receiver.wait_for("ok/resumed", 1).await;
    // The first fire is one interval after the resume; the wake-up must not add to it.
    let latency = resumed.elapsed();
    assert!(latency < Duration::from_secs(1) + WAKE_BOUND, "resumed job fired {latency:?} after the resume");

    firer.wait_runs("now", |runs| count_status(runs, "succeeded") == 1).await;
    assert_eq!(receiver.matching("ok/now").len(), 1);
    adder.stop().await;
    firer.stop().await;
}

/// One server on a database reached through a proxy: its connections are terminated by the server
/// (`pg_terminate_backend`), then the database disappears for a few seconds. The job fires every second
/// throughout; every scheduled second is delivered once the database is back, none twice with different keys.
#[tokio::test]
async fn a_server_that_loses_its_database_recovers_and_loses_no_fire() {
    let _turn = crate::harness::timing_bound_turn().await;
    const OUTAGE: Duration = Duration::from_secs(4);
    let schema = ScratchSchema::create().await;
    let proxy = Proxy::start(database_address()).await;
    let application_name = format!("apsched_{}", schema.name);
    let url = schema.url_via(&proxy.database_url(), &application_name);
    let receiver = Receiver::start().await;
    let server = Server::start(postgres_config(url, POOL_SIZE)).await;

    let start = (Utc::now() + chrono::TimeDelta::seconds(2)).trunc_subsecs(0);
    // No coalesce and a grace far longer than the outage: every fire scheduled during it must still be delivered.
    let job = json!({"id": "steady", "coalesce": false, "misfire_grace_time": 120,
                     "trigger": {"type": "interval", "seconds": 1, "start_date": start.to_rfc3339()},
                     "action": {"url": receiver.url("ok/steady")}});
    assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    receiver.wait_for("ok/steady", 3).await;

    let terminated = terminate_backends(&application_name).await;
    assert!(terminated >= 1, "the server's sessions were found");
    let delivered = receiver.matching("ok/steady").len();
    receiver.wait_for("ok/steady", delivered + 3).await;
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);

    proxy.cut();
    let cut_at = Utc::now();
    let deadline = Instant::now() + PATIENCE;
    while server.get("/readyz").await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(Instant::now() < deadline, "/readyz stayed ready without a database");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(OUTAGE).await;
    proxy.restore();
    let restored_at = Utc::now();
    let deadline = Instant::now() + PATIENCE;
    while server.get("/readyz").await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "/readyz not ready again after the database came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everything scheduled up to two seconds after the database came back.
    let last = (restored_at + chrono::TimeDelta::seconds(2)).trunc_subsecs(0);
    let expected: Vec<DateTime<Utc>> =
        (0..).map(|n| start + chrono::TimeDelta::seconds(n)).take_while(|time| *time <= last).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = deliveries(&receiver, "ok/steady");
        if expected.iter().all(|time| got.contains_key(time)) {
            break;
        }
        let missing: Vec<_> = expected.iter().filter(|time| !got.contains_key(time)).collect();
        assert!(
            Instant::now() < deadline,
            "fires never delivered: {missing:?} (cut at {cut_at}, back at {restored_at})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during_outage = expected.iter().filter(|time| **time > cut_at && **time < restored_at).count();
    assert!(during_outage >= 3, "{during_outage} fires fell in the outage");
    for (time, keys) in deliveries(&receiver, "ok/steady") {
        assert!(keys.iter().all(|key| *key == keys[0]), "{time} delivered with different keys: {keys:?}");
    }
    // The ledger caught up too: every delivered fire is recorded as succeeded.
    let runs = server
        .wait_runs("steady", |runs| {
            expected.iter().all(|time| {
                runs.iter().any(|run| {
                    run["status"] == "succeeded"
                        && DateTime::parse_from_rfc3339(run["scheduled_time"].as_str().unwrap()).unwrap() == *time
                })
            })
        })
        .await;
    assert_eq!(count_status(&runs, "missed"), 0, "{runs:#?}");
    server.stop().await;
}

/// Several named stores at once: a SQLite store and a PostgreSQL one side by side in one server.
#[tokio::test]
async fn a_sqlite_and_a_postgres_store_serve_side_by_side() {
    let schema = ScratchSchema::create().await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let mut config = postgres_config(schema.url(), POOL_SIZE);
    let local = sqlite_config(&dir.path().join("apsched.db")).jobstores.remove("default").unwrap();
    config.jobstores.insert("local".to_string(), local);
    let server = Server::start(config).await;
    for (id, store) in [("shared", "default"), ("embedded", "local")] {
        let job = json!({"id": id, "jobstore": store, "action": {"url": receiver.url(&format!("ok/{id}"))}});
        assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    receiver.wait_for("ok/shared", 1).await;
    receiver.wait_for("ok/embedded", 1).await;
    for id in ["shared", "embedded"] {
        server.wait_runs(id, |runs| count_status(runs, "succeeded") == 1).await;
    }
    let mut db = schema.connect().await;
    let in_postgres: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT job_id FROM runs").fetch_all(&mut db).await.unwrap();
    assert_eq!(in_postgres, ["shared"], "each job's ledger is in its own store");
    server.stop().await;
}
