//! `[api]`: where the API listens, who may use it, and its limits.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::{self, ApiToken};

/// Where `apsched serve` listens with no configuration: loopback only, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The scheduler's bound, as `[api] max_jobs_per_store` defaults to it.
pub use crate::scheduler::builder::DEFAULT_MAX_JOBS_PER_STORE;
/// An API request that takes longer than this is stuck (a store that hangs); the client gets a 503 and may retry.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: f64 = 30.0;
/// A request timeout past an hour keeps a hung connection (and what it holds) for no one's benefit.
pub const MAX_REQUEST_TIMEOUT_SECONDS: f64 = 3600.0;

/// The `[api]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// The address to serve on (`host:port`).
    pub listen: String,
    /// Bearer tokens and their roles; none: the API is open (and then served on loopback only, unless
    /// `insecure_listen_anywhere`). In the environment: `APSCHED_API_TOKENS=token:role,token:role`. Never
    /// serialised: the defaults have none, and a token must not leave the process.
    #[serde(default, skip_serializing, deserialize_with = "auth::deserialize_tokens")]
    pub tokens: Vec<ApiToken>,
    /// Serve a token-less API on a non-loopback address anyway (`--insecure-listen-anywhere`).
    #[serde(default)]
    pub insecure_listen_anywhere: bool,
    /// `/metrics` without a token; otherwise (the default) it needs the `read` role when tokens are configured.
    #[serde(default)]
    pub metrics_public: bool,
    /// Seconds an API request may take before it is answered 503.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: f64,
    /// Jobs one store may hold; adding one more is 409.
    #[serde(default = "default_max_jobs_per_store")]
    pub max_jobs_per_store: u64,
}

fn default_request_timeout() -> f64 {
    DEFAULT_REQUEST_TIMEOUT_SECONDS
}

fn default_max_jobs_per_store() -> u64 {
    DEFAULT_MAX_JOBS_PER_STORE
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: DEFAULT_LISTEN.to_string(),
            tokens: Vec::new(),
            insecure_listen_anywhere: false,
            metrics_public: false,
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
            max_jobs_per_store: DEFAULT_MAX_JOBS_PER_STORE,
        }
    }
}

impl ApiSettings {
    /// `request_timeout_seconds` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_seconds)
    }

    /// `listen` as an address; an error is the key and what is wrong with it.
    pub fn listen_addr(&self) -> Result<SocketAddr, (String, String)> {
        self.listen
            .parse()
            .map_err(|_| ("listen".into(), format!("{:?} is not an address such as 127.0.0.1:8080", self.listen)))
    }

    /// An error is the key at fault (`listen`, `tokens`, …) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let listen = self.listen_addr()?;
        if self.tokens.is_empty() && !listen.ip().is_loopback() && !self.insecure_listen_anywhere {
            return Err((
                "listen".into(),
                format!(
                    "{listen} is not a loopback address and no API tokens are configured: set [api] tokens \
                     (APSCHED_API_TOKENS), or pass --insecure-listen-anywhere to serve an open API anyway"
                ),
            ));
        }
        auth::validate_tokens(&self.tokens).map_err(|message| ("tokens".to_string(), message))?;
        if !(self.request_timeout_seconds > 0.0 && self.request_timeout_seconds <= MAX_REQUEST_TIMEOUT_SECONDS) {
            return Err(("request_timeout_seconds".into(), format!("must be in (0, {MAX_REQUEST_TIMEOUT_SECONDS}]")));
        }
        if self.max_jobs_per_store == 0 {
            return Err(("max_jobs_per_store".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}
