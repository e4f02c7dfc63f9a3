//! The service's settings: one section per component, each defined, defaulted and checked by the component it
//! configures (`[jobstores]` by `store`, `[api]` by `api`, …), composed here into `Config`, which
//! `config::load` reads from file, environment and flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use crate::api::ApiSettings;
pub use crate::audit::AuditSettings;
use crate::config::{self, ConfigError, Flags, Sections, in_section, invalid};
pub use crate::delivery::WebhookSettings;
pub use crate::executor::ExecutorSettings;
pub use crate::job::JobDefaults;
pub use crate::scheduler::settings::{RunsConfig, SchedulerSettings};
pub use crate::store::{StoreSettings, StoreType};

/// `[jobstores.<name>]` under the name it had before the stores owned it; tests and embedders still use it.
pub type JobStoreConfig = StoreSettings;
/// `[executors.<name>]` under the name it had before the executors owned it; tests and embedders still use it.
pub type ExecutorConfig = ExecutorSettings;

/// Secrets (the webhook signing secret, API tokens) are `secrecy` types: Debug shows them redacted and Serialize
/// leaves them out, so neither a printed nor a serialised `Config` carries one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The scheduler's zone: the default for triggers that name none.
    pub timezone: String,
    /// `[jobstores.<name>]`: where jobs and runs are kept.
    pub jobstores: BTreeMap<String, StoreSettings>,
    /// `[executors.<name>]`: the delivery pools.
    pub executors: BTreeMap<String, ExecutorSettings>,
    /// `[job_defaults]`.
    pub job_defaults: JobDefaults,
    /// `[api]`.
    pub api: ApiSettings,
    /// `[webhooks]`.
    pub webhooks: WebhookSettings,
    /// `[scheduler]`.
    pub scheduler: SchedulerSettings,
    /// `[runs]`: how long run history is kept.
    pub runs: RunsConfig,
    /// `[audit]`: how long the audit trail is kept.
    pub audit: AuditSettings,
    /// `[notify]`: where a job with no `notify` of its own sends its health notifications; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::notify::serialize_masked")]
    pub notify: Option<crate::notify::NotifySpec>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timezone: "UTC".to_string(),
            jobstores: StoreSettings::default_stores(),
            executors: ExecutorSettings::default_executors(),
            job_defaults: JobDefaults::default(),
            api: ApiSettings::default(),
            webhooks: WebhookSettings::default(),
            scheduler: SchedulerSettings::default(),
            runs: RunsConfig::default(),
            audit: AuditSettings::default(),
            notify: None,
        }
    }
}

impl Sections for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.tz()?;
        self.api.validate().map_err(in_section("api"))?;
        self.webhooks.validate().map_err(in_section("webhooks"))?;
        StoreSettings::validate_stores(&self.jobstores).map_err(in_section("jobstores"))?;
        ExecutorSettings::validate_executors(&self.executors).map_err(in_section("executors"))?;
        self.job_defaults.validate().map_err(in_section("job_defaults"))?;
        self.scheduler.validate().map_err(in_section("scheduler"))?;
        self.runs.validate().map_err(in_section("runs"))?;
        if let Some(notify) = &self.notify {
            notify.validate().map_err(in_section("notify"))?;
        }
        Ok(())
    }
}

impl Config {
    /// Merge defaults, the file (if any), the environment and the flags, then validate.
    pub fn load(file: Option<&Path>, flags: &Flags) -> Result<Config, ConfigError> {
        config::load(file, flags)
    }

    /// The configuration of tests and embedders: defaults plus what they change, validated the same way.
    pub fn validated(self) -> Result<Config, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// `timezone` as a zone.
    pub fn tz(&self) -> Result<Tz, ConfigError> {
        self.timezone
            .parse()
            .map_err(|_| invalid("timezone", format!("{:?} is not an IANA timezone name", self.timezone)))
    }

    /// `[api] listen` as an address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.api.listen_addr().map_err(in_section("api"))
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

#[cfg(test)]
// figment's Jail fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::providers::{Format, Toml};
    use secrecy::ExposeSecret;

    use super::*;
    use crate::api::settings::DEFAULT_LISTEN;
    use crate::config::Flags;
    use crate::executor::DEFAULT_MAX_WORKERS;
    use crate::scheduler::settings::DEFAULT_RETENTION_SECONDS;
    use crate::store::DEFAULT_SQLITE_URL;

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
    fn tokens_and_the_insecure_switch_come_from_the_environment_too() {
        const ADMIN: &str = "admin-token-0123456789";
        const READER: &str = "read-token-01234567890";
        figment::Jail::expect_with(|jail| {
            jail.set_env("APSCHED_API_TOKENS", format!("{ADMIN}:admin:ops,{READER}:read"));
            jail.set_env("APSCHED_LISTEN", "0.0.0.0:8080");
            jail.set_env("APSCHED_AUDIT__RETENTION_SECONDS", "86400");
            let config = Config::load(None, &Flags::default()).unwrap();
            assert_eq!(config.api.tokens.len(), 2);
            assert_eq!(config.api.tokens[1].role, crate::api::auth::Role::Read);
            let names: Vec<String> =
                config.api.tokens.iter().enumerate().map(|(i, t)| crate::api::auth::token_name(t, i)).collect();
            assert_eq!(names, ["ops", "token-2"]);
            assert_eq!(config.audit.retention_seconds, 86400);
            // Debug output never shows a token.
            assert!(!format!("{config:?}").contains(ADMIN));
            jail.set_env("APSCHED_API_TOKENS", "");
            assert!(Config::load(None, &Flags::default()).is_err());
            jail.set_env("APSCHED_INSECURE_LISTEN_ANYWHERE", "true");
            assert!(Config::load(None, &Flags::default()).is_ok());
            jail.set_env("APSCHED_INSECURE_LISTEN_ANYWHERE", "false");
            let flags = Flags { insecure_listen_anywhere: true, ..Flags::default() };
            assert!(Config::load(None, &flags).is_ok());
            Ok(())
        });
    }

    #[test]
    fn signing_secret_and_retention_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APSCHED_WEBHOOKS__SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            jail.set_env("APSCHED_RUNS__RETENTION_PER_JOB", "50");
            let config = Config::load(None, &Flags::default()).unwrap();
            assert_eq!(
                config.webhooks.signing_secret.as_ref().map(ExposeSecret::expose_secret),
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            );
            assert_eq!(config.runs.retention_per_job, 50);
            assert_eq!(config.runs.retention_seconds, DEFAULT_RETENTION_SECONDS);
            Ok(())
        });
    }

    #[test]
    fn printing_the_configuration_masks_the_signing_secret() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let config = Config {
            webhooks: WebhookSettings { signing_secret: Some(secret.into()), ..WebhookSettings::default() },
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("MfKQ9r8"), "{printed}");
        // secrecy's redaction, where the hand-written Debug printed `action::MASK`.
        assert!(printed.contains("signing_secret: Some(SecretBox<str>([REDACTED]))"), "{printed}");
    }

    #[test]
    fn serialising_the_configuration_leaves_the_secrets_out() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let token = "a-token-of-sixteen-or-more";
        let mut config = Config::default();
        config.webhooks.signing_secret = Some(secret.into());
        config.api.tokens = vec![crate::api::auth::ApiToken::new(token, crate::api::auth::Role::Admin)];
        let serialised = serde_json::to_string(&config).unwrap();
        assert!(!serialised.contains("MfKQ9r8") && !serialised.contains(token), "{serialised}");
        assert!(serialised.contains(DEFAULT_SQLITE_URL), "{serialised}");
    }

    #[test]
    fn each_section_names_its_key_in_errors() {
        type Change = fn(&mut Config);
        let cases: [(Change, &str); 7] = [
            (|c| c.jobstores.clear(), "configuration: jobstores: at least one job store is needed"),
            (
                |c| c.jobstores.get_mut("default").unwrap().pool_size = Some(0),
                "configuration: jobstores.default.pool_size: must be at least 1",
            ),
            (|c| c.executors.clear(), "configuration: executors: an executor named \"default\" is needed"),
            (|c| c.job_defaults.max_instances = 0, "configuration: job_defaults.max_instances: must be at least 1"),
            (
                |c| c.api.request_timeout_seconds = 0.0,
                "configuration: api.request_timeout_seconds: must be in (0, 3600]",
            ),
            (|c| c.scheduler.lease_seconds = 1, "configuration: scheduler.lease_seconds: must be at least 2"),
            (
                |c| c.webhooks.deny = vec!["not a host!".into()],
                "configuration: webhooks.deny[0]: \"not a host!\" is neither a CIDR, an address, nor a host pattern \
                 such as *.internal",
            ),
        ];
        for (change, expected) in cases {
            let mut config = Config::default();
            change(&mut config);
            assert_eq!(config.validated().unwrap_err().to_string(), expected);
        }
    }

    #[test]
    fn a_postgres_url_in_the_environment_makes_the_default_store_postgres() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APSCHED_JOBSTORES__DEFAULT__URL", "postgres://apsched:s3cret@db.internal:5432/apsched");
            jail.set_env("APSCHED_WEBHOOKS__DENY", r#"["10.20.0.0/16", "*.corp.internal"]"#);
            let config = Config::load(None, &Flags::default()).unwrap();
            assert_eq!(config.jobstores["default"].resolved_type(), StoreType::Postgres);
            assert_eq!(config.webhooks.deny, ["10.20.0.0/16", "*.corp.internal"]);

            jail.set_env("APSCHED_JOBSTORES__DEFAULT__TYPE", "sqlite");
            let err = Config::load(None, &Flags::default()).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    r#"configuration: jobstores.default.type: "sqlite" contradicts the url's scheme "postgres""#
                ),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn notify_defaults_load_checked_and_masked() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "n.toml",
                &format!(
                    "[notify]\nurl = \"https://alerts.example.com/apsched\"\non = [\"failure\", \"recovery\"]\n\
                     signing_secret = \"{secret}\"\nfailure_threshold = 3\n"
                ),
            )?;
            let config = Config::load(Some(Path::new("n.toml")), &Flags::default()).unwrap();
            let notify = config.notify.clone().unwrap();
            assert_eq!(notify.on, [crate::notify::NotifyOn::Failure, crate::notify::NotifyOn::Recovery]);
            assert_eq!(notify.failure_threshold, 3);
            assert_eq!(notify.signing_secret.as_deref(), Some(secret));
            assert!(!format!("{config:?}").contains("MfKQ9r8"));
            assert!(!serde_json::to_string(&config).unwrap().contains("MfKQ9r8"));

            jail.create_file("z.toml", "[notify]\nurl = \"https://alerts.example.com/\"\nfailure_threshold = 0\n")?;
            let err = Config::load(Some(Path::new("z.toml")), &Flags::default()).unwrap_err().to_string();
            assert_eq!(err, "configuration: notify.failure_threshold: must be at least 1");
            jail.create_file("u.toml", "[notify]\nurl = \"alerts.example.com\"\n")?;
            let err = Config::load(Some(Path::new("u.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.starts_with("configuration: notify.url: "), "{err}");
            jail.create_file("s.toml", "[notify]\nurl = \"https://a.example/\"\nsigning_secret = \"hunter2\"\n")?;
            let err = Config::load(Some(Path::new("s.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.starts_with("configuration: notify.signing_secret: ") && !err.contains("hunter2"), "{err}");
            jail.create_file("o.toml", "[notify]\nurl = \"https://a.example/\"\non = [\"exploded\"]\n")?;
            let err = Config::load(Some(Path::new("o.toml")), &Flags::default()).unwrap_err().to_string();
            assert!(err.contains("notify.on"), "{err}");
            Ok(())
        });
    }

    /// `apsched.example.toml` at the repository's root holds every key at its default: loading it gives exactly
    /// the defaults, a key renamed or removed in the code fails to load (unknown keys are refused), and a key the
    /// defaults carry but the file lacks is named.
    #[test]
    fn the_example_configuration_is_every_key_at_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("apsched.example.toml");
        figment::Jail::expect_with(|_jail| {
            let loaded = Config::load(Some(&path), &Flags::default()).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(loaded.api.listen, DEFAULT_LISTEN);
            assert_eq!(loaded.jobstores["default"].url.as_deref(), Some(DEFAULT_SQLITE_URL));
            assert_eq!(loaded.jobstores["default"].resolved_type(), StoreType::Sqlite);
            assert_eq!(loaded.executors["default"].max_workers, DEFAULT_MAX_WORKERS);
            assert_eq!(loaded.job_defaults, JobDefaults::default());
            assert_eq!(loaded.runs.retention_seconds, DEFAULT_RETENTION_SECONDS);
            let defaults = serde_json::to_value(Config::default()).unwrap();
            assert_eq!(serde_json::to_value(&loaded).unwrap(), defaults);

            let file: figment::value::Dict =
                figment::Figment::from(<Toml as Format>::file_exact(&path)).extract().unwrap();
            let missing = missing_keys(&defaults, &serde_json::to_value(file).unwrap(), "");
            assert!(missing.is_empty(), "apsched.example.toml lacks {missing:?}");
            Ok(())
        });
    }

    /// The keys of `expected` (nested, dotted) that `actual` does not have.
    fn missing_keys(expected: &serde_json::Value, actual: &serde_json::Value, prefix: &str) -> Vec<String> {
        let Some(expected) = expected.as_object() else { return Vec::new() };
        expected
            .iter()
            .flat_map(|(key, value)| {
                let path = format!("{prefix}{key}");
                match actual.get(key) {
                    None => vec![path],
                    Some(actual) => missing_keys(value, actual, &format!("{path}.")),
                }
            })
            .collect()
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
