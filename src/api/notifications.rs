//! A job's health notifications as the ledger keeps them: what was sent (or is still being tried), when, and how
//! it went.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::jobs::page_size;
use super::{ApiQuery, AppState};
use crate::error::{Problem, Result};
use crate::notify::ledger::Notification;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One notification in the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOut {
    /// Unique; sent as `webhook-id`, so a receiver can drop a repeat.
    pub id: String,
    /// What it tells: `failure`, `recovery`, `missed`, `auto_paused` or `stale`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending` (not sent yet, or to be tried again), `delivered` or `failed` (given up).
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the change that caused it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it is (tried again) sent, while pending.
    pub next_attempt_at: DateTime<Utc>,
    /// When a 2xx answer came.
    pub delivered_at: Option<DateTime<Utc>>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// The JSON body sent (docs/health.md describes it).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl NotificationOut {
    fn of(notification: Notification) -> NotificationOut {
        NotificationOut {
            id: notification.id,
            kind: notification.kind,
            state: notification.state.as_str().to_string(),
            attempts: notification.attempts,
            created_at: notification.created_at,
            next_attempt_at: notification.next_attempt_at,
            delivered_at: notification.delivered_at,
            last_error: notification.last_error,
            payload: notification.payload,
        }
    }
}

/// A job's notifications, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationOut>,
}

/// A job's health notifications, newest first; also after it was removed
#[utoipa::path(get, path = "/v1/jobs/{id}/notifications", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200), NotificationsQuery),
    responses((status = 200, description = "The job's newest notifications", body = NotificationList), (status = 400, description = "Malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job with this id and no notifications about one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`limit` is out of range", body = Problem, content_type = "application/problem+json")))]
pub async fn list_notifications(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> Result<Json<NotificationList>> {
    let limit = page_size(query.limit)?;
    let notifications = state.scheduler.list_notifications(&id, limit).await?;
    Ok(Json(NotificationList { notifications: notifications.into_iter().map(NotificationOut::of).collect() }))
}
