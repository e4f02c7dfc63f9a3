//! A webhook receiver with a script per path, for the delivery tests: it fails the first k attempts, answers 429
//! with Retry-After, hangs, or closes the connection without answering; and records every request it got.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Upper bound for anything a test waits for: generous, since CI machines are slow and noisy.
pub const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub arrived: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

#[derive(Clone, Default)]
struct Inbox {
    hits: Arc<Mutex<Vec<Hit>>>,
    arrived: Arc<Notify>,
}

impl Inbox {
    /// Record a hit; its 1-based number among the hits of the same path.
    fn record(&self, hit: Hit) -> usize {
        let mut hits = self.hits.lock().unwrap();
        let path = hit.path.clone();
        hits.push(hit);
        let nth = hits.iter().filter(|h| h.path == path).count();
        drop(hits);
        self.arrived.notify_waiters();
        nth
    }

    fn matching(&self, prefix: &str) -> Vec<Hit> {
        let prefix = prefix.trim_start_matches('/');
        self.hits.lock().unwrap().iter().filter(|hit| hit.path.starts_with(prefix)).cloned().collect()
    }

    async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Hit> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let notified = self.arrived.notified();
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

/// Paths (each ends in a name of the test's choosing, so scripts do not share counts):
/// `ok/…` → 200; `status/<code>/…` → code; `slow/<ms>/…` → 200 after ms;
/// `flaky/<k>/<code>/…` → code for the first k requests, then 200;
/// `retry-after/<k>/<value>/…` → 429 with `Retry-After: <value>` for the first k, then 200; a value `date+N` is
/// sent as the HTTP date N seconds from now.
pub struct ScriptedReceiver {
    pub base: String,
    inbox: Inbox,
}

async fn answer(State(inbox): State<Inbox>, Path(path): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let nth = inbox.record(Hit { path: path.clone(), headers, body, arrived: Instant::now() });
    let parts: Vec<&str> = path.split('/').collect();
    let reply = |status: StatusCode| (status, format!("{} for {path}", status.as_u16())).into_response();
    match parts.as_slice() {
        ["status", code, ..] => reply(StatusCode::from_u16(code.parse().unwrap()).unwrap()),
        ["slow", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            reply(StatusCode::OK)
        }
        ["flaky", k, code, ..] if nth <= k.parse().unwrap() => {
            reply(StatusCode::from_u16(code.parse().unwrap()).unwrap())
        }
        ["retry-after", k, value, ..] if nth <= k.parse().unwrap() => {
            let value = match value.strip_prefix("date+") {
                Some(seconds) => httpdate::fmt_http_date(
                    std::time::SystemTime::now() + Duration::from_secs(seconds.parse().unwrap()),
                ),
                None => value.to_string(),
            };
            let mut response = reply(StatusCode::TOO_MANY_REQUESTS);
            response.headers_mut().insert("retry-after", HeaderValue::from_str(&value).unwrap());
            response
        }
        _ => reply(StatusCode::OK),
    }
}

impl ScriptedReceiver {
    pub async fn start() -> ScriptedReceiver {
        let inbox = Inbox::default();
        let app = axum::Router::new().route("/{*path}", any(answer)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ScriptedReceiver { base, inbox }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn matching(&self, prefix: &str) -> Vec<Hit> {
        self.inbox.matching(prefix)
    }

    pub fn all(&self) -> Vec<Hit> {
        self.inbox.matching("")
    }

    pub async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Hit> {
        self.inbox.wait_for(prefix, count).await
    }
}

/// A raw TCP receiver that reads each request and closes the connection without a word for the first `k`
/// connections, then answers 200 (closing after each answer, so every attempt is a fresh connection).
pub struct Closer {
    pub url: String,
    inbox: Inbox,
}

impl Closer {
    pub async fn start(k: usize) -> Closer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/close", listener.local_addr().unwrap());
        let inbox = Inbox::default();
        let recorder = inbox.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let nth = recorder.record(Hit {
                    path: "close".to_string(),
                    headers: HeaderMap::new(),
                    body: Bytes::from(head),
                    arrived: Instant::now(),
                });
                if nth > k {
                    let _ =
                        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                    let _ = socket.shutdown().await;
                }
                // Dropping the socket closes it: for the first k, before any answer.
            }
        });
        Closer { url, inbox }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inbox.matching("close")
    }

    pub async fn wait_for(&self, count: usize) -> Vec<Hit> {
        self.inbox.wait_for("close", count).await
    }
}
