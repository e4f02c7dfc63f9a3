//! OpenAPI links from an added job to the operations on it, so clients (and schemathesis's stateful phase) can
//! follow `POST /v1/jobs` → `/v1/jobs/{id}…` with the id it returned instead of guessing ids.

use utoipa::openapi::link::Link;
use utoipa::openapi::{OpenApi, RefOr};

/// The operations that take the added job's id, by their operation ids (the handlers' names).
const JOB_OPERATIONS: [&str; 7] =
    ["get_job", "modify_job", "remove_job", "pause_job", "resume_job", "run_job", "list_runs"];

pub fn document(spec: &mut OpenApi) {
    let Some(add) = spec.paths.paths.get_mut("/v1/jobs").and_then(|item| item.post.as_mut()) else { return };
    let Some(RefOr::T(created)) = add.responses.responses.get_mut("201") else { return };
    for operation in JOB_OPERATIONS {
        let link = Link::builder().operation_id(operation).parameter("id", "$response.body#/id").build();
        created.links.insert(operation.to_string(), RefOr::T(link));
    }
}
