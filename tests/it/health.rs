//! Health and auto-pause end to end: a real receiver that fails on command, the real server on each store. A job's
//! health follows its outcomes, `auto_pause_after_failures` pauses it (event, audit entry by `apsched`), a success
//! makes it healthy again, and bad options are 422 naming the field.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Receiver, Server, count_status, memory_config, sqlite_config};

fn failing_job(id: &str, url: &str, extra: Value) -> Value {
    let mut job = json!({
        "id": id,
        "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": url, "retry": {"max_attempts": 1}},
    });
    job.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    job
}

async fn job(server: &Server, id: &str) -> Value {
    let (status, job) = server.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

async fn auto_pause_after_three_failures(server: &Server, receiver: &Receiver) {
    let (status, added) = server
        .post(
            "/v1/jobs",
            failing_job(
                "fragile",
                &receiver.url("status/500/fragile"),
                json!({
            "auto_pause_after_failures": 3, "stale_after_seconds": 3600}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(
        added["health"],
        json!({"state": "unknown", "consecutive_failures": 0, "last_success_at": null,
        "last_failure_at": null})
    );
    assert_eq!(
        (added["auto_pause_after_failures"].clone(), added["stale_after_seconds"].clone()),
        (json!(3), json!(3600))
    );

    server.wait_runs("fragile", |runs| count_status(runs, "failed") >= 3).await;
    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    let paused = loop {
        let job = job(server, "fragile").await;
        if job["paused"] == true {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "never paused: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(paused["paused_reason"], "auto: 3 consecutive failures");
    assert_eq!(paused["next_run_time"], Value::Null);
    assert_eq!(paused["health"]["state"], "failing");
    assert_eq!(paused["health"]["consecutive_failures"], 3);
    assert!(paused["health"]["last_failure_at"].is_string(), "{paused}");
    // Paused by the third failure: no fourth call.
    assert_eq!(count_status(&server.runs("fragile").await, "failed"), 3);
    let (status, failing) = server.get("/v1/jobs?health=failing").await;
    assert_eq!(status, StatusCode::OK, "{failing}");
    assert_eq!(failing["jobs"].as_array().unwrap().len(), 1, "{failing}");
    assert_eq!(failing["jobs"][0]["id"], "fragile");
    let (_, healthy) = server.get("/v1/jobs?health=healthy").await;
    assert_eq!(healthy["jobs"], json!([]));
    let (status, problem) = server.get("/v1/jobs?health=sickly").await;
    assert_eq!((status, problem["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("health")), "{problem}");

    // The audit entry is written just after the pause it records.
    while by_apsched(server, "fragile", "pause").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no pause by apsched recorded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, history) = server.get("/v1/jobs/fragile/history").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let pause = &history["entries"][0];
    assert_eq!((pause["action"].clone(), pause["actor"].clone()), (json!("pause"), json!("apsched")), "{history}");
    assert_eq!(pause["reason"], "auto: 3 consecutive failures");
    assert_eq!(pause["after"]["paused"], true);

    // A change of the job's options keeps its health; resuming clears the pause reason.
    let (status, patched) = server.send("PATCH", "/v1/jobs/fragile", Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["health"]["consecutive_failures"], 3);
    let (status, resumed) = server.post("/v1/jobs/fragile/resume", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!((resumed["paused"].clone(), resumed["paused_reason"].clone()), (json!(false), Value::Null));
    assert_eq!(resumed["health"]["consecutive_failures"], 3);
}

async fn recovers_on_the_first_success(server: &Server, receiver: &Receiver) {
    let (status, added) =
        server.post("/v1/jobs", failing_job("wobbly", &receiver.url("flaky/2/503/wobbly"), json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    server.wait_runs("wobbly", |runs| count_status(runs, "succeeded") >= 1).await;
    let healthy = job(server, "wobbly").await;
    assert_eq!(healthy["health"]["state"], "healthy", "{healthy}");
    assert_eq!(healthy["health"]["consecutive_failures"], 0);
    assert!(healthy["health"]["last_success_at"].is_string() && healthy["health"]["last_failure_at"].is_string());
    server.send("DELETE", "/v1/jobs/wobbly", None).await;
}

#[tokio::test]
async fn health_auto_pause_and_recovery_on_the_memory_store() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    auto_pause_after_three_failures(&server, &receiver).await;
    recovers_on_the_first_success(&server, &receiver).await;
    server.stop().await;
}

#[tokio::test]
async fn health_auto_pause_and_recovery_on_sqlite_and_kept_over_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apsched.db");
    let receiver = Receiver::start().await;
    let server = Server::start(sqlite_config(&path)).await;
    auto_pause_after_three_failures(&server, &receiver).await;
    recovers_on_the_first_success(&server, &receiver).await;
    server.stop().await;
    let server = Server::start(sqlite_config(&path)).await;
    let kept = job(&server, "fragile").await;
    // Resumed, the job failed on (and was paused again): the count goes on from where it was.
    assert!(kept["health"]["consecutive_failures"].as_u64().unwrap() >= 3, "{kept}");
    assert_eq!(kept["auto_pause_after_failures"], 3);
    server.stop().await;
}

#[tokio::test]
async fn health_options_out_of_range_are_422_naming_the_field() {
    let server = Server::start(memory_config()).await;
    for (field, value) in [
        ("auto_pause_after_failures", json!(0)),
        ("auto_pause_after_failures", json!(-1)),
        ("auto_pause_after_failures", json!("3")),
        ("stale_after_seconds", json!(0)),
        ("stale_after_seconds", json!(1.5)),
    ] {
        let body = failing_job("bad", "http://127.0.0.1:9/", json!({ field: value }));
        let (status, problem) = server.post("/v1/jobs", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}: {problem}");
        assert_eq!(problem["field"], field, "{field}={value}: {problem}");
    }
    server.post("/v1/jobs", failing_job("good", "http://127.0.0.1:9/", json!({"paused": true}))).await;
    for (field, value) in [("auto_pause_after_failures", json!(0)), ("stale_after_seconds", json!(0))] {
        let (status, problem) = server.send("PATCH", "/v1/jobs/good", Some(json!({ field: value }))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}: {problem}");
        assert_eq!(problem["field"], field, "{field}={value}: {problem}");
    }
    server.stop().await;
}

#[tokio::test]
async fn health_pause_with_a_reason_until_a_time_resumes_by_itself() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sqlite_config(&dir.path().join("apsched.db"))).await;
    let body = json!({"id": "napping", "trigger": {"type": "interval", "hours": 1}, "action": {"url": receiver.url("ok/napping")}});
    assert_eq!(server.post("/v1/jobs", body).await.0, StatusCode::CREATED);
    let until = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let (status, paused) = server
        .post("/v1/jobs/napping/pause", json!({"reason": "maintenance window", "until": until.to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!((paused["paused"].clone(), paused["paused_reason"].clone()), (json!(true), json!("maintenance window")));
    assert!(paused["paused_until"].is_string(), "{paused}");
    let (_, history) = server.get("/v1/jobs/napping/history").await;
    assert_eq!(history["entries"][0]["action"], "pause");
    assert_eq!(history["entries"][0]["reason"], "maintenance window");

    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    let resumed = loop {
        let job = job(&server, "napping").await;
        if job["paused"] == false {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "never resumed: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(chrono::Utc::now() >= until, "resumed before its time");
    assert_eq!((resumed["paused_reason"].clone(), resumed["paused_until"].clone()), (Value::Null, Value::Null));
    assert!(resumed["next_run_time"].is_string(), "{resumed}");
    let (_, history) = server.get("/v1/jobs/napping/history").await;
    assert_eq!(
        (history["entries"][0]["action"].clone(), history["entries"][0]["actor"].clone()),
        (json!("resume"), json!("apsched")),
        "{history}"
    );
    // A plain pause (no body) still works, and a resume clears what a pause noted.
    assert_eq!(server.post("/v1/jobs/napping/pause", json!({"reason": "later"})).await.0, StatusCode::OK);
    let (status, plain) = server.send("POST", "/v1/jobs/napping/resume", None).await;
    assert_eq!((status, plain["paused_reason"].clone()), (StatusCode::OK, Value::Null));
    let (status, plain) = server.send("POST", "/v1/jobs/napping/pause", None).await;
    assert_eq!(
        (status, plain["paused"].clone(), plain["paused_reason"].clone()),
        (StatusCode::OK, json!(true), Value::Null)
    );
    server.stop().await;
}

#[tokio::test]
async fn health_pause_until_in_the_past_or_malformed_is_422_naming_the_field() {
    let server = Server::start(memory_config()).await;
    server
        .post(
            "/v1/jobs",
            json!({"id": "p", "trigger": {"type": "interval", "hours": 1},
        "action": {"url": "http://127.0.0.1:9/"}}),
        )
        .await;
    let past = (chrono::Utc::now() - chrono::TimeDelta::seconds(5)).to_rfc3339();
    for (body, field) in [
        (json!({"until": past}), "until"),
        (json!({"until": "tomorrow"}), "until"),
        (json!({"until": 5}), "until"),
        (json!({"reason": "x".repeat(1001)}), "reason"),
        (json!({"why": "x"}), "why"),
    ] {
        let (status, problem) = server.post("/v1/jobs/p/pause", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    assert_eq!(job(&server, "p").await["paused"], false);
    server.stop().await;
}

#[tokio::test]
async fn health_a_job_without_success_for_stale_after_seconds_becomes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sqlite_config(&dir.path().join("apsched.db"))).await;
    let body = json!({"id": "quiet", "trigger": {"type": "interval", "hours": 1}, "stale_after_seconds": 1,
        "action": {"url": "http://127.0.0.1:9/"}});
    let (status, added) = server.post("/v1/jobs", body).await;
    assert_eq!((status, added["health"]["state"].clone()), (StatusCode::CREATED, json!("unknown")), "{added}");
    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    loop {
        let job = job(&server, "quiet").await;
        if job["health"]["state"] == "stale" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never stale: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}

/// Entries of `job_id`'s history with this action by `apsched`.
async fn by_apsched(server: &Server, job_id: &str, action: &str) -> usize {
    let (status, history) = server.get(&format!("/v1/jobs/{job_id}/history")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let entries = history["entries"].as_array().unwrap();
    entries.iter().filter(|entry| entry["action"] == action && entry["actor"] == "apsched").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_three_replicas_on_postgres_auto_pause_and_resume_each_job_once() {
    let _turn = crate::harness::timing_bound_turn().await;
    use crate::harness::postgres::{ScratchSchema, postgres_config};
    let schema = ScratchSchema::create().await;
    let receiver = Receiver::start().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Server::start(postgres_config(schema.url(), 4)).await);
    }
    let first = &replicas[0];
    let body = failing_job("shared", &receiver.url("status/500/shared"), json!({"auto_pause_after_failures": 2}));
    assert_eq!(first.post("/v1/jobs", body).await.0, StatusCode::CREATED);
    let napping = json!({"id": "napping", "trigger": {"type": "interval", "hours": 1},
        "action": {"url": receiver.url("ok/napping")}});
    assert_eq!(first.post("/v1/jobs", napping).await.0, StatusCode::CREATED);
    let until = (chrono::Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    let (status, paused) = replicas[1].post("/v1/jobs/napping/pause", json!({"until": until})).await;
    assert_eq!(status, StatusCode::OK, "{paused}");

    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    loop {
        let shared = job(first, "shared").await;
        let napping = job(first, "napping").await;
        if shared["paused"] == true && napping["paused"] == false {
            assert_eq!(shared["paused_reason"], "auto: 2 consecutive failures");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not paused and resumed: {shared} {napping}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The entries are written just after the change they record: wait for them, then there is one of each.
    for (job_id, action) in [("shared", "pause"), ("napping", "resume")] {
        while by_apsched(&replicas[2], job_id, action).await == 0 {
            assert!(std::time::Instant::now() < deadline, "no {action} of {job_id} by apsched");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(by_apsched(&replicas[2], job_id, action).await, 1, "{action} of {job_id}");
    }
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test]
async fn health_notify_is_kept_masked_over_a_restart_and_bad_values_are_422_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apsched.db");
    let server = Server::start(sqlite_config(&path)).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    for (field, value) in [
        ("notify.url", json!({"url": "alerts.example.com"})),
        ("notify.on[1]", json!({"url": "https://alerts.example.com/", "on": ["failure", "exploded"]})),
        ("notify.failure_threshold", json!({"url": "https://alerts.example.com/", "failure_threshold": 0})),
        ("notify.signing_secret", json!({"url": "https://alerts.example.com/", "signing_secret": "hunter2"})),
    ] {
        let body = failing_job("bad", "http://127.0.0.1:9/", json!({ "notify": value }));
        let (status, problem) = server.post("/v1/jobs", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}: {problem}");
        assert_eq!(problem["field"], field, "{value}: {problem}");
        assert!(!problem.to_string().contains("hunter2"), "{problem}");
    }
    let notify = json!({"url": "https://alerts.example.com/", "on": ["failure", "auto_paused"],
        "headers": {"Authorization": "Bearer n0tify"}, "signing_secret": secret, "failure_threshold": 2});
    let (status, created) = server
        .post("/v1/jobs", failing_job("watched", "http://127.0.0.1:9/", json!({"paused": true, "notify": notify})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let shown = json!({"url": "https://alerts.example.com/", "on": ["failure", "auto_paused"],
        "headers": {"Authorization": "********"}, "signing_secret": "********", "failure_threshold": 2});
    assert_eq!(created["notify"], shown);
    // Written back as shown, the secrets are kept; a patch to 0 is refused.
    let (status, patched) =
        server.send("PATCH", "/v1/jobs/watched", Some(json!({"notify": created["notify"].clone()}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (status, problem) = server
        .send(
            "PATCH",
            "/v1/jobs/watched",
            Some(json!({"notify": {"url": "https://a.example/", "failure_threshold": 0}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "notify.failure_threshold", "{problem}");
    server.stop().await;

    let server = Server::start(sqlite_config(&path)).await;
    assert_eq!(job(&server, "watched").await["notify"], shown);
    let (status, cleared) = server.send("PATCH", "/v1/jobs/watched", Some(json!({"notify": null}))).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["notify"], Value::Null);
    server.stop().await;
}
