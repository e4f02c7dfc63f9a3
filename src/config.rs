//! Configuration: a TOML file (`--config`), `APSCHED_…` environment variables, command-line flags, merged in that
//! order (DESIGN.md "Configuration") and validated once at start-up. Read-only after start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use chrono_tz::Tz;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where `apsched serve` listens with no configuration: loopback only, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The embedded default store: a fresh machine runs with no database server.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://./apsched.db";
/// APScheduler's ThreadPoolExecutor default.
pub const DEFAULT_MAX_WORKERS: usize = 10;
/// DESIGN.md: a lease not extended expires after this many seconds and another replica takes the fire over.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;
/// Finished runs are kept 30 days by default: long enough to look into last month's failures, short enough that
/// the ledger of a busy job stays small.
pub const DEFAULT_RETENTION_SECONDS: u64 = 30 * 24 * 3600;
/// And at most this many finished runs per job, so a job firing every second cannot grow the ledger by millions.
pub const DEFAULT_RETENTION_PER_JOB: u64 = 1000;
/// How often the background pruner runs: retention is coarse, and each round costs a scan of finished runs.
pub const DEFAULT_PRUNE_INTERVAL_SECONDS: u64 = 300;
/// Bounds a runaway client (or a loop in one) can fill a store to; a job list this long is a mistake, not a plan.
pub const DEFAULT_MAX_JOBS_PER_STORE: u64 = 100_000;
/// An API request that takes longer than this is stuck (a store that hangs); the client gets a 503 and may retry.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: f64 = 30.0;
/// The top-level keys an `APSCHED_…` variable may set; other `APSCHED_` variables (test and client settings) are
/// not configuration and are ignored rather than rejected.
const ENV_SECTIONS: [&str; 11] = [
    "timezone",
    "jobstores",
    "executors",
    "job_defaults",
    "api",
    "webhooks",
    "scheduler",
    "runs",
    "listen",
    "api_tokens",
    "insecure_listen_anywhere",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The scheduler's zone: the default for triggers that name none.
    pub timezone: String,
    pub jobstores: BTreeMap<String, JobStoreConfig>,
    pub executors: BTreeMap<String, ExecutorConfig>,
    pub job_defaults: JobDefaults,
    pub api: ApiConfig,
    pub webhooks: WebhooksConfig,
    pub scheduler: SchedulerConfig,
    pub runs: RunsConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    Memory,
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobStoreConfig {
    /// Inferred from `url` when absent (`sqlite:…`, `postgres:…`), else memory.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub store_type: Option<StoreType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

impl JobStoreConfig {
    pub fn resolved_type(&self) -> StoreType {
        self.store_type.unwrap_or(match self.url.as_deref() {
            Some(url) if url.starts_with("sqlite:") => StoreType::Sqlite,
            Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => StoreType::Postgres,
            _ => StoreType::Memory,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    pub max_workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDefaults {
    pub coalesce: bool,
    pub max_instances: u32,
    /// Seconds; absent or null: always run however late.
    pub misfire_grace_time: Option<u32>,
}

impl Default for JobDefaults {
    fn default() -> Self {
        // DESIGN.md: coalesce = true, max_instances = 1, misfire_grace_time = 60.
        JobDefaults { coalesce: true, max_instances: 1, misfire_grace_time: Some(60) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: String,
    /// Bearer tokens and their roles; none: the API is open (and then served on loopback only, unless
    /// `insecure_listen_anywhere`). In the environment: `APSCHED_API_TOKENS=token:role,token:role`.
    #[serde(default, deserialize_with = "crate::api::auth::deserialize_tokens")]
    pub tokens: Vec<crate::api::auth::ApiToken>,
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

impl ApiConfig {
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.request_timeout_seconds)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Standard Webhooks signing secret (`whsec_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// Targets webhooks may call (CIDRs and host patterns such as `*.internal`); empty: any not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Targets webhooks may not call, on top of the built-in link-local and cloud-metadata ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Deliveries per second across all targets; a delivery over the limit waits. Absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
    /// Deliveries per second to one host (name and port); a delivery over the limit waits. Absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_target_rate_limit_per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub lease_seconds: u64,
}

/// Retention of the run history; unfinished runs are never pruned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunsConfig {
    /// Prune finished runs that finished longer ago than this; 0 keeps them regardless of age.
    pub retention_seconds: u64,
    /// Keep at most this many finished runs per job (the newest by scheduled time); 0: no limit.
    pub retention_per_job: u64,
    /// Seconds between two rounds of the background pruner.
    pub prune_interval_seconds: u64,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            retention_seconds: DEFAULT_RETENTION_SECONDS,
            retention_per_job: DEFAULT_RETENTION_PER_JOB,
            prune_interval_seconds: DEFAULT_PRUNE_INTERVAL_SECONDS,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timezone: "UTC".to_string(),
            jobstores: BTreeMap::from([(
                "default".to_string(),
                JobStoreConfig {
                    store_type: Some(StoreType::Sqlite),
                    url: Some(DEFAULT_SQLITE_URL.to_string()),
                    pool_size: None,
                },
            )]),
            executors: BTreeMap::from([("default".to_string(), ExecutorConfig { max_workers: DEFAULT_MAX_WORKERS })]),
            job_defaults: JobDefaults::default(),
            api: ApiConfig {
                listen: DEFAULT_LISTEN.to_string(),
                tokens: Vec::new(),
                insecure_listen_anywhere: false,
                metrics_public: false,
                request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
                max_jobs_per_store: DEFAULT_MAX_JOBS_PER_STORE,
            },
            webhooks: WebhooksConfig::default(),
            scheduler: SchedulerConfig { lease_seconds: DEFAULT_LEASE_SECONDS },
            runs: RunsConfig::default(),
        }
    }
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--insecure-listen-anywhere`: only ever turns the setting on.
    #[serde(skip)]
    pub insecure_listen_anywhere: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration: {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

impl Config {
    /// Merge defaults, the file (if any), the environment and the flags, then validate.
    pub fn load(file: Option<&Path>, flags: &Flags) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(invalid("--config", format!("{} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(environment());
        if let Some(listen) = &flags.listen {
            figment = figment.merge(Serialized::default("api.listen", listen));
        }
        if flags.insecure_listen_anywhere {
            figment = figment.merge(Serialized::default("api.insecure_listen_anywhere", true));
        }
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration of tests and embedders: defaults plus what they change, validated the same way.
    pub fn validated(self) -> Result<Config, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.tz()?;
        let listen = self.listen_addr()?;
        if self.api.tokens.is_empty() && !listen.ip().is_loopback() && !self.api.insecure_listen_anywhere {
            return Err(invalid(
                "api.listen",
                format!(
                    "{listen} is not a loopback address and no API tokens are configured: set [api] tokens \
                     (APSCHED_API_TOKENS), or pass --insecure-listen-anywhere to serve an open API anyway"
                ),
            ));
        }
        crate::api::auth::validate_tokens(&self.api.tokens).map_err(|message| invalid("api.tokens", message))?;
        if !(self.api.request_timeout_seconds > 0.0 && self.api.request_timeout_seconds <= 3600.0) {
            return Err(invalid("api.request_timeout_seconds", "must be in (0, 3600]"));
        }
        if self.api.max_jobs_per_store == 0 {
            return Err(invalid("api.max_jobs_per_store", "must be at least 1"));
        }
        crate::action::policy::TargetPolicy::from_config(&self.webhooks)
            .map_err(|(key, message)| invalid(format!("webhooks.{key}"), message))?;
        for (key, rate) in [
            ("rate_limit_per_second", self.webhooks.rate_limit_per_second),
            ("per_target_rate_limit_per_second", self.webhooks.per_target_rate_limit_per_second),
        ] {
            if let Some(rate) = rate
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err(invalid(format!("webhooks.{key}"), "must be a positive number"));
            }
        }
        if self.jobstores.is_empty() {
            return Err(invalid("jobstores", "at least one job store is needed"));
        }
        for (name, store) in &self.jobstores {
            let needs_url = matches!(store.resolved_type(), StoreType::Sqlite | StoreType::Postgres);
            if needs_url && store.url.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(format!("jobstores.{name}.url"), "is required for sqlite and postgres stores"));
            }
            if store.pool_size == Some(0) {
                return Err(invalid(format!("jobstores.{name}.pool_size"), "must be at least 1"));
            }
        }
        for (name, executor) in &self.executors {
            if executor.max_workers == 0 {
                return Err(invalid(format!("executors.{name}.max_workers"), "must be at least 1"));
            }
        }
        if !self.executors.contains_key("default") {
            return Err(invalid("executors", "an executor named \"default\" is needed"));
        }
        if self.job_defaults.max_instances == 0 {
            return Err(invalid("job_defaults.max_instances", "must be at least 1"));
        }
        if self.scheduler.lease_seconds < 2 {
            return Err(invalid("scheduler.lease_seconds", "must be at least 2"));
        }
        if let Some(secret) = &self.webhooks.signing_secret {
            crate::action::signing::SigningKey::parse(secret)
                .map_err(|message| invalid("webhooks.signing_secret", message))?;
        }
        if self.runs.prune_interval_seconds == 0 {
            return Err(invalid("runs.prune_interval_seconds", "must be at least 1"));
        }
        Ok(())
    }

    pub fn tz(&self) -> Result<Tz, ConfigError> {
        self.timezone
            .parse()
            .map_err(|_| invalid("timezone", format!("{:?} is not an IANA timezone name", self.timezone)))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.api.listen.parse().map_err(|_| {
            invalid("api.listen", format!("{:?} is not an address such as 127.0.0.1:8080", self.api.listen))
        })
    }

    /// The store jobs go to when they name none: `default` if configured, else the first by name.
    pub fn default_jobstore(&self) -> &str {
        if self.jobstores.contains_key("default") {
            "default"
        } else {
            self.jobstores.keys().next().map(String::as_str).unwrap_or("default")
        }
    }
}

/// `APSCHED_JOBSTORES__DEFAULT__URL` → `jobstores.default.url`; `APSCHED_LISTEN` → `api.listen`;
/// `APSCHED_API_TOKENS` → `api.tokens`; `APSCHED_INSECURE_LISTEN_ANYWHERE` → `api.insecure_listen_anywhere`.
fn environment() -> Env {
    Env::prefixed("APSCHED_")
        .split("__")
        .filter(|key| {
            let first = key.as_str().split('.').next().unwrap_or_default().to_ascii_lowercase();
            ENV_SECTIONS.contains(&first.as_str())
        })
        .map(|key| match key.as_str().to_ascii_lowercase().as_str() {
            "listen" => "api.listen".into(),
            "api_tokens" => "api.tokens".into(),
            "insecure_listen_anywhere" => "api.insecure_listen_anywhere".into(),
            _ => key.into(),
        })
}

#[cfg(test)]
// figment's Jail fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_sqlite_store_on_loopback() {
        figment::Jail::expect_with(|_jail| {
            let config = Config::load(None, &Flags::default()).unwrap();
            assert_eq!(config.api.listen, DEFAULT_LISTEN);
            assert_eq!(config.jobstores["default"].resolved_type(), StoreType::Sqlite);
            assert_eq!(config.jobstores["default"].url.as_deref(), Some(DEFAULT_SQLITE_URL));
            assert_eq!(config.job_defaults, JobDefaults::default());
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "apsched.toml",
                r#"
                timezone = "Europe/Berlin"
                [jobstores.archive]
                type = "memory"
                [executors.slow]
                max_workers = 2
                [job_defaults]
                coalesce = false
                max_instances = 3
                [api]
                listen = "127.0.0.1:9000"
                "#,
            )?;
            jail.set_env("APSCHED_JOBSTORES__DEFAULT__URL", "sqlite://./other.db");
            jail.set_env("APSCHED_TEST_DATABASE_URL", "postgres://ignored");
            jail.set_env("APSCHED_LISTEN", "127.0.0.1:9001");
            let flags = Flags { listen: Some("127.0.0.1:9002".into()), ..Flags::default() };
            let config = Config::load(Some(Path::new("apsched.toml")), &flags).unwrap();
            assert_eq!(config.timezone, "Europe/Berlin");
            assert_eq!(config.jobstores["archive"].resolved_type(), StoreType::Memory);
            assert_eq!(config.jobstores["default"].url.as_deref(), Some("sqlite://./other.db"));
            assert_eq!(config.executors["slow"].max_workers, 2);
            assert_eq!(config.executors["default"].max_workers, DEFAULT_MAX_WORKERS);
            assert!(!config.job_defaults.coalesce);
            assert_eq!(config.api.listen, "127.0.0.1:9002");
            Ok(())
        });
    }

    #[test]
    fn signing_secret_and_retention_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APSCHED_WEBHOOKS__SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            jail.set_env("APSCHED_RUNS__RETENTION_PER_JOB", "50");
            let config = Config::load(None, &Flags::default()).unwrap();
            assert_eq!(config.webhooks.signing_secret.as_deref(), Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
            assert_eq!(config.runs.retention_per_job, 50);
            assert_eq!(config.runs.retention_seconds, DEFAULT_RETENTION_SECONDS);
            Ok(())
        });
    }

    #[test]
    fn a_bad_key_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[scheduler]\nlease_secnds = 5\n")?;
            let err = Config::load(Some(Path::new("a.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("lease_secnds"), "{err}");
            jail.create_file("b.toml", "timezone = \"Mars/Base\"\n")?;
            let err = Config::load(Some(Path::new("b.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("timezone") && err.contains("Mars/Base"), "{err}");
            jail.create_file("c.toml", "[executors.default]\nmax_workers = 0\n")?;
            let err = Config::load(Some(Path::new("c.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("executors.default.max_workers"), "{err}");
            jail.create_file("d.toml", "[webhooks]\nsigning_secret = \"s3cret-value\"\n")?;
            let err = Config::load(Some(Path::new("d.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("webhooks.signing_secret") && !err.contains("s3cret-value"), "{err}");
            Ok(())
        });
    }
}
