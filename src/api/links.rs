//! OpenAPI links from an added job (or a saved calendar) to the operations on it, so clients (and schemathesis's
//! stateful phase) can follow `POST /v1/jobs` → `/v1/jobs/{id}…` with the id it returned instead of guessing ids.

use utoipa::openapi::link::Link;
use utoipa::openapi::{OpenApi, RefOr};

/// The operations that take the added job's id, by their operation ids (the handlers' names).
const JOB_OPERATIONS: [&str; 9] = [
    "get_job",
    "modify_job",
    "remove_job",
    "pause_job",
    "resume_job",
    "run_job",
    "list_runs",
    "start_backfill",
    "list_backfills",
];

/// The operations that take a started backfill's id.
const BACKFILL_OPERATIONS: [&str; 2] = ["get_backfill", "cancel_backfill"];

/// The operations that take a saved calendar's id.
const CALENDAR_OPERATIONS: [&str; 3] = ["get_calendar", "remove_calendar", "check_calendar"];

pub fn document(spec: &mut OpenApi) {
    link(spec, "/v1/jobs", "201", &JOB_OPERATIONS, |item| item.post.as_mut());
    link(spec, "/v1/calendars/{id}", "200", &CALENDAR_OPERATIONS, |item| item.put.as_mut());
    link(spec, "/v1/jobs/{id}/backfill", "202", &BACKFILL_OPERATIONS, |item| item.post.as_mut());
}

/// Link the `status` answer of the operation `pick` finds at `path` to `operations`, passing the answer's id.
fn link(
    spec: &mut OpenApi,
    path: &str,
    status: &str,
    operations: &[&str],
    pick: impl FnOnce(&mut utoipa::openapi::PathItem) -> Option<&mut utoipa::openapi::path::Operation>,
) {
    let Some(operation) = spec.paths.paths.get_mut(path).and_then(pick) else { return };
    let Some(RefOr::T(answer)) = operation.responses.responses.get_mut(status) else { return };
    for target in operations {
        let link = Link::builder().operation_id(*target).parameter("id", "$response.body#/id").build();
        answer.links.insert(target.to_string(), RefOr::T(link));
    }
}
