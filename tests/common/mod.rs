//! Test harness: the real server on 127.0.0.1:0 and a real webhook receiver that records what it gets.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apsched::config::{Config, JobStoreConfig, StoreType};
use apsched::scheduler::clock::Clock;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for: generous, since CI machines are slow and noisy.
pub const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub method: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub arrived: Instant,
    /// When the receiver finished answering (after any requested delay).
    pub answered: Arc<Mutex<Option<Instant>>>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

#[derive(Clone, Default)]
struct Inbox {
    requests: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

/// A webhook receiver. Paths: `/ok/...` → 200; `/slow/<ms>/...` → 200 after ms; `/status/<code>/...` → code.
pub struct Receiver {
    pub base: String,
    inbox: Inbox,
}

async fn receive(
    State(inbox): State<Inbox>,
    Path(path): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let answered = Arc::new(Mutex::new(None));
    {
        let mut requests = inbox.requests.lock().unwrap();
        requests.push(Received {
            path: path.clone(),
            method: method.to_string(),
            headers,
            body,
            arrived: Instant::now(),
            answered: answered.clone(),
        });
    }
    inbox.arrived.notify_waiters();
    let mut parts = path.split('/');
    let status = match (parts.next(), parts.next()) {
        (Some("slow"), Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
            StatusCode::OK
        }
        (Some("status"), Some(code)) => {
            StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        _ => StatusCode::OK,
    };
    *answered.lock().unwrap() = Some(Instant::now());
    (status, format!("received {path}"))
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inbox = Inbox::default();
        let app = axum::Router::new().route("/{*path}", any(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, inbox }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn all(&self) -> Vec<Received> {
        self.inbox.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn matching(&self, prefix: &str) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.path.starts_with(prefix.trim_start_matches('/'))).collect()
    }

    /// Wait until at least `count` requests under `prefix` arrived; panics after PATIENCE.
    pub async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let notified = self.inbox.arrived.notified();
            let got = self.matching(prefix);
            if got.len() >= count {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "waited {PATIENCE:?} for {count} requests to {prefix}, got {}", got.len());
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

/// A clock running at real speed, shifted by an offset: a restarted server can "wake up" hours later.
pub struct ShiftedClock(pub chrono::TimeDelta);

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        chrono::SubsecRound::trunc_subsecs(Utc::now() + self.0, 6)
    }
}

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn memory_config() -> Config {
    Config {
        jobstores: BTreeMap::from([(
            "default".to_string(),
            JobStoreConfig { store_type: Some(StoreType::Memory), url: None, pool_size: None },
        )]),
        ..Config::default()
    }
}

pub fn sqlite_config(path: &std::path::Path) -> Config {
    Config {
        jobstores: BTreeMap::from([(
            "default".to_string(),
            JobStoreConfig {
                store_type: Some(StoreType::Sqlite),
                url: Some(format!("sqlite://{}", path.display())),
                pool_size: None,
            },
        )]),
        ..Config::default()
    }
}

impl Server {
    pub async fn start(config: Config) -> Server {
        Server::start_with_clock(config, Arc::new(ShiftedClock(chrono::TimeDelta::zero()))).await
    }

    pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Server {
        let config = config.validated().expect("test configuration is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(apsched::run_with_clock(config, listener, shutdown.clone(), clock));
        let client = reqwest::Client::new();
        // Ready once it answers.
        let deadline = Instant::now() + PATIENCE;
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server { base, client, shutdown, handle }
    }

    /// Stop as SIGTERM would, and wait for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// Wait for a server stopped by the API.
    pub async fn stopped(self) {
        tokio::time::timeout(PATIENCE, self.handle).await.expect("server stops").unwrap().unwrap();
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Send raw bytes; returns status, content type and body.
    pub async fn send_raw(&self, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let text = response.text().await.unwrap();
        (status, content_type, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send("GET", path, None).await
    }

    /// The job's runs, newest first.
    pub async fn runs(&self, job_id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/jobs/{job_id}/runs?limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until the job's runs satisfy `done`.
    pub async fn wait_runs(&self, job_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let runs = self.runs(job_id).await;
            if done(&runs) {
                return runs;
            }
            assert!(Instant::now() < deadline, "runs of {job_id} never reached the expected state: {runs:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn count_status(runs: &[Value], status: &str) -> usize {
    runs.iter().filter(|run| run["status"] == status).count()
}
