//! Examples in the OpenAPI document for the types a client meets first: a job to add, a job as returned, a
//! trigger and a problem. Generators show them in docs, and schemathesis sends the request ones as they are.

use serde_json::{Value, json};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

fn trigger() -> Value {
    json!({"type": "cron", "hour": "2", "minute": 30, "timezone": "Europe/Paris"})
}

fn job_in() -> Value {
    json!({
        "id": "nightly-report",
        "name": "Nightly report",
        "trigger": trigger(),
        "action": {
            "method": "POST",
            "url": "http://127.0.0.1:8080/hooks/report",
            "headers": {"authorization": "Bearer example-token"},
            "json": {"report": "daily"},
            "timeout_seconds": 10,
            "retry": {"max_attempts": 3, "backoff_seconds": 2}
        },
        "max_instances": 1,
        "misfire_grace_time": 300
    })
}

fn job_out() -> Value {
    json!({
        "id": "nightly-report",
        "name": "Nightly report",
        "trigger": trigger(),
        "action": {
            "type": "http",
            "method": "POST",
            "url": "http://127.0.0.1:8080/hooks/report",
            "headers": {"authorization": "********"},
            "json": {"report": "daily"},
            "timeout_seconds": 10,
            "retry": {"max_attempts": 3, "backoff_seconds": 2, "max_backoff_seconds": 300}
        },
        "coalesce": true,
        "max_instances": 1,
        "misfire_grace_time": 300,
        "executor": "default",
        "jobstore": "default",
        "next_run_time": "2026-03-02T02:30:00+01:00",
        "paused": false,
        "created_at": "2026-03-01T11:04:05.120+01:00",
        "updated_at": "2026-03-01T11:04:05.120+01:00"
    })
}

fn problem() -> Value {
    json!({
        "type": "about:blank",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "trigger.hour: 25 is out of range 0–23",
        "field": "trigger.hour"
    })
}

pub fn document(spec: &mut OpenApi) {
    let Some(components) = spec.components.as_mut() else { return };
    for (name, example) in
        [("JobIn", job_in()), ("JobOut", job_out()), ("TriggerSpec", trigger()), ("Problem", problem())]
    {
        match components.schemas.get_mut(name) {
            Some(RefOr::T(Schema::Object(object))) => object.examples = vec![example],
            Some(RefOr::T(Schema::OneOf(one_of))) => one_of.examples = vec![example],
            _ => {}
        }
    }
}
