//! `and` / `or`. (Skeleton: the trigger-engine work fills this in.)
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{TriggerError, TriggerSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CombineSpec {
    #[schema(no_recursion)]
    pub triggers: Vec<TriggerSpec>,
}

#[derive(Debug, Clone)]
pub struct CombiningTrigger {
    pub timezone: Tz,
    pub jitter: Option<f64>,
}

impl CombineSpec {
    pub fn resolve(self, _default_tz: Tz, _now: DateTime<Utc>) -> Result<Self, TriggerError> {
        Ok(self)
    }
    pub fn compile(&self, _default_tz: Tz, _mode: Mode) -> Result<CombiningTrigger, TriggerError> {
        Err(TriggerError::new("type", "and/or are not built yet"))
    }
}

impl CombiningTrigger {
    pub fn next_fire_time(&self, _previous: Option<DateTime<Utc>>, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}
