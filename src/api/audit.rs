//! The audit trail over HTTP: who changed what (`GET /v1/audit`, `GET /v1/jobs/{id}/history`), and `ChangeBy`, the
//! extractor that tells a change handler who is making the change (the token's name) and why (`apsched-reason`).

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Actor;
use super::jobs::{decode_cursor_parts, encode_cursor_parts, micros_to_time, page_size};
use super::{ApiQuery, AppState};
use crate::audit::{ANONYMOUS, AuditAction, AuditCursor, AuditEntry, AuditQuery, Change, validate_reason};
use crate::error::{ApiError, Problem, Result};
use crate::trigger::time::{format_time, parse_time};

/// The request header whose value the audit records as the change's reason.
pub const REASON_HEADER: &str = "apsched-reason";

/// Who makes the change a request asks for, and why: the authenticated token's name (`anonymous` without tokens)
/// and the `apsched-reason` header. A reason is read as UTF-8, or byte for byte as ISO-8859-1 when it is not UTF-8
/// (what HTTP historically allowed in a header value); one that is too long is 422 naming the header.
pub struct ChangeBy(pub Change);

impl<S: Send + Sync> FromRequestParts<S> for ChangeBy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = parts.extensions.get::<Actor>().map_or_else(|| ANONYMOUS.to_string(), |actor| actor.0.clone());
        let reason = match parts.headers.get(REASON_HEADER) {
            None => None,
            Some(value) => {
                let bytes = value.as_bytes();
                let text = match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_string(),
                    Err(_) => bytes.iter().map(|&byte| char::from(byte)).collect(),
                };
                let text = text.trim();
                validate_reason(text).map_err(|message| ApiError::invalid(REASON_HEADER, message))?;
                (!text.is_empty()).then(|| text.to_string())
            }
        };
        Ok(ChangeBy(Change { actor, reason }))
    }
}

/// One recorded change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryOut {
    /// Unique; entries sort by time, then by id.
    pub id: String,
    /// When the change was made; RFC 3339 in the scheduler's zone.
    pub time: String,
    /// The name of the API token that made it, or `anonymous` when the API has no tokens.
    pub actor: String,
    /// What the change did.
    pub action: AuditAction,
    /// The job it changed; null for changes to no job (scheduler control).
    pub job_id: Option<String>,
    /// The request's `apsched-reason` header, if it had one.
    pub reason: Option<String>,
    /// The job before the change, as `GET /v1/jobs/{id}` showed it (secrets masked); null where it did not exist.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The job after the change, as `GET /v1/jobs/{id}` shows it (secrets masked); null where it no longer exists.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// A page of the audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntryOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Filters of the audit trail; a filter that does not parse is 422 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only changes at or after this time (RFC 3339, or naive in the scheduler's zone).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only changes by this token name (or `anonymous`).
    #[param(min_length = 1)]
    pub actor: Option<String>,
    /// Only changes of this action (`add`, `modify`, `pause`, …).
    #[param(value_type = Option<AuditAction>)]
    pub action: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl AuditEntryOut {
    fn of(entry: AuditEntry, tz: chrono_tz::Tz) -> AuditEntryOut {
        AuditEntryOut {
            time: format_time(entry.time, tz),
            id: entry.id,
            actor: entry.actor,
            action: entry.action,
            job_id: entry.job_id,
            reason: entry.reason,
            before: entry.before,
            after: entry.after,
        }
    }
}

/// The query the parameters ask for, one more than a page (to tell whether another follows).
fn audit_query(params: AuditParams, tz: chrono_tz::Tz) -> Result<(AuditQuery, usize)> {
    let limit = page_size(params.limit)?;
    let since = params
        .since
        .map(|since| parse_time("since", &since, tz).map_err(|err| ApiError::invalid("since", err.message)))
        .transpose()?;
    if params.actor.as_deref() == Some("") {
        return Err(ApiError::invalid("actor", "is empty; leave it out to see every actor"));
    }
    let action = params
        .action
        .map(|name| {
            AuditAction::parse(&name).ok_or_else(|| {
                let names: Vec<&str> = AuditAction::ALL.iter().map(|action| action.as_str()).collect();
                ApiError::invalid("action", format!("{name:?} is not an action; one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let after = params.cursor.as_deref().map(decode_audit_cursor).transpose()?;
    let query = AuditQuery { job_id: None, since, actor: params.actor, action, after, limit: limit + 1 };
    Ok((query, limit))
}

fn page(mut entries: Vec<AuditEntry>, limit: usize, tz: chrono_tz::Tz) -> AuditList {
    let next_cursor = (entries.len() > limit).then(|| encode_audit_cursor(&entries[limit - 1].cursor()));
    entries.truncate(limit);
    AuditList { entries: entries.into_iter().map(|entry| AuditEntryOut::of(entry, tz)).collect(), next_cursor }
}

fn encode_audit_cursor(cursor: &AuditCursor) -> String {
    encode_cursor_parts(&cursor.time.timestamp_micros().to_string(), &cursor.id)
}

fn decode_audit_cursor(cursor: &str) -> Result<AuditCursor> {
    let (time, id) = decode_cursor_parts(cursor)?;
    Ok(AuditCursor { time: micros_to_time(&time)?, id })
}

/// Who changed what, newest first
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, description = "A page of the audit trail", body = AuditList), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A filter does not parse; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn list_audit(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>> {
    let tz = state.scheduler.default_tz;
    let (query, limit) = audit_query(params, tz)?;
    let entries = state.scheduler.audit(&query).await?;
    Ok(Json(page(entries, limit, tz)))
}

/// A job's changes, newest first; also after it was removed
#[utoipa::path(get, path = "/v1/jobs/{id}/history", tag = "audit", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200), AuditParams),
    responses((status = 200, description = "A page of the job's audit trail", body = AuditList), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job with this id and no history of one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A filter does not parse; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn job_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>> {
    let tz = state.scheduler.default_tz;
    let (query, limit) = audit_query(params, tz)?;
    let entries = state.scheduler.job_history(&id, &query).await?;
    Ok(Json(page(entries, limit, tz)))
}

/// Every operation that changes something takes the `apsched-reason` header, and answers 422 when it is too long.
pub fn document(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{Parameter, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};

    // A preview and a calendar check are POSTs that compute and change nothing, so no reason is read or checked.
    const READS: [&str; 2] = ["preview", "check_calendar"];
    for item in spec.paths.paths.values_mut() {
        let changes = [&mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten();
        for operation in changes.filter(|operation| !READS.contains(&operation.operation_id.as_deref().unwrap_or(""))) {
            let schema =
                ObjectBuilder::new().schema_type(Type::String).max_length(Some(crate::audit::MAX_REASON_LENGTH));
            let mut reason = Parameter::new(REASON_HEADER);
            reason.parameter_in = ParameterIn::Header;
            reason.required = Required::False;
            reason.description = Some("Why: recorded in the audit trail with the change (`GET /v1/audit`).".into());
            reason.schema = Some(schema.into());
            operation.parameters.get_or_insert_with(Vec::new).push(reason.into());
            operation.responses.responses.entry("422".to_string()).or_insert_with(|| {
                Problem::openapi_response("A field breaks a rule; `field` names it (`apsched-reason`: too long)").into()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(since: Option<&str>, actor: Option<&str>, action: Option<&str>) -> AuditParams {
        AuditParams {
            since: since.map(str::to_string),
            actor: actor.map(str::to_string),
            action: action.map(str::to_string),
            limit: None,
            cursor: None,
        }
    }

    fn field_of(result: Result<(AuditQuery, usize)>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn filters_parse_and_bad_ones_name_their_parameter() {
        let tz = chrono_tz::Tz::UTC;
        let (query, limit) =
            audit_query(params(Some("2026-12-01T10:00:00+01:00"), Some("ci"), Some("pause")), tz).unwrap();
        assert_eq!(limit, 100);
        assert_eq!(query.limit, 101);
        assert_eq!(query.since.unwrap().to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert_eq!((query.actor.as_deref(), query.action), (Some("ci"), Some(AuditAction::Pause)));
        assert_eq!(field_of(audit_query(params(Some("yesterday"), None, None), tz)), "since");
        assert_eq!(field_of(audit_query(params(None, Some(""), None), tz)), "actor");
        assert_eq!(field_of(audit_query(params(None, None, Some("delete")), tz)), "action");
        let too_many = AuditParams { limit: Some(1001), ..params(None, None, None) };
        assert_eq!(field_of(audit_query(too_many, tz)), "limit");
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = AuditCursor {
            time: chrono::DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: "0190-x".into(),
        };
        assert_eq!(decode_audit_cursor(&encode_audit_cursor(&cursor)).unwrap(), cursor);
        assert!(decode_audit_cursor("garbage!").is_err());
    }
}
