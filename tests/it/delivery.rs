//! Dependable delivery end to end: retries against a scripted receiver (failing the first attempts, 429 with
//! Retry-After, hanging past the timeout, closing the connection), their spacing and the final run record; a retry
//! holds no worker and counts against max_instances. Short real intervals, generous upper bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use apsched::settings::ExecutorConfig;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::{self, Closer, Received, Receiver, Server, memory_config};

/// Slack added to an upper bound on a gap: scheduling, the HTTP round trip and a busy CI machine.
const SLACK: Duration = Duration::from_secs(2);
/// A wait is never shorter than asked; timers may fire a hair early against `Instant`, hence a small allowance.
const TIMER_GRAIN: Duration = Duration::from_millis(5);

fn one_shot(id: &str, url: &str, retry: Value) -> Value {
    json!({"id": id, "action": {"url": url, "retry": retry}})
}

fn gaps(hits: &[Received]) -> Vec<Duration> {
    hits.windows(2).map(|pair| pair[1].arrived - pair[0].arrived).collect()
}

fn assert_between(gap: Duration, low: Duration, high: Duration) {
    assert!(gap + TIMER_GRAIN >= low && gap <= high, "gap {gap:?} not within [{low:?}, {high:?}]");
}

async fn final_run(server: &Server, job_id: &str) -> Value {
    let runs = server
        .wait_runs(job_id, |runs| {
            runs.first().is_some_and(|run| run["status"] == "succeeded" || run["status"] == "failed")
        })
        .await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    runs[0].clone()
}

#[tokio::test]
async fn failing_first_attempts_are_retried_with_doubling_gaps_and_the_same_key() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 5, "backoff_seconds": 0.3, "max_backoff_seconds": 10});
    let (status, job) = server.post("/v1/jobs", one_shot("flaky", &receiver.url("flaky/2/503/a"), retry)).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["action"]["retry"]["max_attempts"], 5);

    let run = final_run(&server, "flaky").await;
    let hits = receiver.matching("flaky/2/503/a");
    assert_eq!(hits.len(), 3, "two 503s, then a 200");
    let gaps = gaps(&hits);
    // Retry n waits min(0.3·2^(n−1), 10) × [0.8, 1.2].
    assert_between(gaps[0], Duration::from_secs_f64(0.24), Duration::from_secs_f64(0.36) + SLACK);
    assert_between(gaps[1], Duration::from_secs_f64(0.48), Duration::from_secs_f64(0.72) + SLACK);
    let keys: Vec<String> = hits.iter().map(|hit| hit.header("idempotency-key").unwrap()).collect();
    assert!(keys.iter().all(|key| *key == keys[0]), "a retry keeps the idempotency key: {keys:?}");
    assert_eq!(run["idempotency_key"], keys[0].as_str());
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempts"], 3);
    assert_eq!(run["http_status"], 200);
    assert_eq!(run["error"], Value::Null);
    assert_eq!(run["response_excerpt"], "200 for flaky/2/503/a");
    assert!(run["started_at"].is_string() && run["finished_at"].is_string() && run["duration_ms"].is_u64());
    server.stop().await;
}

#[tokio::test]
async fn retries_end_at_max_attempts_with_the_last_answer_recorded() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 3, "backoff_seconds": 0.1});
    server.post("/v1/jobs", one_shot("broken", &receiver.url("status/500/b"), retry)).await;
    let run = final_run(&server, "broken").await;
    assert_eq!(receiver.matching("status/500/b").len(), 3);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempts"], 3);
    assert_eq!(run["http_status"], 500);
    assert_eq!(run["error"], "HTTP 500");
    server.stop().await;
}

#[tokio::test]
async fn a_4xx_other_than_408_and_429_is_never_retried_but_408_is() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 4, "backoff_seconds": 0.1});
    server.post("/v1/jobs", one_shot("gone", &receiver.url("status/404/c"), retry.clone())).await;
    server.post("/v1/jobs", one_shot("slowpoke", &receiver.url("flaky/1/408/c"), retry)).await;
    let run = final_run(&server, "gone").await;
    // The delivery has ended, so no later attempt can come.
    assert_eq!(receiver.matching("status/404/c").len(), 1);
    assert_eq!(
        (run["status"].as_str(), run["attempts"].as_u64(), run["http_status"].as_u64()),
        (Some("failed"), Some(1), Some(404))
    );
    let run = final_run(&server, "slowpoke").await;
    assert_eq!((run["status"].as_str(), run["attempts"].as_u64()), (Some("succeeded"), Some(2)));
    server.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_backoff_in_seconds_or_as_a_date() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 3, "backoff_seconds": 0.1});
    server.post("/v1/jobs", one_shot("polite", &receiver.url("retry-after/1/1/d"), retry.clone())).await;
    server.post("/v1/jobs", one_shot("dated", &receiver.url("retry-after/1/date+2/d"), retry)).await;

    let run = final_run(&server, "polite").await;
    assert_eq!((run["status"].as_str(), run["attempts"].as_u64()), (Some("succeeded"), Some(2)));
    let hits = receiver.matching("retry-after/1/1/d");
    assert_between(gaps(&hits)[0], Duration::from_secs(1), Duration::from_secs(1) + SLACK);

    let run = final_run(&server, "dated").await;
    assert_eq!((run["status"].as_str(), run["attempts"].as_u64()), (Some("succeeded"), Some(2)));
    // An HTTP date has whole seconds: "2 s from now" truncated is between 1 and 2 s away.
    let hits = receiver.matching("retry-after/1/date+2/d");
    assert_between(gaps(&hits)[0], Duration::from_secs(1), Duration::from_secs(2) + SLACK);
    server.stop().await;
}

#[tokio::test]
async fn a_call_that_hangs_past_its_timeout_is_retried_then_recorded_as_a_timeout() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "hang", "action": {"url": receiver.url("slow/5000/e"), "timeout_seconds": 0.5,
                     "retry": {"max_attempts": 2, "backoff_seconds": 0.1}}});
    server.post("/v1/jobs", job).await;
    let run = final_run(&server, "hang").await;
    let hits = receiver.matching("slow/5000/e");
    assert_eq!(hits.len(), 2);
    // The first attempt is abandoned after 0.5 s, then the retry waits 0.1 × [0.8, 1.2] s.
    assert_between(gaps(&hits)[0], Duration::from_secs_f64(0.58), Duration::from_secs_f64(0.62) + SLACK);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempts"], 2);
    assert_eq!(run["http_status"], Value::Null);
    assert!(run["error"].as_str().unwrap().starts_with("timeout"), "{run:#}");
    let duration = run["duration_ms"].as_u64().unwrap();
    assert!((500..2500).contains(&duration), "the last attempt's duration: {duration} ms");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_call_shows_running_while_in_flight_and_its_outcome_after() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(harness::sqlite_config(&dir.path().join("apsched.db"))).await;
    server.post("/v1/jobs", json!({"id": "slow", "action": {"url": receiver.url("slow/3000/s")}})).await;
    // A call longer than a moment is `running` in the ledger while the receiver holds it (3 s).
    let runs = server.wait_runs("slow", |runs| runs.first().is_some_and(|run| run["status"] == "running")).await;
    assert_eq!(runs[0]["attempts"], 1);
    assert!(runs[0]["started_at"].is_string(), "{:#}", runs[0]);
    assert!(receiver.matching("slow/3000/s").len() <= 1);
    let run = final_run(&server, "slow").await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["http_status"], 200);
    assert!(run["duration_ms"].as_u64().unwrap() >= 3000, "{run:#}");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_retried() {
    let closer = Closer::start(2).await;
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 4, "backoff_seconds": 0.1});
    server.post("/v1/jobs", one_shot("hangup", &closer.url, retry)).await;
    let run = final_run(&server, "hangup").await;
    assert_eq!(closer.hits().len(), 3, "two connections closed unanswered, then a 200");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempts"], 3);
    assert_eq!(run["http_status"], 200);

    let no_retry = Closer::start(1).await;
    server.post("/v1/jobs", json!({"id": "once", "action": {"url": no_retry.url}})).await;
    let run = final_run(&server, "once").await;
    assert_eq!(no_retry.hits().len(), 1, "without `retry`, one attempt");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["http_status"], Value::Null);
    server.stop().await;
}

/// One worker. A job waiting 3 s for its retry (Retry-After) keeps its run `running`, so its next fires are skipped
/// (max_instances 1) on their own schedule; and another job is delivered meanwhile on the only worker.
#[tokio::test]
async fn a_waiting_retry_holds_no_worker_and_counts_against_max_instances() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.executors = BTreeMap::from([("default".to_string(), ExecutorConfig { max_workers: 1 })]);
    let server = Server::start(config).await;
    let waiter = json!({"id": "waiter", "max_instances": 1, "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": receiver.url("retry-after/1/3/w"), "retry": {"max_attempts": 2, "backoff_seconds": 0.1}}});
    server.post("/v1/jobs", waiter).await;
    let first = receiver.wait_for("retry-after/1/3/w", 1).await;

    server.post("/v1/jobs", json!({"id": "meanwhile", "action": {"url": receiver.url("ok/m")}})).await;
    let other = receiver.wait_for("ok/m", 1).await;
    let (_, scheduler) = server.get("/v1/scheduler").await;
    let pool = &scheduler["executors"]["default"];
    let retried = receiver.wait_for("retry-after/1/3/w", 2).await;
    assert!(other[0].arrived < retried[1].arrived, "the other job waited for the retry");
    assert!(other[0].arrived - first[0].arrived < Duration::from_secs(2), "delivered while the retry waited");
    assert_eq!(
        (pool["max_workers"].as_u64(), pool["retrying"].as_u64(), pool["running"].as_u64()),
        (Some(1), Some(1), Some(0))
    );

    let runs = server.wait_runs("waiter", |runs| runs.iter().any(|run| run["status"] == "succeeded")).await;
    let first_key = first[0].header("idempotency-key").unwrap();
    let first_run = runs.iter().find(|run| run["idempotency_key"] == first_key.as_str()).unwrap();
    assert_eq!((first_run["status"].as_str(), first_run["attempts"].as_u64()), (Some("succeeded"), Some(2)));
    let scheduled =
        |run: &Value| chrono::DateTime::parse_from_rfc3339(run["scheduled_time"].as_str().unwrap()).unwrap();
    let skipped: Vec<i64> = runs
        .iter()
        .filter(|run| run["status"] == "skipped")
        .map(|run| (scheduled(run) - scheduled(first_run)).num_milliseconds())
        .collect();
    // Fires 1 s and 2 s after the first came on time (the loop never waits for a delivery) and were skipped.
    assert!(skipped.contains(&1000) && skipped.contains(&2000), "skipped fires at {skipped:?} ms after the first");
    server.stop().await;
}

#[tokio::test]
async fn retry_fields_are_validated_with_the_field_named() {
    let server = Server::start(memory_config()).await;
    let url = "http://127.0.0.1:9/x";
    for (retry, field) in [
        (json!({"max_attempts": 0}), "action.retry.max_attempts"),
        (json!({"max_attempts": 101}), "action.retry.max_attempts"),
        (json!({"max_attempts": 3, "backoff_seconds": -1}), "action.retry.backoff_seconds"),
        (
            json!({"max_attempts": 3, "backoff_seconds": 5, "max_backoff_seconds": 2}),
            "action.retry.max_backoff_seconds",
        ),
        (json!({"max_attempts": 3, "jitter": true}), "action.retry.jitter"),
        (json!({"backoff_seconds": 1}), "action.retry.max_attempts"),
    ] {
        let (status, problem) = server.post("/v1/jobs", json!({"action": {"url": url, "retry": retry}})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{retry}: {problem}");
        assert_eq!(problem["field"], field, "{retry}: {problem}");
    }
    server.stop().await;
}

#[tokio::test]
async fn run_history_pages_newest_first_and_filters_by_status() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "mixed", "trigger": {"type": "interval", "seconds": 1}, "action": {"url": receiver.url("flaky/2/503/h")}});
    server.post("/v1/jobs", job).await;
    server.wait_runs("mixed", |runs| harness::count_status(runs, "succeeded") >= 2).await;
    server.post("/v1/jobs/mixed/pause", json!(null)).await;
    let all = server
        .wait_runs("mixed", |runs| runs.iter().all(|run| run["status"] != "running" && run["status"] != "pending"))
        .await;

    let (status, failed) = server.get("/v1/jobs/mixed/runs?status=failed").await;
    assert_eq!(status, StatusCode::OK);
    let failed = failed["runs"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    for run in failed {
        assert_eq!(run["job_id"], "mixed");
        assert_eq!(
            (run["status"].as_str(), run["attempts"].as_u64(), run["http_status"].as_u64()),
            (Some("failed"), Some(1), Some(503))
        );
        assert_eq!(run["error"], "HTTP 503");
        assert_eq!(run["response_excerpt"], "503 for flaky/2/503/h");
        for field in ["scheduled_time", "started_at", "finished_at", "idempotency_key"] {
            assert!(run[field].is_string(), "{field} in {run:#}");
        }
        assert!(run["duration_ms"].is_u64());
    }

    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (status, page) = server.get(&format!("/v1/jobs/mixed/runs?limit=1{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        walked.extend(page["runs"].as_array().unwrap().iter().map(|run| run["idempotency_key"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(walked.len() <= all.len(), "pages repeat runs");
    }
    let expected: Vec<Value> = all.iter().map(|run| run["idempotency_key"].clone()).collect();
    assert_eq!(walked, expected, "one run per page, newest first, each once");
    server.stop().await;
}
