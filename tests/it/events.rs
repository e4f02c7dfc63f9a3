//! `GET /v1/events` read with a real HTTP client while jobs are added, changed, fired and removed: the server-sent
//! events arrive in order, with masked job data, and filters apply.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::{PATIENCE, Receiver, Server, memory_config};

/// One server-sent event: its `event:` name and `data:` JSON.
#[derive(Debug, Clone)]
struct Sse {
    kind: String,
    data: Value,
}

/// Connect and read events in the background; the channel closes when the server ends the stream.
async fn subscribe(server: &Server, query: &str) -> mpsc::UnboundedReceiver<Sse> {
    let mut response = server.client.get(format!("{}/v1/events{query}", server.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (sender, receiver) = mpsc::unbounded_channel();
    // The first bytes are the "subscribed" comment: from then on nothing published is missed.
    let mut buffer = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(buffer.starts_with(": subscribed"), "{buffer:?}");
    tokio::spawn(async move {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let mut kind = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        kind = Some(name.to_string());
                    } else if let Some(part) = line.strip_prefix("data: ") {
                        data.push_str(part);
                    }
                }
                if let Some(kind) = kind {
                    let _ = sender.send(Sse { kind, data: serde_json::from_str(&data).unwrap() });
                }
            }
            match response.chunk().await {
                Ok(Some(chunk)) => buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                _ => return,
            }
        }
    });
    receiver
}

/// The next event; panics after PATIENCE.
async fn next(events: &mut mpsc::UnboundedReceiver<Sse>) -> Sse {
    tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event in time").expect("the stream is open")
}

/// The next `count` events' kinds.
async fn kinds(events: &mut mpsc::UnboundedReceiver<Sse>, count: usize) -> Vec<Sse> {
    let mut got = Vec::new();
    for _ in 0..count {
        got.push(next(events).await);
    }
    got
}

fn names(events: &[Sse]) -> Vec<&str> {
    events.iter().map(|event| event.kind.as_str()).collect()
}

#[tokio::test]
async fn the_stream_follows_jobs_from_added_to_removed_and_the_scheduler_to_shutdown() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let mut events = subscribe(&server, "").await;

    // Added paused, renamed, run now: added, modified, submitted, executed.
    let job = json!({"id": "watched", "paused": true, "trigger": {"type": "interval", "hours": 1},
                     "action": {"url": receiver.url("ok/watched"), "headers": {"Authorization": "Bearer s3cret"}}});
    assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    assert_eq!(server.send("PATCH", "/v1/jobs/watched", Some(json!({"name": "Watched"}))).await.0, StatusCode::OK);
    let (status, run) = server.post("/v1/jobs/watched/run", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = kinds(&mut events, 4).await;
    assert_eq!(names(&got), ["job_added", "job_modified", "job_submitted", "job_executed"]);
    assert_eq!(got[0].data["job_id"], "watched");
    assert_eq!(got[0].data["jobstore"], "default");
    assert_eq!(got[0].data["job"]["action"]["headers"]["Authorization"], "********", "masked as in the API");
    assert_eq!(got[1].data["job"]["name"], "Watched");
    assert_eq!(got[2].data["run"]["status"], "pending");
    assert_eq!(got[3].data["run"]["idempotency_key"], run["idempotency_key"]);
    assert_eq!(got[3].data["run"]["status"], "succeeded");
    assert_eq!(got[3].data["run"]["http_status"], 200);
    assert!(chrono::DateTime::parse_from_rfc3339(got[3].data["time"].as_str().unwrap()).is_ok());

    // A one-shot job whose webhook fails: submitted, removed (its trigger ended at the claim), then the error.
    server.post("/v1/jobs", json!({"id": "doomed", "action": {"url": receiver.url("status/500/doomed")}})).await;
    let got = kinds(&mut events, 4).await;
    assert_eq!(names(&got), ["job_added", "job_submitted", "job_removed", "job_error"]);
    assert!(got.iter().all(|event| event.data["job_id"] == "doomed"));
    assert_eq!(got[3].data["run"]["status"], "failed");
    assert_eq!(got[3].data["run"]["http_status"], 500);

    // A fire an hour late with a 1 s grace time is missed.
    let an_hour_ago = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let late = json!({"id": "late", "misfire_grace_time": 1, "next_run_time": an_hour_ago,
                      "trigger": {"type": "interval", "hours": 2}, "action": {"url": receiver.url("ok/late")}});
    server.post("/v1/jobs", late).await;
    let got = kinds(&mut events, 2).await;
    assert_eq!(names(&got), ["job_added", "job_missed"]);
    assert_eq!(got[1].data["run"]["status"], "missed");

    server.post("/v1/scheduler/pause", json!(null)).await;
    server.post("/v1/scheduler/resume", json!(null)).await;
    assert_eq!(server.send("DELETE", "/v1/jobs/watched", None).await.0, StatusCode::NO_CONTENT);
    let (_, removed) = server.send("DELETE", "/v1/jobs", None).await;
    assert_eq!(removed["removed"], 1);
    let got = kinds(&mut events, 4).await;
    assert_eq!(names(&got), ["scheduler_paused", "scheduler_resumed", "job_removed", "all_jobs_removed"]);
    assert_eq!(got[2].data["job_id"], "watched");
    assert_eq!(got[3].data["removed"], 1);

    let (status, _) = server.post("/v1/scheduler/shutdown", json!({"wait": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next(&mut events).await.kind, "scheduler_shutdown");
    let end = tokio::time::timeout(PATIENCE, events.recv()).await.expect("the stream ends with the server");
    assert!(end.is_none(), "nothing after shutdown: {end:?}");
    server.stopped().await;
}

#[tokio::test]
async fn filters_by_kind_and_job_id_and_max_instances_is_reported() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let mut busy = subscribe(&server, "?kind=job_max_instances,job_executed&job_id=busy").await;
    let mut added = subscribe(&server, "?kind=job_added").await;

    // Each delivery takes 1.5 s and the job fires every second: with max_instances 1 fires are skipped.
    let job = json!({"id": "busy", "max_instances": 1, "trigger": {"type": "interval", "seconds": 1},
                     "action": {"url": receiver.url("slow/1500/busy")}});
    server.post("/v1/jobs", job).await;
    server.post("/v1/jobs", json!({"id": "bystander", "action": {"url": receiver.url("ok/bystander")}})).await;

    let got = kinds(&mut added, 2).await;
    assert_eq!(
        got.iter().map(|event| event.data["job_id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["busy", "bystander"]
    );
    let mut seen = Vec::new();
    while !(seen.contains(&"job_max_instances".to_string()) && seen.contains(&"job_executed".to_string())) {
        let event = next(&mut busy).await;
        assert_eq!(event.data["job_id"], "busy", "{event:?}");
        if event.kind == "job_max_instances" {
            assert_eq!(event.data["run"]["status"], "skipped");
        }
        seen.push(event.kind);
    }
    assert!(seen.iter().all(|kind| kind == "job_max_instances" || kind == "job_executed"), "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_kind_is_a_problem_naming_the_parameter() {
    let server = Server::start(memory_config()).await;
    let (status, problem) = server.get("/v1/events?kind=job_added,job_exploded").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "kind");
    let (status, _) = server.get("/v1/events?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}
