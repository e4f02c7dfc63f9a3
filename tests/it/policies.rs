//! Scheduling policies end to end, on the real server and a real SQLite file: bounded catch-up after an outage
//! (`max_catchup_runs`). Short real intervals, generous bounds.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, sqlite_config};

fn time_of(run: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(run["scheduled_time"].as_str().unwrap()).unwrap().to_utc()
}

#[tokio::test]
async fn after_a_six_second_outage_only_the_newest_three_missed_fires_are_delivered() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(&dir.path().join("apsched.db"));
    let server = Server::start(config.clone()).await;
    let job = json!({"id": "catchup", "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": receiver.url("ok/catchup")}, "coalesce": false, "misfire_grace_time": 60,
        "max_catchup_runs": 3});
    let (status, added) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["max_catchup_runs"], 3);
    receiver.wait_for("ok/catchup", 2).await;
    server.stop().await;
    let down_at = Utc::now();

    tokio::time::sleep(Duration::from_secs(6)).await;
    let up_at = Utc::now();
    let server = Server::start(config).await;
    // Every fire of the outage is in the ledger once the restart's first claim is done: one run after `up_at`.
    let runs = server
        .wait_runs("catchup", |runs| runs.iter().any(|run| time_of(run) > up_at && run["status"] == "succeeded"))
        .await;
    let mut outage: Vec<&Value> = runs.iter().filter(|run| time_of(run) > down_at && time_of(run) <= up_at).collect();
    outage.sort_by_key(|run| time_of(run));
    assert!(outage.len() >= 5, "a 6-second outage of a 1-second interval: {outage:#?}");
    let missed: Vec<&&Value> = outage.iter().filter(|run| run["status"] == "missed").collect();
    let delivered: Vec<&&Value> = outage.iter().filter(|run| run["status"] != "missed").collect();
    assert!(delivered.len() <= 3, "at most the newest 3: {outage:#?}");
    assert_eq!(missed.len() + delivered.len(), outage.len());
    assert!(missed.len() >= outage.len() - 3, "{outage:#?}");
    assert!(
        missed.iter().all(|run| run["error"].as_str().unwrap().contains("max_catchup_runs")),
        "the older ones are recorded missed by the bound: {missed:#?}"
    );
    let newest_missed = missed.iter().map(|run| time_of(run)).max().unwrap();
    assert!(delivered.iter().all(|run| time_of(run) > newest_missed), "the newest are delivered: {outage:#?}");
    // Delivered in order, each once.
    let delivered_times: Vec<String> = receiver
        .matching("ok/catchup")
        .iter()
        .map(|hit| hit.header("apsched-scheduled-time").unwrap())
        .filter(|time| {
            let time = DateTime::parse_from_rfc3339(time).unwrap().to_utc();
            time > down_at && time <= up_at
        })
        .collect();
    let mut sorted = delivered_times.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(delivered_times, sorted, "in order, once each");
    assert!(delivered_times.len() <= 3, "{delivered_times:?}");
    server.stop().await;
}
