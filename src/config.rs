//! Loading configuration: a TOML file (`--config`), `APSCHED_…` environment variables and command-line flags,
//! merged over the defaults in that order and validated once at start-up. Read-only after start.
//!
//! The sections themselves (their types, defaults and checks) belong to the components they configure, and
//! `settings::Config` composes them: this module knows how to load any such composition and nothing of the
//! components, so every arrow points away from it.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The top-level keys an `APSCHED_…` variable may set; other `APSCHED_` variables (test and client settings) are
/// not configuration and are ignored rather than rejected.
const ENV_SECTIONS: [&str; 13] = [
    "timezone",
    "jobstores",
    "executors",
    "job_defaults",
    "api",
    "webhooks",
    "scheduler",
    "runs",
    "audit",
    "listen",
    "api_tokens",
    "insecure_listen_anywhere",
    "notify",
];

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flags {
    /// `--listen`: the address to serve on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--insecure-listen-anywhere`: only ever turns the setting on.
    #[serde(skip)]
    pub insecure_listen_anywhere: bool,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment cannot be read as configuration.
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value breaks a rule.
    #[error("configuration: {key}: {message}")]
    Invalid {
        /// The key at fault, with its section (`jobstores.default.url`).
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// A section's `(key, message)` as a configuration error: the key is the section's own (`url`, `deny[2]`), empty
/// when the message is about the section as a whole.
pub fn in_section(section: &'static str) -> impl Fn((String, String)) -> ConfigError {
    move |(key, message)| {
        if key.is_empty() { invalid(section, message) } else { invalid(format!("{section}.{key}"), message) }
    }
}

/// A configuration `load` can read: every section with a default, and a check of the whole once merged.
pub trait Sections: Serialize + DeserializeOwned + Default {
    /// Check what the types cannot say; the first problem, naming its key.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Merge the defaults, the file (if any), the environment and the flags, then validate.
pub fn load<C: Sections>(file: Option<&Path>, flags: &Flags) -> Result<C, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(C::default()));
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
    let config: C = figment.extract().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
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
