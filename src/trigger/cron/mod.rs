//! `cron`. (Skeleton: the trigger-engine work fills this in.)
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TriggerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crontab: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CronTrigger {
    pub timezone: Tz,
    pub jitter: Option<f64>,
}

impl CronSpec {
    pub fn compile(&self, _default_tz: Tz) -> Result<CronTrigger, TriggerError> {
        Err(TriggerError::new("type", "cron is not built yet"))
    }
}

impl CronTrigger {
    pub fn next_fire_time(&self, _previous: Option<DateTime<Utc>>, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}
