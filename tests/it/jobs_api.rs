//! Job semantics through the API: defaults, stores, pagination, modification, times in the trigger's zone.

use std::collections::BTreeMap;

use apsched::settings::{JobDefaults, JobStoreConfig, StoreType};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

fn hook() -> Value {
    json!({"url": "http://127.0.0.1:9/hook"})
}

#[tokio::test]
async fn job_defaults_come_from_configuration_and_requests_override_them() {
    let mut config = memory_config();
    config.job_defaults = JobDefaults { coalesce: false, max_instances: 3, misfire_grace_time: None };
    let server = Server::start(config).await;
    let (status, job) = server.post("/v1/jobs", json!({"id": "d", "paused": true, "action": hook()})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (job["coalesce"].clone(), job["max_instances"].clone(), job["misfire_grace_time"].clone()),
        (json!(false), json!(3), Value::Null)
    );
    let (_, job) = server
        .post("/v1/jobs", json!({"id": "o", "paused": true, "action": hook(), "coalesce": true, "max_instances": 1, "misfire_grace_time": 5}))
        .await;
    assert_eq!(
        (job["coalesce"].clone(), job["max_instances"].clone(), job["misfire_grace_time"].clone()),
        (json!(true), json!(1), json!(5))
    );
    let (_, scheduler) = server.get("/v1/scheduler").await;
    assert_eq!(scheduler["job_defaults"], json!({"coalesce": false, "max_instances": 3, "misfire_grace_time": null}));
    server.stop().await;
}

#[tokio::test]
async fn jobs_live_in_the_named_store_and_ids_are_unique_across_stores() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(&dir.path().join("a.db"));
    config
        .jobstores
        .insert("scratch".into(), JobStoreConfig { store_type: Some(StoreType::Memory), url: None, pool_size: None });
    let server = Server::start(config).await;
    let in_store = |id: &str, store: &str| json!({"id": id, "jobstore": store, "paused": true, "action": hook()});
    assert_eq!(server.post("/v1/jobs", in_store("a", "default")).await.0, StatusCode::CREATED);
    assert_eq!(server.post("/v1/jobs", in_store("b", "scratch")).await.0, StatusCode::CREATED);
    assert_eq!(server.post("/v1/jobs", in_store("a", "scratch")).await.0, StatusCode::CONFLICT);
    let (_, listed) = server.get("/v1/jobs?jobstore=scratch").await;
    let ids: Vec<&str> = listed["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["b"]);
    assert_eq!(server.get("/v1/jobs/b").await.1["jobstore"], "scratch");
    // Replacing moves the job to the store named.
    let mut moved = in_store("a", "scratch");
    moved["replace_existing"] = json!(true);
    assert_eq!(server.post("/v1/jobs", moved).await.0, StatusCode::CREATED);
    assert_eq!(server.get("/v1/jobs/a").await.1["jobstore"], "scratch");
    let (_, removed) = server.send("DELETE", "/v1/jobs?jobstore=scratch", None).await;
    assert_eq!(removed, json!({"removed": 2}));
    let (_, scheduler) = server.get("/v1/scheduler").await;
    assert_eq!(scheduler["jobstores"], json!({"default": {"type": "sqlite"}, "scratch": {"type": "memory"}}));
    server.stop().await;
}

#[tokio::test]
async fn the_list_pages_through_every_job_once_in_next_run_time_order() {
    let server = Server::start(memory_config()).await;
    for i in 0..23 {
        // Three jobs share each run date, so ties are broken by id; every fifth is paused.
        let job = json!({"id": format!("job-{i:02}"), "paused": i % 5 == 0, "action": hook(),
                         "trigger": {"type": "date", "run_date": format!("2099-01-{:02}T00:00:00Z", 1 + i / 3)}});
        assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=4&cursor={c}"),
            None => "/v1/jobs?limit=4".to_string(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 4);
        seen.extend(jobs.iter().map(|j| (j["next_run_time"].clone(), j["id"].as_str().unwrap().to_string())));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 23, "a job was listed twice");
    // Scheduled jobs by time then id, paused (no next run time) last.
    let first_paused = seen.iter().position(|(t, _)| t.is_null()).unwrap();
    assert!(seen[first_paused..].iter().all(|(t, _)| t.is_null()));
    let scheduled: Vec<_> =
        seen[..first_paused].iter().map(|(t, id)| (t.as_str().unwrap().to_string(), id.clone())).collect();
    let mut sorted = scheduled.clone();
    sorted.sort();
    assert_eq!(scheduled, sorted);
    let (_, paused) = server.get("/v1/jobs?paused=true&limit=1000").await;
    assert_eq!(paused["jobs"].as_array().unwrap().len(), 5);
    server.stop().await;
}

#[tokio::test]
async fn times_are_written_in_the_trigger_zone_and_naive_times_read_in_it() {
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "berlin", "action": hook(),
                     "trigger": {"type": "cron", "hour": 2, "minute": 30, "timezone": "Europe/Berlin"},
                     "next_run_time": "2099-07-01 08:00:00"});
    let (status, job) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["next_run_time"], "2099-07-01T08:00:00+02:00");
    assert!(
        job["created_at"].as_str().unwrap().ends_with("+01:00")
            || job["created_at"].as_str().unwrap().ends_with("+02:00")
    );
    server.stop().await;
}

#[tokio::test]
async fn patch_changes_fields_and_a_new_trigger_reschedules() {
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "m", "name": "first", "action": hook(), "trigger": {"type": "date", "run_date": "2099-01-01T00:00:00Z"}});
    server.post("/v1/jobs", job).await;
    let patch = json!({"name": "second", "max_instances": 4, "misfire_grace_time": null,
                       "trigger": {"type": "date", "run_date": "2099-06-01T12:00:00Z"}});
    let (status, job) = server.send("PATCH", "/v1/jobs/m", Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["name"], "second");
    assert_eq!(job["max_instances"], 4);
    assert_eq!(job["misfire_grace_time"], Value::Null);
    assert_eq!(job["next_run_time"], "2099-06-01T12:00:00+00:00");
    // Absent fields are kept; an explicit null name clears it.
    let (_, job) = server.send("PATCH", "/v1/jobs/m", Some(json!({"name": null}))).await;
    assert_eq!(job["name"], Value::Null);
    assert_eq!(job["max_instances"], 4);
    let (_, job) = server.send("PATCH", "/v1/jobs/m", Some(json!({"paused": true}))).await;
    assert_eq!((job["paused"].clone(), job["next_run_time"].clone()), (json!(true), Value::Null));
    let (_, job) = server.send("PATCH", "/v1/jobs/m", Some(json!({"paused": false}))).await;
    assert_eq!(job["next_run_time"], "2099-06-01T12:00:00+00:00");
    assert_eq!(server.get("/v1/jobs/m").await.1, job);
    // A trigger that can never fire again is refused and changes nothing.
    let past = json!({"trigger": {"type": "cron", "year": 2001}});
    let (status, problem) = server.send("PATCH", "/v1/jobs/m", Some(past)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "trigger");
    assert_eq!(server.get("/v1/jobs/m").await.1, job);
    server.stop().await;
}

#[tokio::test]
async fn an_interval_resumed_keeps_its_grid() {
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "grid", "action": hook(), "trigger": {"type": "interval", "hours": 1, "start_date": "2026-01-01T00:00:30Z"}});
    let (_, added) = server.post("/v1/jobs", job).await;
    assert!(added["next_run_time"].as_str().unwrap().ends_with(":00:30+00:00"), "{added}");
    server.post("/v1/jobs/grid/pause", json!(null)).await;
    let (_, resumed) = server.post("/v1/jobs/grid/resume", json!(null)).await;
    assert_eq!(resumed["next_run_time"], added["next_run_time"]);
    // Without start_date, the start is fixed when the job is added and shown in the trigger.
    let (_, fixed) = server
        .post("/v1/jobs", json!({"id": "f", "action": hook(), "trigger": {"type": "interval", "minutes": 5}}))
        .await;
    assert!(fixed["trigger"]["start_date"].is_string(), "{fixed}");
    assert_eq!(fixed["trigger"]["start_date"], fixed["next_run_time"]);
    server.stop().await;
}

#[tokio::test]
async fn a_config_with_no_default_store_uses_the_first() {
    let mut config = memory_config();
    config.jobstores = BTreeMap::from([(
        "only".into(),
        JobStoreConfig { store_type: Some(StoreType::Memory), url: None, pool_size: None },
    )]);
    let server = Server::start(config).await;
    let (status, job) = server.post("/v1/jobs", json!({"id": "x", "paused": true, "action": hook()})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["jobstore"], "only");
    server.stop().await;
}

#[tokio::test]
async fn a_job_read_and_written_back_keeps_its_secrets() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let action = json!({"url": receiver.url("ok/secret"), "headers": {"Authorization": "Bearer s3cret", "X-Trace": "t"},
                        "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    let (status, job) = server.post("/v1/jobs", json!({"id": "s", "paused": true, "action": action})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["action"]["headers"]["Authorization"], "********");
    // The action exactly as shown, with one real change.
    let mut shown = job["action"].clone();
    shown["headers"]["X-Trace"] = json!("changed");
    let (status, patched) = server.send("PATCH", "/v1/jobs/s", Some(json!({"action": shown}))).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    server.post("/v1/jobs/s/run", json!(null)).await;
    let got = receiver.wait_for("ok/secret", 1).await;
    assert_eq!(got[0].header("authorization").as_deref(), Some("Bearer s3cret"), "the mask was stored");
    assert_eq!(got[0].header("x-trace").as_deref(), Some("changed"));
    assert!(got[0].header("webhook-signature").is_some(), "the signing secret was lost");
    // A mask with nothing behind it is refused.
    let invented = json!({"action": {"url": receiver.url("ok/secret"), "headers": {"X-Api-Key": "********"}}});
    let (status, problem) = server.send("PATCH", "/v1/jobs/s", Some(invented)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "action.headers");
    server.stop().await;
}
