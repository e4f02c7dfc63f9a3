//! `POST /v1/triggers/preview`: the next fire times of a trigger, with apsched's preview semantics (see `trigger::preview`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, AppState};
use crate::error::{ApiError, Problem, Result};
use crate::trigger::time::{format_time, parse_time};
use crate::trigger::{self, TriggerSpec};

/// `count` is 1–1000, default 10.
const DEFAULT_PREVIEW_COUNT: usize = 10;

/// A trigger to preview.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// The trigger, as a job would have it.
    pub trigger: TriggerSpec,
    /// 1–1000, default 10.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 1, maximum = 1000)]
    pub count: Option<usize>,
    /// Preview from this instant (RFC 3339, or naive in the trigger's zone); default now.
    pub now: Option<String>,
}

/// The trigger's next fire times.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PreviewOut {
    /// RFC 3339 in the trigger's zone; fewer than `count` when the trigger ends.
    pub fire_times: Vec<String>,
}

/// Preview a trigger's next fire times
#[utoipa::path(post, path = "/v1/triggers/preview", tag = "triggers", request_body = PreviewIn,
    responses((status = 200, description = "The next fire times", body = PreviewOut), (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn preview(State(state): State<AppState>, ApiJson(input): ApiJson<PreviewIn>) -> Result<Json<PreviewOut>> {
    let count = input.count.unwrap_or(DEFAULT_PREVIEW_COUNT);
    if !(1..=trigger::MAX_PREVIEW_COUNT).contains(&count) {
        return Err(ApiError::invalid("count", format!("{count} is out of range 1–{}", trigger::MAX_PREVIEW_COUNT)));
    }
    let default_tz = state.scheduler.default_tz;
    let to_api = |err: trigger::TriggerError| ApiError::invalid(format!("trigger.{}", err.field), err.message);
    // `now` may be naive, read in the trigger's zone: compile once for the zone, then resolve against `now`.
    let zone = input.trigger.timezone(default_tz);
    let now = match &input.now {
        Some(now) => parse_time("now", now, zone).map_err(|err| ApiError::invalid(err.field, err.message))?,
        None => state.scheduler.now(),
    };
    let spec = input.trigger.resolve(default_tz, now).map_err(to_api)?;
    let calendars = state.scheduler.calendars_for(&spec.calendar_ids()).await?;
    let compiled = spec.compile_with(default_tz, calendars.as_ref()).map_err(to_api)?;
    let tz = compiled.timezone();
    let fire_times = trigger::preview(&compiled, now, count).into_iter().map(|t| format_time(t, tz)).collect();
    Ok(Json(PreviewOut { fire_times }))
}
