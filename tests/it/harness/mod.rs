//! What the integration tests share: the real server on 127.0.0.1:0 (`Server`), the webhook receiver
//! (`receiver`), scratch PostgreSQL schemas and a cuttable proxy (`postgres`), and a way to run a test that must
//! change process-wide state in a process of its own (`in_own_process`).

pub mod postgres;
pub mod receiver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apsched::scheduler::clock::Clock;
use apsched::settings::{Config, JobStoreConfig, StoreType};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use receiver::{Closer, Received, Receiver};

/// Upper bound for anything a test waits for: generous, since CI machines are slow and noisy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Tests bound by real time across several servers (lease takeovers, a database outage, replicas sharing work)
/// take turns: two of them at once on a small machine starve each other's lease upkeep and fail for no fault of
/// the code. Hold the guard for the whole test.
pub async fn timing_bound_turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
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

/// `APSCHED_TEST_LOG=apsched=debug cargo test … -- --nocapture` shows the in-process servers' logs, captured per
/// test like its output.
fn log_if_asked() {
    if let Ok(filter) = std::env::var("APSCHED_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

impl Server {
    pub async fn start(config: Config) -> Server {
        Server::start_with_clock(config, Arc::new(ShiftedClock(chrono::TimeDelta::zero()))).await
    }

    pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Server {
        log_if_asked();
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

    /// POST `body` as JSON; `Value::Null` sends no body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", path, (!body.is_null()).then_some(body)).await
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
