//! Issue 6: API tokens and roles, the webhook target policy (at save and at delivery), secrets masked in every
//! response that carries a job, and the API and delivery limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apsched::api::auth::{ApiToken, Role};
use apsched::settings::Config;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, PATIENCE, Receiver, Server, memory_config};

const ADMIN: &str = "admin-token-0123456789";
const WRITER: &str = "write-token-0123456789";
const READER: &str = "read-token-01234567890";

fn with_tokens(mut config: Config) -> Config {
    config.api.tokens =
        vec![ApiToken::new(ADMIN, Role::Admin), ApiToken::new(WRITER, Role::Write), ApiToken::new(READER, Role::Read)];
    config
}

/// A request with an optional bearer token: status, the `WWW-Authenticate` header, content type and body.
async fn call(
    server: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, String, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.client.request(method, format!("{}{}", server.base, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let challenge = header("www-authenticate");
    let content_type = header("content-type").unwrap_or_default();
    let text = response.text().await.unwrap();
    (status, challenge, content_type, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn paused_job(id: &str, url: &str) -> Value {
    json!({"id": id, "trigger": {"type": "interval", "hours": 1}, "action": {"url": url}, "paused": true})
}

#[tokio::test]
async fn each_role_may_do_what_it_is_given_and_no_more() {
    let server = Server::start(with_tokens(memory_config())).await;
    let job = paused_job("j1", "http://127.0.0.1:9/hook");

    // No token, a wrong token, a token in the wrong scheme: 401 with a challenge, as problem+json.
    for token in [None, Some("admin-token-012345678"), Some("admin-token-01234567890")] {
        let (status, challenge, content_type, body) = call(&server, token, "GET", "/v1/jobs", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(challenge.unwrap().starts_with("Bearer"));
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["status"], 401);
    }
    let basic = server.client.get(format!("{}/v1/jobs", server.base)).basic_auth("a", Some(ADMIN)).send().await;
    assert_eq!(basic.unwrap().status(), 401);

    // read: GET and previews only.
    assert_eq!(call(&server, Some(READER), "GET", "/v1/jobs", None).await.0, StatusCode::OK);
    assert_eq!(call(&server, Some(READER), "GET", "/v1/scheduler", None).await.0, StatusCode::OK);
    let preview = json!({"trigger": {"type": "interval", "seconds": 5}, "count": 2});
    assert_eq!(call(&server, Some(READER), "POST", "/v1/triggers/preview", Some(preview)).await.0, StatusCode::OK);
    let (status, _, content_type, body) = call(&server, Some(READER), "POST", "/v1/jobs", Some(job.clone())).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::FORBIDDEN, "application/problem+json"));
    assert_eq!(body["status"], 403);

    // write: jobs, not the scheduler.
    assert_eq!(call(&server, Some(WRITER), "POST", "/v1/jobs", Some(job)).await.0, StatusCode::CREATED);
    let patch = json!({"name": "renamed"});
    assert_eq!(call(&server, Some(WRITER), "PATCH", "/v1/jobs/j1", Some(patch)).await.0, StatusCode::OK);
    assert_eq!(call(&server, Some(READER), "DELETE", "/v1/jobs/j1", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&server, Some(WRITER), "POST", "/v1/scheduler/pause", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&server, Some(WRITER), "DELETE", "/v1/jobs/j1", None).await.0, StatusCode::NO_CONTENT);

    // admin: everything.
    assert_eq!(call(&server, Some(ADMIN), "POST", "/v1/scheduler/pause", None).await.0, StatusCode::OK);
    assert_eq!(call(&server, Some(ADMIN), "POST", "/v1/scheduler/resume", None).await.0, StatusCode::OK);
    assert_eq!(call(&server, Some(ADMIN), "DELETE", "/v1/jobs", None).await.0, StatusCode::OK);

    // Open: health, readiness, the spec and the docs. /metrics needs read by default (whether or not it exists yet).
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        assert_eq!(call(&server, None, "GET", path, None).await.0, StatusCode::OK, "{path}");
    }
    assert_eq!(call(&server, None, "GET", "/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    assert_ne!(call(&server, Some(READER), "GET", "/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    server.stop().await;

    let mut public = with_tokens(memory_config());
    public.api.metrics_public = true;
    let server = Server::start(public).await;
    assert_ne!(call(&server, None, "GET", "/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&server, None, "GET", "/v1/jobs", None).await.0, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[test]
fn without_tokens_only_loopback_is_served_unless_insecure_is_asked_for() {
    let mut config = Config { ..memory_config() };
    config.api.listen = "0.0.0.0:8080".into();
    let err = config.clone().validated().unwrap_err().to_string();
    assert!(err.contains("--insecure-listen-anywhere"), "{err}");
    let mut insecure = config.clone();
    insecure.api.insecure_listen_anywhere = true;
    assert!(insecure.validated().is_ok());
    assert!(with_tokens(config).validated().is_ok());
    let mut short = with_tokens(memory_config());
    short.api.tokens[0].token = "short".into();
    assert!(short.validated().unwrap_err().to_string().contains("api.tokens"));
}

fn deny(config: &mut Config, entries: &[&str]) {
    config.webhooks.deny = entries.iter().map(|entry| entry.to_string()).collect();
}

#[tokio::test]
async fn denied_targets_are_refused_when_saved() {
    let mut config = memory_config();
    deny(&mut config, &["127.0.0.2/32", "*.internal"]);
    let server = Server::start(config).await;
    for url in [
        "http://127.0.0.2:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "https://reports.internal/run",
    ] {
        let (status, body) = server.post("/v1/jobs", paused_job("denied", url)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["field"], "action.url", "{url}");
    }
    assert_eq!(server.get("/v1/jobs/denied").await.0, StatusCode::NOT_FOUND);
    // A change of action is checked too.
    assert_eq!(server.post("/v1/jobs", paused_job("ok", "http://127.0.0.1:9/")).await.0, StatusCode::CREATED);
    let patch = json!({"action": {"url": "http://169.254.169.254/"}});
    let (status, body) = server.send("PATCH", "/v1/jobs/ok", Some(patch)).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("action.url")));
    server.stop().await;
}

/// A TCP listener that counts the connections made to it and never answers.
async fn connection_counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

#[tokio::test]
async fn a_name_that_resolves_to_a_denied_address_fails_at_delivery_without_connecting() {
    let (port, connections) = connection_counter().await;
    let mut config = memory_config();
    deny(&mut config, &["127.0.0.0/8", "::1/128"]);
    let server = Server::start(config).await;
    let job = json!({"id": "rebind", "action": {"url": format!("http://localhost:{port}/hook")}});
    let (status, body) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let runs = server.wait_runs("rebind", |runs| harness::count_status(runs, "failed") == 1).await;
    let error = runs[0]["error"].as_str().unwrap();
    assert!(error.contains("target policy") && error.contains("no allowed address"), "{error}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_literal_address_denied_after_the_job_was_saved_is_not_called() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("policy.db");
    let (port, connections) = connection_counter().await;
    let server = Server::start(harness::sqlite_config(&db)).await;
    let job = paused_job("literal", &format!("http://127.0.0.1:{port}/hook"));
    assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    server.stop().await;

    let mut stricter = harness::sqlite_config(&db);
    deny(&mut stricter, &["127.0.0.1/32"]);
    let server = Server::start(stricter).await;
    assert_eq!(server.post("/v1/jobs/literal/run", json!({})).await.0, StatusCode::ACCEPTED);
    let runs = server.wait_runs("literal", |runs| harness::count_status(runs, "failed") == 1).await;
    let error = runs[0]["error"].as_str().unwrap();
    assert!(error.contains("target policy") && error.contains("no request was made"), "{error}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn secrets_are_sent_as_given_and_masked_in_every_response_that_carries_a_job() {
    const SECRETS: [&str; 6] = ["s3cr3t-bearer", "s3cr3t-key", "s3cr3t-cookie", "s3cr3t-sig", "s3cr3t-pw", "s3cr3t-q"];
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let action = |path: &str| {
        let url = receiver.url(path).replace("http://", &format!("http://user:{}@", SECRETS[4]));
        json!({"url": format!("{url}?access_token={}&page=1", SECRETS[5]), "headers": {
            "Authorization": format!("Bearer {}", SECRETS[0]), "X-Api-Key": SECRETS[1],
            "Cookie": SECRETS[2], "X-Webhook-Signature": SECRETS[3], "X-Trace": "visible"}})
    };
    let job = json!({"id": "masked", "trigger": {"type": "interval", "hours": 1}, "action": action("ok/masked")});
    let mut responses = Vec::new();
    let (status, added) = server.post("/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(added["action"]["headers"]["Authorization"], "********");
    assert_eq!(added["action"]["headers"]["X-Trace"], "visible");
    responses.push(added);
    responses.push(server.get("/v1/jobs/masked").await.1);
    responses.push(server.get("/v1/jobs").await.1);
    responses.push(server.send("PATCH", "/v1/jobs/masked", Some(json!({"name": "n"}))).await.1);
    responses.push(server.send("PATCH", "/v1/jobs/masked", Some(json!({"action": action("ok/masked")}))).await.1);
    responses.push(server.post("/v1/jobs/masked/pause", json!({})).await.1);
    responses.push(server.post("/v1/jobs/masked/resume", json!({})).await.1);
    responses.push(server.post("/v1/jobs/masked/run", json!({})).await.1);
    let received = receiver.wait_for("ok/masked", 1).await;
    responses.push(Value::Array(server.runs("masked").await));
    responses.push(server.get("/v1/scheduler").await.1);
    for response in &responses {
        assert_ne!(*response, Value::Null);
        let text = response.to_string();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    // Job-carrying responses each show the mask (the list and the patched job included).
    assert_eq!(responses.iter().filter(|r| r.to_string().contains("********")).count(), 7);
    // Stored as given: the receiver gets the real values.
    assert_eq!(received[0].header("authorization").unwrap(), format!("Bearer {}", SECRETS[0]));
    assert_eq!(received[0].header("x-api-key").unwrap(), SECRETS[1]);
    server.stop().await;
}

#[tokio::test]
async fn a_store_holds_at_most_the_configured_number_of_jobs() {
    let mut config = memory_config();
    config.api.max_jobs_per_store = 2;
    let server = Server::start(config).await;
    for id in ["a", "b"] {
        assert_eq!(server.post("/v1/jobs", paused_job(id, "http://127.0.0.1:9/")).await.0, StatusCode::CREATED);
    }
    let (status, body) = server.post("/v1/jobs", paused_job("c", "http://127.0.0.1:9/")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("max_jobs_per_store"));
    // Replacing a job does not grow the store.
    let mut replace = paused_job("a", "http://127.0.0.1:9/x");
    replace["replace_existing"] = json!(true);
    assert_eq!(server.post("/v1/jobs", replace).await.0, StatusCode::CREATED);
    assert_eq!(server.send("DELETE", "/v1/jobs/b", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(server.post("/v1/jobs", paused_job("c", "http://127.0.0.1:9/")).await.0, StatusCode::CREATED);
    server.stop().await;
}

#[tokio::test]
async fn request_and_field_size_limits() {
    let mut config = memory_config();
    config.api.request_timeout_seconds = 0.5;
    let server = Server::start(config).await;

    // A client that sends headers and then stalls gets 503 once the request timeout has passed.
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut answer)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Body, id, name, header count and header size.
    let (status, _, _) = server.send_raw("POST", "/v1/jobs", vec![b' '; 1024 * 1024 + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let url = "http://127.0.0.1:9/";
    let cases = [
        (json!({"id": "x".repeat(201), "action": {"url": url}}), "id"),
        (json!({"name": "x".repeat(501), "action": {"url": url}}), "name"),
        (
            json!({"action": {"url": url, "headers": (0..65).map(|i| (format!("h{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}}),
            "action.headers",
        ),
        (json!({"action": {"url": url, "headers": {"h": "v".repeat(8 * 1024)}}}), "action.headers"),
        (json!({"action": {"url": format!("{url}{}", "p".repeat(8 * 1024))}}), "action.url"),
    ];
    for (job, field) in cases {
        let (status, body) = server.post("/v1/jobs", job).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{body}");
    }
    server.stop().await;
}

/// Add `count` run-now jobs calling `url_of(i)` and return when each request arrived.
async fn burst(server: &Server, receiver: &Receiver, prefix: &str, urls: &[String]) -> Vec<Instant> {
    for (i, url) in urls.iter().enumerate() {
        let job = json!({"id": format!("{prefix}-{i}"), "action": {"url": url}});
        assert_eq!(server.post("/v1/jobs", job).await.0, StatusCode::CREATED);
    }
    let mut arrivals: Vec<Instant> =
        receiver.wait_for(prefix, urls.len()).await.iter().map(|request| request.arrived).collect();
    arrivals.sort();
    arrivals
}

#[tokio::test]
async fn deliveries_over_a_rate_limit_wait_and_none_is_dropped() {
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_string();
    // Two hosts for the same receiver: 127.0.0.1 and localhost are different targets.
    let two_hosts = |prefix: &str, each: usize| -> Vec<String> {
        (0..each)
            .flat_map(|i| {
                [format!("http://127.0.0.1:{port}/{prefix}/a{i}"), format!("http://localhost:{port}/{prefix}/b{i}")]
            })
            .collect()
    };

    // Global: 2 per second, a burst of 2, so 6 deliveries span at least two seconds (minus scheduling slack).
    let mut config = memory_config();
    config.webhooks.rate_limit_per_second = Some(2.0);
    let server = Server::start(config).await;
    let arrivals = burst(&server, &receiver, "global", &two_hosts("global", 3)).await;
    assert_eq!(arrivals.len(), 6);
    let span = arrivals[5] - arrivals[0];
    assert!(span >= Duration::from_millis(1700), "{span:?}");
    server.stop().await;

    // Per target: 2 per second each; 4 deliveries to each of two hosts take about one second, not two.
    let mut config = memory_config();
    config.webhooks.per_target_rate_limit_per_second = Some(2.0);
    let server = Server::start(config).await;
    let arrivals = burst(&server, &receiver, "pertarget", &two_hosts("pertarget", 4)).await;
    assert_eq!(arrivals.len(), 8);
    let a: Vec<Instant> = receiver.matching("pertarget/a").iter().map(|r| r.arrived).collect();
    let a_span = a.iter().max().unwrap().duration_since(*a.iter().min().unwrap());
    assert!(a_span >= Duration::from_millis(700), "one host's four deliveries: {a_span:?}");
    let all_span = arrivals[7] - arrivals[0];
    assert!(all_span < Duration::from_millis(2500), "two hosts are limited apart: {all_span:?}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_with_wait_outlasts_the_request_timeout() {
    let receiver = Receiver::start().await;
    let mut config = memory_config();
    config.api.request_timeout_seconds = 0.3;
    let server = Server::start(config).await;
    assert_eq!(
        server.post("/v1/jobs", json!({"action": {"url": receiver.url("slow/1000/x")}})).await.0,
        StatusCode::CREATED
    );
    receiver.wait_for("slow/1000/x", 1).await;
    let (status, body) = server.post("/v1/scheduler/shutdown", json!({"wait": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "stopped");
    server.stopped().await;
}
