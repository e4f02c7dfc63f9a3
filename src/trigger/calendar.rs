//! `calendarinterval`. (Skeleton: the trigger-engine work fills this in.)
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TriggerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarIntervalSpec {
    #[serde(default)]
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct CalendarIntervalTrigger {
    pub timezone: Tz,
    pub jitter: Option<f64>,
}

impl CalendarIntervalSpec {
    pub fn resolve(self, _default_tz: Tz, _now: DateTime<Utc>) -> Result<Self, TriggerError> {
        Ok(self)
    }
    pub fn compile(&self, _default_tz: Tz) -> Result<CalendarIntervalTrigger, TriggerError> {
        Err(TriggerError::new("type", "calendarinterval is not built yet"))
    }
}

impl CalendarIntervalTrigger {
    pub fn next_fire_time(&self, _previous: Option<DateTime<Utc>>, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}
