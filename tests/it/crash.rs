//! The real binary against crashes and signals: `kill -9` under a steady load of fires, then a restart, must lose
//! no scheduled fire and repeat a fire only with its idempotency key; SIGTERM stops within a bounded time; a second
//! SIGTERM stops at once and the ledger still holds what was unfinished.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::{PATIENCE, Receiver, count_status};

/// How long the server stays dead: several fire intervals, so the restart faces a backlog.
const DOWNTIME: Duration = Duration::from_secs(3);

struct Binary {
    config: PathBuf,
    base: String,
    client: reqwest::Client,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("apsched.toml");
    let config = format!(
        "[jobstores.default]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n",
        dir.join("ledger.db").display(),
        free_port()
    );
    std::fs::write(&path, config).unwrap();
    path
}

impl Binary {
    async fn start(config: &Path) -> Binary {
        let text = std::fs::read_to_string(config).unwrap();
        let listen = text.split("listen = \"").nth(1).unwrap().split('"').next().unwrap().to_string();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(config.with_file_name("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_apsched"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let binary = Binary {
            config: config.to_path_buf(),
            base: format!("http://{listen}"),
            client: reqwest::Client::new(),
            child,
        };
        let deadline = Instant::now() + PATIENCE;
        while binary.client.get(format!("{}/healthz", binary.base)).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start: {}", binary.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        binary
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_file_name("server.log")).unwrap_or_default()
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn runs(&self, job_id: &str) -> Vec<Value> {
        let (status, body) = self.send("GET", &format!("/v1/jobs/{job_id}/runs?limit=1000"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["runs"].as_array().cloned().unwrap()
    }

    async fn wait_runs(&self, job_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let runs = self.runs(job_id).await;
            if done(&runs) {
                return runs;
            }
            assert!(Instant::now() < deadline, "runs of {job_id} never got there: {runs:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([format!("-{name}"), self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit; `None` if it is still running after `limit`.
    async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn time_of(run: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(run["scheduled_time"].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

fn unfinished(runs: &[Value]) -> bool {
    runs.iter().any(|run| matches!(run["status"].as_str(), Some("pending" | "running")))
}

/// The ledger rows of a job cover its one-second grid from the first to the last without a gap.
fn assert_contiguous(job: &str, runs: &[Value]) {
    let times: BTreeSet<DateTime<Utc>> = runs.iter().map(time_of).collect();
    assert_eq!(times.len(), runs.len(), "{job}: one row per scheduled fire");
    let times: Vec<_> = times.into_iter().collect();
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::TimeDelta::seconds(1), "{job}: a fire is missing from the ledger");
    }
}

#[tokio::test]
async fn kill_9_under_load_loses_no_fire_and_repeats_only_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let receiver = Receiver::start().await;
    let mut server = Binary::start(&config).await;
    // `steady` always runs however late (grace 3600); `strict` misses what is over a second late. Deliveries of
    // `steady` take 400 ms, so a kill right after one arrives catches it in flight.
    let jobs = [("steady", receiver.url("slow/400/steady"), 3600), ("strict", receiver.url("ok/strict"), 1)];
    for (id, url, grace) in &jobs {
        let job = json!({"id": id, "trigger": {"type": "interval", "seconds": 1}, "action": {"url": url},
            "coalesce": false, "max_instances": 5, "misfire_grace_time": grace});
        let (status, body) = server.send("POST", "/v1/jobs", Some(job)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let before = receiver.wait_for("slow/400/steady", 3).await.len();
    let in_flight = receiver.wait_for("slow/400/steady", before + 1).await.last().cloned().unwrap();
    server.child.kill().unwrap(); // SIGKILL: no shutdown code runs.
    server.child.wait().unwrap();
    let killed_key = in_flight.header("idempotency-key").unwrap();
    let killed_at = Utc::now();

    tokio::time::sleep(DOWNTIME).await;
    let restarted_at = Utc::now();
    let server = Binary::start(&config).await;
    // Let it fire a few times after the restart, then stop the schedule and let deliveries finish.
    for (id, _, _) in &jobs {
        server
            .wait_runs(id, |runs| runs.iter().any(|run| time_of(run) > restarted_at + chrono::TimeDelta::seconds(2)))
            .await;
    }
    for (id, _, _) in &jobs {
        assert_eq!(server.send("POST", &format!("/v1/jobs/{id}/pause"), None).await.0, StatusCode::OK);
    }
    let steady = server.wait_runs("steady", |runs| !unfinished(runs)).await;
    let strict = server.wait_runs("strict", |runs| !unfinished(runs)).await;

    // Every fire of the window — before the kill, during the downtime, after the restart — is in the ledger.
    assert_contiguous("steady", &steady);
    assert_contiguous("strict", &strict);
    let first_down = steady.iter().map(time_of).filter(|t| *t > killed_at && *t < restarted_at).count();
    assert!(first_down >= 2, "the downtime spans fires: {first_down}");

    // steady: all delivered, including the backlog and the fire killed in flight (again, with the same key).
    assert_eq!(count_status(&steady, "succeeded"), steady.len(), "{steady:#?}");
    let received = receiver.matching("slow/400/steady");
    let mut keys_by_time: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &received {
        let time = request.header("apsched-scheduled-time").unwrap();
        keys_by_time.entry(time).or_default().insert(request.header("idempotency-key").unwrap());
    }
    assert!(keys_by_time.values().all(|keys| keys.len() == 1), "a repeat must carry the same key: {keys_by_time:?}");
    let received_keys: BTreeSet<String> = received.iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    let ledger_keys: BTreeSet<String> = steady.iter().map(|r| r["idempotency_key"].as_str().unwrap().into()).collect();
    assert_eq!(received_keys, ledger_keys, "the receiver got exactly the ledger's fires");
    let repeats = received.iter().filter(|r| r.header("idempotency-key").as_deref() == Some(killed_key.as_str()));
    assert!(repeats.count() >= 2, "the fire killed in flight is delivered again");

    // strict: each fire delivered or recorded as missed by its grace time; only delivered ones reached the receiver.
    let missed = count_status(&strict, "missed");
    assert!(missed >= 1, "the downtime is longer than strict's grace: {strict:#?}");
    assert_eq!(missed + count_status(&strict, "succeeded"), strict.len(), "{strict:#?}");
    let strict_received: BTreeSet<String> =
        receiver.matching("ok/strict").iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    for run in &strict {
        let key = run["idempotency_key"].as_str().unwrap();
        assert_eq!(strict_received.contains(key), run["status"] == "succeeded", "{run}");
    }

    // SIGTERM with nothing in flight: a prompt, clean exit.
    let mut server = server;
    server.signal("TERM");
    let status = server.exited_within(PATIENCE).await.expect("SIGTERM stops the server");
    assert!(status.success(), "{status:?}: {}", server.log());
}

#[tokio::test]
async fn a_second_sigterm_stops_at_once_and_the_unfinished_fire_is_delivered_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let receiver = Receiver::start().await;
    let mut server = Binary::start(&config).await;
    // A delivery far longer than the test waits: the first SIGTERM waits for it (up to the shutdown grace).
    let job = json!({"id": "long", "action": {"url": receiver.url("slow/60000/long")}});
    assert_eq!(server.send("POST", "/v1/jobs", Some(job)).await.0, StatusCode::CREATED);
    let first = receiver.wait_for("slow/60000/long", 1).await[0].header("idempotency-key").unwrap();
    assert!(server.log().contains("no API tokens are configured"), "a token-less start is announced");

    server.signal("TERM");
    assert!(server.exited_within(Duration::from_millis(500)).await.is_none(), "the first SIGTERM waits for deliveries");
    let second = Instant::now();
    server.signal("TERM");
    let status = server.exited_within(PATIENCE).await.expect("the second SIGTERM stops the server");
    assert!(second.elapsed() < Duration::from_secs(5), "stopped at once, not after the grace: {:?}", second.elapsed());
    assert!(!status.success());

    // The ledger still says the fire is unfinished, so the next start delivers it again with the same key.
    let server = Binary::start(&config).await;
    let repeat = receiver.wait_for("slow/60000/long", 2).await[1].header("idempotency-key").unwrap();
    assert_eq!(repeat, first);
    let runs = server.runs("long").await;
    assert_eq!(runs.len(), 1, "one fire, one ledger row: {runs:#?}");
    assert_eq!(runs[0]["idempotency_key"], first.as_str());
}

#[test]
fn without_tokens_the_binary_refuses_a_non_loopback_address() {
    let output = Command::new(env!("CARGO_BIN_EXE_apsched"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("APSCHED_JOBSTORES__DEFAULT__TYPE", "memory")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure-listen-anywhere"), "{stderr}");
}
