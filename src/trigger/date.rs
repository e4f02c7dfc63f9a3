//! `date`: fires once. (Skeleton: the trigger-engine work fills this in.)
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TriggerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateSpec {
    pub run_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DateTrigger {
    pub run_date: DateTime<Utc>,
    pub timezone: Tz,
}

impl DateSpec {
    pub fn compile(&self, default_tz: Tz) -> Result<DateTrigger, TriggerError> {
        let timezone = super::time::parse_timezone(self.timezone.as_deref(), default_tz)?;
        let run_date = super::time::parse_time("run_date", &self.run_date, timezone)?;
        Ok(DateTrigger { run_date, timezone })
    }
}

impl DateTrigger {
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        previous.is_none().then_some(self.run_date)
    }
}
