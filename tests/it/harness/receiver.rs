//! The webhook receiver every test delivers to: a real HTTP server on 127.0.0.1:0 that answers by a script in the
//! path (fail the first k attempts, 429 with Retry-After, hang) and records every request it got; and `Closer`,
//! which closes connections without answering.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::PATIENCE;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub method: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub arrived: Instant,
    /// When the receiver finished answering (after any requested delay).
    pub answered: Arc<Mutex<Option<Instant>>>,
    /// When the caller hung up before the answer (a cancelled delivery).
    pub dropped: Arc<Mutex<Option<Instant>>>,
}

/// Notes when the caller hung up: the server drops the handler of a request whose connection closed.
struct HangUp(Arc<Mutex<Option<Instant>>>, Arc<Mutex<Option<Instant>>>);

impl Drop for HangUp {
    fn drop(&mut self) {
        if self.0.lock().unwrap().is_none() {
            *self.1.lock().unwrap() = Some(Instant::now());
        }
    }
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

impl Inbox {
    /// Record a request; its 1-based number among the requests to the same path.
    fn record(&self, request: Received) -> usize {
        let mut requests = self.requests.lock().unwrap();
        let path = request.path.clone();
        requests.push(request);
        let nth = requests.iter().filter(|earlier| earlier.path == path).count();
        drop(requests);
        self.arrived.notify_waiters();
        nth
    }

    fn matching(&self, prefix: &str) -> Vec<Received> {
        let prefix = prefix.trim_start_matches('/');
        self.requests.lock().unwrap().iter().filter(|request| request.path.starts_with(prefix)).cloned().collect()
    }

    async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Received> {
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
/// Every answer's body is `<code> for <path>`, so a run's response excerpt shows which answer it got.
pub struct Receiver {
    pub base: String,
    inbox: Inbox,
}

fn number<T: std::str::FromStr>(path: &str, part: &str) -> T {
    part.parse().unwrap_or_else(|_| panic!("the receiver's script {path} has {part:?} where a number belongs"))
}

async fn answer(
    State(inbox): State<Inbox>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answered = Arc::new(Mutex::new(None));
    let dropped = Arc::new(Mutex::new(None));
    let _hang_up = HangUp(answered.clone(), dropped.clone());
    let nth = inbox.record(Received {
        path: path.clone(),
        method: method.to_string(),
        headers,
        body,
        arrived: Instant::now(),
        answered: answered.clone(),
        dropped,
    });
    let parts: Vec<&str> = path.split('/').collect();
    let status = |code: &str| StatusCode::from_u16(number(&path, code)).expect("a valid HTTP status code");
    let (status, retry_after) = match parts.as_slice() {
        ["status", code, ..] => (status(code), None),
        ["slow", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(number(&path, ms))).await;
            (StatusCode::OK, None)
        }
        ["flaky", k, code, ..] if nth <= number(&path, k) => (status(code), None),
        ["retry-after", k, value, ..] if nth <= number(&path, k) => {
            let value = match value.strip_prefix("date+") {
                Some(seconds) => {
                    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(number(&path, seconds)))
                }
                None => value.to_string(),
            };
            (StatusCode::TOO_MANY_REQUESTS, Some(value))
        }
        _ => (StatusCode::OK, None),
    };
    let mut response = (status, format!("{} for {path}", status.as_u16())).into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from_str(&value).unwrap());
    }
    *answered.lock().unwrap() = Some(Instant::now());
    response
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inbox = Inbox::default();
        let app = axum::Router::new().route("/{*path}", any(answer)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, inbox }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn all(&self) -> Vec<Received> {
        self.inbox.matching("")
    }

    /// Requests whose path starts with `prefix`.
    pub fn matching(&self, prefix: &str) -> Vec<Received> {
        self.inbox.matching(prefix)
    }

    /// Wait until at least `count` requests under `prefix` arrived; panics after PATIENCE.
    pub async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Received> {
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
                let method = head.split(|&byte| byte == b' ').next().unwrap_or_default();
                let answered = Arc::new(Mutex::new(None));
                let nth = recorder.record(Received {
                    path: "close".to_string(),
                    method: String::from_utf8_lossy(method).into_owned(),
                    headers: HeaderMap::new(),
                    body: Bytes::from(head),
                    arrived: Instant::now(),
                    answered: answered.clone(),
                    dropped: Arc::new(Mutex::new(None)),
                });
                if nth > k {
                    let _ =
                        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                    let _ = socket.shutdown().await;
                    *answered.lock().unwrap() = Some(Instant::now());
                }
                // Dropping the socket closes it: for the first k, before any answer.
            }
        });
        Closer { url, inbox }
    }

    pub fn hits(&self) -> Vec<Received> {
        self.inbox.matching("close")
    }
}
