//! Scheduling policies end to end, on the real server: bounded catch-up after an outage (`max_catchup_runs`, on a
//! real SQLite file), and what a fire does while the job's run is still going (`overlap`). Short real intervals,
//! generous bounds.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::{PATIENCE, Received, Receiver, Server, memory_config, sqlite_config};

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

fn scheduled(hit: &Received) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&hit.header("apsched-scheduled-time").unwrap()).unwrap().to_utc()
}

fn answered(hit: &Received) -> std::time::Instant {
    hit.answered.lock().unwrap().expect("answered")
}

/// Every 2 s, each call taking 3 s: the fire 2 s after a call starts comes while it is still going.
fn slow_job(id: &str, url: &str, overlap: &str) -> Value {
    json!({"id": id, "trigger": {"type": "interval", "seconds": 2}, "action": {"url": url},
           "max_instances": 1, "overlap": overlap})
}

#[tokio::test]
async fn buffer_one_delivers_the_buffered_fire_as_soon_as_the_run_ends_where_skip_waits_for_the_next_fire() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    for (id, overlap) in [("buffering", "buffer_one"), ("skipping", "skip")] {
        let (status, added) =
            server.post("/v1/jobs", slow_job(id, &receiver.url(&format!("slow/3000/{id}")), overlap)).await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        assert_eq!(added["overlap"], overlap);
    }
    let (buffering, skipping) =
        tokio::join!(receiver.wait_for("slow/3000/buffering", 2), receiver.wait_for("slow/3000/skipping", 2));

    // buffer_one: the fire 2 s in was kept and went out the moment the first call ended (3 s in).
    assert_eq!(scheduled(&buffering[1]) - scheduled(&buffering[0]), chrono::TimeDelta::seconds(2));
    let waited = buffering[1].arrived.saturating_duration_since(answered(&buffering[0]));
    assert!(waited < Duration::from_millis(700), "delivered {waited:?} after the run ended");
    // skip: that fire was skipped; the next delivery is the fire 4 s in, a second after the call ended.
    assert_eq!(scheduled(&skipping[1]) - scheduled(&skipping[0]), chrono::TimeDelta::seconds(4));
    let waited = skipping[1].arrived.saturating_duration_since(answered(&skipping[0]));
    assert!(waited >= Duration::from_millis(700), "the next fire came {waited:?} after the run ended");
    let runs = server.runs("skipping").await;
    let skipped = runs.iter().find(|run| time_of(run) == scheduled(&skipping[0]) + chrono::TimeDelta::seconds(2));
    assert_eq!(skipped.expect("the fire in between is recorded")["status"], "skipped");
    let runs = server.runs("buffering").await;
    assert!(runs.iter().all(|run| run["status"] != "skipped" || run["error"].as_str().unwrap().contains("buffer_one")));
    server.stop().await;
}

#[tokio::test]
async fn cancel_other_aborts_the_running_call_and_records_it_cancelled() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "impatient", "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": receiver.url("slow/30000/impatient")}, "max_instances": 1, "overlap": "cancel_other"});
    let (status, added) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let hits = receiver.wait_for("slow/30000/impatient", 2).await;
    assert_eq!(scheduled(&hits[1]) - scheduled(&hits[0]), chrono::TimeDelta::seconds(1), "the next fire started");
    // The first call's connection was dropped: the receiver's handler went away without answering.
    let deadline = std::time::Instant::now() + PATIENCE;
    while hits[0].dropped.lock().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the first call was never hung up on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hits[0].answered.lock().unwrap().is_none());
    let first = scheduled(&hits[0]);
    let runs = server
        .wait_runs("impatient", |runs| runs.iter().any(|run| time_of(run) == first && run["status"] == "cancelled"))
        .await;
    let cancelled = runs.iter().find(|run| time_of(run) == first).unwrap();
    assert!(cancelled["error"].as_str().unwrap().contains("cancel_other"), "{cancelled}");
    assert!(cancelled["finished_at"].is_string());
    assert_eq!(server.post("/v1/jobs/impatient/pause", json!({})).await.0, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_overlap_is_refused_naming_the_field() {
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "odd", "action": {"url": "http://127.0.0.1:9/"}, "overlap": "queue"});
    let (status, problem) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "overlap", "{problem}");
    let job = json!({"id": "odd", "action": {"url": "http://127.0.0.1:9/"}, "max_catchup_runs": 0});
    let (status, problem) = server.post("/v1/jobs", job).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("max_catchup_runs")));
    server.stop().await;
}
