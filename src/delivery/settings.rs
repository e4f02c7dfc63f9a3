//! `[webhooks]`: how deliveries are signed, where they may go, and how fast.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::policy::TargetPolicy;
use crate::action::signing::SigningKey;

/// The `[webhooks]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Standard Webhooks signing secret (`whsec_…`). Redacted in Debug output and never serialised.
    #[serde(default, skip_serializing)]
    pub signing_secret: Option<SecretString>,
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

impl WebhookSettings {
    /// An error is the key at fault (`allow[2]`, `signing_secret`, …) and what is wrong with it, never the secret.
    pub fn validate(&self) -> Result<(), (String, String)> {
        TargetPolicy::from_config(self)?;
        for (key, rate) in [
            ("rate_limit_per_second", self.rate_limit_per_second),
            ("per_target_rate_limit_per_second", self.per_target_rate_limit_per_second),
        ] {
            if let Some(rate) = rate
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err((key.into(), "must be a positive number".into()));
            }
        }
        if let Some(secret) = &self.signing_secret {
            SigningKey::parse(secret.expose_secret()).map_err(|message| ("signing_secret".to_string(), message))?;
        }
        Ok(())
    }
}
