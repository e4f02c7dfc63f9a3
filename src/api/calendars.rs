//! `/v1/calendars…`: create or replace, list, get, remove and check calendars, the named exclusions triggers name
//! in `exclude_calendars`. Each handler extracts, calls the scheduler's calendar operation, and converts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::ChangeBy;
use super::{ApiJson, AppState};
use crate::calendar::Calendar;
use crate::error::{ApiError, Problem, Result};
use crate::trigger::time::parse_time;

/// Every calendar.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CalendarList {
    /// By id.
    pub calendars: Vec<Calendar>,
}

/// Times to check against a calendar.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// RFC 3339, or naive date-times read in the calendar's zone; at most 1000.
    #[schema(example = json!(["2026-12-25T09:00:00", "2026-12-28T09:00:00-05:00"]))]
    pub times: Vec<String>,
}

/// Whether each time is excluded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckOut {
    /// One per time asked about, in order: `true` when it falls in an excluded period.
    pub excluded: Vec<bool>,
}

fn no_such_calendar(id: &str) -> ApiError {
    ApiError::NotFound(format!("no calendar with id {id:?}"))
}

/// Create or replace a calendar
///
/// Jobs whose triggers name the calendar (or a calendar that has it as its `base`) get their next run time
/// recomputed.
#[utoipa::path(put, path = "/v1/calendars/{id}", tag = "calendars", params(("id" = String, Path, description = "The calendar's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)), request_body = Calendar,
    responses((status = 200, description = "The calendar as stored, its zone filled in", body = Calendar),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule (an unknown or cyclic `base` included); `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn put_calendar(
    State(state): State<AppState>,
    ChangeBy(change): ChangeBy,
    Path(id): Path<String>,
    ApiJson(mut calendar): ApiJson<Calendar>,
) -> Result<Json<Calendar>> {
    if !calendar.id.is_empty() && calendar.id != id {
        return Err(ApiError::invalid("id", format!("{:?} differs from the path's id {id:?}", calendar.id)));
    }
    calendar.id = id;
    Ok(Json(state.scheduler.by(change).put_calendar(calendar).await?))
}

/// List calendars
#[utoipa::path(get, path = "/v1/calendars", tag = "calendars",
    responses((status = 200, description = "Every calendar, by id", body = CalendarList)))]
pub async fn list_calendars(State(state): State<AppState>) -> Result<Json<CalendarList>> {
    Ok(Json(CalendarList { calendars: state.scheduler.list_calendars().await? }))
}

/// Get a calendar
#[utoipa::path(get, path = "/v1/calendars/{id}", tag = "calendars", params(("id" = String, Path, description = "The calendar's id")),
    responses((status = 200, description = "The calendar", body = Calendar),
        (status = 404, description = "No calendar with this id", body = Problem, content_type = "application/problem+json")))]
pub async fn get_calendar(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Calendar>> {
    Ok(Json(state.scheduler.get_calendar(&id).await?.ok_or_else(|| no_such_calendar(&id))?))
}

/// Remove a calendar
///
/// Refused (409) while a job's trigger names it or another calendar has it as its `base`.
#[utoipa::path(delete, path = "/v1/calendars/{id}", tag = "calendars", params(("id" = String, Path, description = "The calendar's id")),
    responses((status = 204, description = "The calendar is removed"),
        (status = 404, description = "No calendar with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A job or another calendar uses it", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_calendar(
    State(state): State<AppState>,
    ChangeBy(change): ChangeBy,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.scheduler.by(change).remove_calendar(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Check times against a calendar
#[utoipa::path(post, path = "/v1/calendars/{id}/check", tag = "calendars", params(("id" = String, Path, description = "The calendar's id")), request_body = CheckIn,
    responses((status = 200, description = "Whether each time is excluded", body = CheckOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No calendar with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A time does not parse (`field` names it), or there are more than 1000", body = Problem, content_type = "application/problem+json")))]
pub async fn check_calendar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CheckIn>,
) -> Result<Json<CheckOut>> {
    let scheduler = &state.scheduler;
    let calendar = scheduler.get_calendar(&id).await?.ok_or_else(|| no_such_calendar(&id))?;
    let zone = calendar.zone(scheduler.default_tz).map_err(|err| ApiError::Internal(err.to_string()))?;
    let times = (input.times.iter().enumerate())
        .map(|(index, time)| {
            parse_time(&format!("times[{index}]"), time, zone).map_err(|err| ApiError::invalid(err.field, err.message))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(CheckOut { excluded: scheduler.check_calendar(&id, &times).await? }))
}
