//! Health notifications end to end: a real receiver fails on command, another takes the notifications. A job's
//! failure streak sends one signed `job.failure` at its threshold and one `job.auto_paused`, its recovery one
//! `job.recovery`, a job without success turns stale once, a fire past its grace is `job.missed`; a notification
//! pending when the process is killed is delivered once after the restart; three replicas send each once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::postgres::{ScratchSchema, postgres_config};
use crate::harness::{PATIENCE, Received, Receiver, Server, memory_config, sqlite_config};
use crate::signatures::verify;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The notifications of `job_id` in the ledger, once `done` holds for them.
async fn wait_notifications(base: &str, job_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = client.get(format!("{base}/v1/jobs/{job_id}/notifications")).send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        let notifications = body["notifications"].as_array().cloned().unwrap_or_default();
        if done(&notifications) {
            return notifications;
        }
        assert!(Instant::now() < deadline, "notifications of {job_id} never settled: {body:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivered(notifications: &[Value]) -> bool {
    !notifications.is_empty() && notifications.iter().all(|n| n["state"] == "delivered")
}

fn types(hits: &[Received]) -> Vec<String> {
    hits.iter().map(|hit| body(hit)["type"].as_str().unwrap().to_string()).collect()
}

fn body(hit: &Received) -> Value {
    serde_json::from_slice(&hit.body).unwrap()
}

async fn streak_auto_pause_recovery_stale_and_missed(server: &Server) {
    let (jobs, alerts) = (Receiver::start().await, Receiver::start().await);
    let notify = json!({"url": alerts.url("ok/fragile"), "signing_secret": SECRET, "failure_threshold": 2});
    let job = json!({"id": "fragile", "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": jobs.url("status/500/fragile"), "retry": {"max_attempts": 1}},
        "auto_pause_after_failures": 3, "notify": notify, "labels": {"team": "ops"}});
    let (status, added) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");

    // Three failures: one failure notification at the second, auto_paused at the third; each signed.
    let hits = alerts.wait_for("ok/fragile", 2).await;
    let ledger = wait_notifications(&server.base, "fragile", |n| n.len() == 2 && delivered(n)).await;
    let hits_now = alerts.matching("ok/fragile");
    assert_eq!(types(&hits_now), ["job.failure", "job.auto_paused"], "each once");
    for hit in &hits {
        verify(SECRET, hit).unwrap();
    }
    let failure = body(&hits[0]);
    assert_eq!(failure["consecutive_failures"], 2);
    assert_eq!(failure["job"], json!({"id": "fragile", "name": null, "labels": {"team": "ops"}}));
    assert_eq!(failure["run"]["status"], "failed");
    assert_eq!(failure["run"]["http_status"], 500);
    assert_eq!(body(&hits[1])["paused_reason"], "auto: 3 consecutive failures");
    // The ledger, newest first, names what was sent by the id it went with.
    assert_eq!(ledger[0]["type"], "auto_paused");
    assert_eq!(ledger[1]["id"], hits[0].header("webhook-id").unwrap().as_str());
    assert!(ledger.iter().all(|n| n["attempts"] == 1), "{ledger:#?}");

    // Mended and resumed: its first success sends one recovery.
    let mended = json!({"action": {"url": jobs.url("ok/fragile"), "retry": {"max_attempts": 1}}});
    assert_eq!(server.send("PATCH", "/v1/jobs/fragile", Some(mended)).await.0, StatusCode::OK);
    assert_eq!(server.post("/v1/jobs/fragile/resume", json!(null)).await.0, StatusCode::OK);
    let hits = alerts.wait_for("ok/fragile", 3).await;
    assert_eq!(body(&hits[2])["type"], "job.recovery");
    verify(SECRET, &hits[2]).unwrap();
    // More successes say nothing more.
    jobs.wait_for("ok/fragile", 3).await;
    wait_notifications(&server.base, "fragile", |n| n.len() == 3 && delivered(n)).await;
    assert_eq!(alerts.matching("ok/fragile").len(), 3);

    // A job that never succeeds within its window turns stale and says so once; its failures are not asked for.
    let quiet = json!({"id": "quiet", "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": jobs.url("status/503/quiet"), "retry": {"max_attempts": 1}}, "stale_after_seconds": 2,
        "notify": {"url": alerts.url("ok/quiet"), "on": ["stale"]}});
    assert_eq!(server.post("/v1/jobs", quiet).await.0, StatusCode::CREATED);
    let hits = alerts.wait_for("ok/quiet", 1).await;
    assert_eq!(types(&hits), ["job.stale"]);
    assert!(hits[0].header("webhook-signature").is_none(), "no secret, no signature");
    // Later failures of the stale job neither mark it again nor notify.
    server.wait_runs("quiet", |runs| runs.len() >= 4).await;
    let ledger = wait_notifications(&server.base, "quiet", delivered).await;
    assert_eq!(ledger.len(), 1, "{ledger:#?}");

    // A fire far past its grace time is recorded missed, and notified.
    let past = (chrono::Utc::now() - chrono::TimeDelta::minutes(10)).to_rfc3339();
    let late = json!({"id": "late", "trigger": {"type": "date", "run_date": past}, "misfire_grace_time": 1,
        "action": {"url": jobs.url("ok/late")}, "notify": {"url": alerts.url("ok/late")}});
    assert_eq!(server.post("/v1/jobs", late).await.0, StatusCode::CREATED);
    let hits = alerts.wait_for("ok/late", 1).await;
    assert_eq!(types(&hits), ["job.missed"]);
    assert_eq!(body(&hits[0])["run"]["status"], "missed");
    // The job is gone (its only fire is spent); its notifications are still shown.
    assert_eq!(wait_notifications(&server.base, "late", delivered).await.len(), 1);
    assert_eq!(server.get("/v1/jobs/never-was/notifications").await.0, StatusCode::NOT_FOUND);
    let (status, problem) = server.get("/v1/jobs/fragile/notifications?limit=0").await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
}

#[tokio::test]
async fn memory_store_notifies_a_streak_its_auto_pause_recovery_staleness_and_a_missed_fire() {
    let server = Server::start(memory_config()).await;
    streak_auto_pause_recovery_stale_and_missed(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn sqlite_store_notifies_a_streak_its_auto_pause_recovery_staleness_and_a_missed_fire() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(sqlite_config(&dir.path().join("apsched.db"))).await;
    streak_auto_pause_recovery_stale_and_missed(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn the_configured_default_notifies_jobs_without_their_own() {
    let (jobs, alerts) = (Receiver::start().await, Receiver::start().await);
    let mut config = memory_config();
    config.notify = Some(serde_json::from_value(json!({"url": alerts.url("ok/default"), "on": ["failure"]})).unwrap());
    let server = Server::start(config).await;
    let job = json!({"id": "plain", "trigger": {"type": "interval", "seconds": 1},
        "action": {"url": jobs.url("status/500/plain"), "retry": {"max_attempts": 1}}});
    assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    let hits = alerts.wait_for("ok/default", 1).await;
    assert_eq!(types(&hits), ["job.failure"]);
    // Once per streak: later failures add nothing.
    server.wait_runs("plain", |runs| runs.len() >= 3).await;
    assert_eq!(wait_notifications(&server.base, "plain", delivered).await.len(), 1);
    assert_eq!(alerts.matching("ok/default").len(), 1);
    // The command line shows them as a table, and as JSON.
    let shown = crate::cli::apsched(&server.base, &["jobs", "notifications", "plain"], &[], None).await;
    let lines: Vec<&str> = shown.ok().lines().collect();
    assert!(lines[0].starts_with("CREATED") && lines[0].contains(" TYPE "), "{shown:#?}");
    assert!(lines[1].contains(" failure ") && lines[1].contains(" delivered "), "{shown:#?}");
    let json = crate::cli::apsched(&server.base, &["jobs", "notifications", "plain", "--json"], &[], None).await;
    let listed: Value = serde_json::from_str(json.ok()).unwrap();
    assert_eq!(listed[0]["type"], "failure");
    server.stop().await;
}

/// The binary on a SQLite file in a directory of its own, listening on a free port, logging beside the file.
struct Binary {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    base: String,
    child: Child,
}

impl Binary {
    async fn start() -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("apsched.toml");
        let ledger = dir.path().join("ledger.db");
        let store = format!("[jobstores.default]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n", ledger.display());
        std::fs::write(&config, format!("{store}[api]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
        let child = Binary::spawn(&config);
        let binary = Binary { _dir: dir, config, base: format!("http://127.0.0.1:{port}"), child };
        binary.wait_listening().await;
        binary
    }

    fn spawn(config: &Path) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_file_name("server.log"));
        Command::new(env!("CARGO_BIN_EXE_apsched"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log.unwrap())
            .spawn()
            .unwrap()
    }

    async fn wait_listening(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while client.get(format!("{}/healthz", self.base)).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then a new process on the same file and port.
    async fn kill_9_and_restart(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
        self.child = Binary::spawn(&self.config);
        self.wait_listening().await;
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_notification_pending_at_a_kill_9_is_delivered_once_after_the_restart() {
    let (jobs, alerts) = (Receiver::start().await, Receiver::start().await);
    let mut binary = Binary::start().await;
    let base = binary.base.clone();
    let client = reqwest::Client::new();

    // The alert target is down (503): the failure notification stays pending, retried with a backoff.
    let job = json!({"id": "crashy", "trigger": {"type": "interval", "seconds": 1}, "auto_pause_after_failures": 1,
        "action": {"url": jobs.url("status/500/crashy"), "retry": {"max_attempts": 1}},
        "notify": {"url": alerts.url("status/503/crashy"), "on": ["failure"], "signing_secret": SECRET}});
    let response = client.post(format!("{base}/v1/jobs")).json(&job).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let pending = wait_notifications(&base, "crashy", |n| n.len() == 1 && !n[0]["last_error"].is_null()).await;
    assert_eq!(pending[0]["state"], "pending");
    // Restarted, with the alert target mended: the same notification (same id) arrives once.
    binary.kill_9_and_restart().await;
    let mended = json!({"notify": {"url": alerts.url("ok/crashy"), "on": ["failure"], "signing_secret": "********"}});
    let response = client.patch(format!("{base}/v1/jobs/crashy")).json(&mended).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let hits = alerts.wait_for("ok/crashy", 1).await;
    let ledger = wait_notifications(&base, "crashy", delivered).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(alerts.matching("ok/crashy").len(), 1);
    assert_eq!(hits[0].header("webhook-id").unwrap().as_str(), pending[0]["id"].as_str().unwrap());
    verify(SECRET, &hits[0]).unwrap();
}

#[tokio::test]
async fn a_notification_in_flight_at_a_kill_9_goes_again_at_the_restart_not_after_its_lease() {
    let (jobs, alerts) = (Receiver::start().await, Receiver::start().await);
    let mut binary = Binary::start().await;
    let base = binary.base.clone();
    let client = reqwest::Client::new();
    // The alert target takes a minute to answer: the process is killed while the notification is leased to it.
    let job = json!({"id": "hung", "trigger": {"type": "interval", "seconds": 1}, "auto_pause_after_failures": 1,
        "action": {"url": jobs.url("status/500/hung"), "retry": {"max_attempts": 1}},
        "notify": {"url": alerts.url("slow/60000/hung"), "on": ["failure"]}});
    let response = client.post(format!("{base}/v1/jobs")).json(&job).send().await.unwrap();
    assert_eq!(response.status(), 201);
    alerts.wait_for("slow/60000/hung", 1).await;
    // Its lease (60 s) is a dead process's: the restarted one sends it at once, to the mended target.
    binary.kill_9_and_restart().await;
    let mended = json!({"notify": {"url": alerts.url("ok/hung"), "on": ["failure"]}});
    let response = client.patch(format!("{base}/v1/jobs/hung")).json(&mended).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let hits = alerts.wait_for("ok/hung", 1).await;
    assert_eq!(types(&hits), ["job.failure"]);
    let ledger = wait_notifications(&base, "hung", delivered).await;
    assert_eq!(ledger.len(), 1);
    // The killed attempt, and after the restart one or two more (an attempt may start before the PATCH, to the
    // hung target, and time out); all within the 20 s wait above, where the lease alone would have held 60 s.
    assert!(ledger[0]["attempts"].as_u64().unwrap() >= 2, "{ledger:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_database_send_each_notification_once() {
    let schema = ScratchSchema::create().await;
    let (jobs, alerts) = (Receiver::start().await, Receiver::start().await);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Server::start(postgres_config(schema.url(), 3)).await);
    }
    for index in 0..10 {
        let id = format!("failing-{index}");
        let job = json!({"id": id, "trigger": {"type": "interval", "seconds": 1}, "auto_pause_after_failures": 2,
            "action": {"url": jobs.url(&format!("status/500/{id}")), "retry": {"max_attempts": 1}},
            "notify": {"url": alerts.url(&format!("ok/{id}")), "on": ["failure", "auto_paused"]}});
        assert_eq!(replicas[index % 3].post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    for index in 0..10 {
        let id = format!("failing-{index}");
        let ledger = wait_notifications(&replicas[0].base, &id, |n| n.len() == 2 && delivered(n)).await;
        let mut sent = types(&alerts.matching(&format!("ok/{id}")));
        sent.sort();
        assert_eq!(sent, ["job.auto_paused", "job.failure"], "{id}: each once");
        assert!(ledger.iter().all(|n| n["attempts"] == 1), "{id}: {ledger:#?}");
    }
    for replica in replicas {
        replica.stop().await;
    }
}
