//! `/metrics` scraped and parsed: its counters match what the receiver saw.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::{Receiver, Server, count_status, memory_config};

/// Samples by `name{labels}` (labels as written), from Prometheus text; checks every sample has HELP and TYPE.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("apsched_"), "{name} lacks the prefix");
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
        assert!(typed.iter().any(|t| t == name || t == family), "{name} has no TYPE line");
        samples.insert(series.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {line:?}")));
    }
    samples
}

#[tokio::test]
async fn counters_match_what_the_receiver_saw() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let retry = json!({"max_attempts": 4, "backoff_seconds": 0.1});
    server
        .post("/v1/jobs", json!({"id": "recovers", "action": {"url": receiver.url("flaky/2/503/m"), "retry": retry}}))
        .await;
    server.post("/v1/jobs", json!({"id": "refused", "action": {"url": receiver.url("status/404/m")}})).await;
    let an_hour_ago = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let late = json!({"id": "late", "misfire_grace_time": 1, "next_run_time": an_hour_ago,
                      "trigger": {"type": "interval", "hours": 2}, "action": {"url": receiver.url("ok/late")}});
    server.post("/v1/jobs", late).await;
    server.wait_runs("recovers", |runs| count_status(runs, "succeeded") == 1).await;
    server.wait_runs("refused", |runs| count_status(runs, "failed") == 1).await;
    server.wait_runs("late", |runs| count_status(runs, "missed") == 1).await;

    let response = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let metrics = parse(&response.text().await.unwrap());
    let value = |series: &str| metrics.get(series).copied().unwrap_or_else(|| panic!("no {series} in {metrics:#?}"));

    let seen = receiver.all();
    let answered = |prefix: &str| seen.iter().filter(|hit| hit.path.starts_with(prefix)).count() as f64;
    assert_eq!(seen.len(), 4, "two 503s, a 200 and a 404; the late fire was not delivered");
    assert_eq!(value("apsched_delivery_attempts_total{status_class=\"5xx\"}"), 2.0);
    assert_eq!(value("apsched_delivery_attempts_total{status_class=\"4xx\"}"), answered("status/404"));
    assert_eq!(value("apsched_delivery_attempts_total{status_class=\"2xx\"}"), 1.0);
    assert_eq!(value("apsched_delivery_duration_seconds_count"), seen.len() as f64);
    assert_eq!(value("apsched_delivery_duration_seconds_bucket{le=\"+Inf\"}"), seen.len() as f64);
    assert_eq!(value("apsched_retries_total"), 2.0);
    assert_eq!(value("apsched_deliveries_total{outcome=\"succeeded\"}"), 1.0);
    assert_eq!(value("apsched_deliveries_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(value("apsched_fires_total{status=\"pending\"}"), 2.0);
    assert_eq!(value("apsched_fires_total{status=\"missed\"}"), 1.0);
    // Two runs started, each observed once however many attempts it took; and they started promptly.
    assert_eq!(value("apsched_delivery_lateness_seconds_count"), 2.0);
    assert_eq!(value("apsched_delivery_lateness_seconds_bucket{le=\"10\"}"), 2.0);
    // The one-shot jobs were removed after their fire; the late one stays (its next fire is in an hour).
    assert_eq!(value("apsched_jobs{jobstore=\"default\"}"), 1.0);
    assert_eq!(value("apsched_executor_max_workers{executor=\"default\"}"), 10.0);
    assert_eq!(value("apsched_executor_running{executor=\"default\"}"), 0.0);
    assert_eq!(value("apsched_executor_retrying{executor=\"default\"}"), 0.0);
    server.stop().await;
}
