//! Run history retention: the scheduler's background pruner keeps each job's newest finished runs
//! (`[runs] retention_per_job`) and drops runs older than `[runs] retention_seconds`.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::{PATIENCE, Receiver, Server, memory_config};

#[tokio::test]
async fn the_pruner_keeps_each_jobs_newest_runs() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.runs.retention_seconds = 0;
    config.runs.retention_per_job = 3;
    config.runs.prune_interval_seconds = 1;
    let server = Server::start(config).await;
    let job = json!({"id": "busy", "trigger": {"type": "interval", "seconds": 1}, "action": {"url": receiver.url("ok/busy")}});
    server.post("/v1/jobs", job).await;
    receiver.wait_for("ok/busy", 6).await;
    server.post("/v1/jobs/busy/pause", json!(null)).await;

    let runs =
        server.wait_runs("busy", |runs| runs.len() == 3 && runs.iter().all(|run| run["status"] == "succeeded")).await;
    let mut delivered: Vec<String> =
        receiver.matching("ok/busy").iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    assert!(delivered.len() >= 6);
    let kept: Vec<&str> = runs.iter().map(|run| run["idempotency_key"].as_str().unwrap()).collect();
    // The receiver got them oldest first; the newest three are what is kept, newest first.
    delivered.reverse();
    assert_eq!(kept, delivered[..3].iter().map(String::as_str).collect::<Vec<_>>());

    let text = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let pruned: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("apsched_runs_pruned_total "))
        .and_then(|value| value.parse().ok())
        .expect("apsched_runs_pruned_total");
    assert!(pruned >= 3.0, "pruned {pruned}");
    server.stop().await;
}

#[tokio::test]
async fn the_pruner_drops_finished_runs_past_their_age() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.runs.retention_seconds = 1;
    config.runs.retention_per_job = 0;
    config.runs.prune_interval_seconds = 1;
    let server = Server::start(config).await;
    server.post("/v1/jobs", json!({"id": "brief", "action": {"url": receiver.url("ok/brief")}})).await;
    server.wait_runs("brief", |runs| runs.len() == 1 && runs[0]["status"] == "succeeded").await;
    // The job is gone after its only fire, so once its history is pruned too, nothing is known of it.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = server.get("/v1/jobs/brief/runs").await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never pruned: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}
