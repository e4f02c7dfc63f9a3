//! Calendars through the REST API: previews skip what they exclude, a job's next run time follows a calendar
//! change, a calendar in use cannot be removed, bad calendars are refused naming the field, and replicas on one
//! PostgreSQL schema see each other's calendar changes.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::postgres::*;
use crate::harness::*;

const CHRISTMAS_ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//apsched test//EN\r\n\
    BEGIN:VEVENT\r\nUID:christmas@example.com\r\nSUMMARY:Christmas Day\r\nDTSTART;VALUE=DATE:20201225\r\n\
    DTEND;VALUE=DATE:20201226\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

async fn put(server: &Server, id: &str, calendar: Value) -> (StatusCode, Value) {
    server.send("PUT", &format!("/v1/calendars/{id}"), Some(calendar)).await
}

async fn preview(server: &Server, trigger: Value, now: &str, count: usize) -> Vec<String> {
    let (status, body) =
        server.post("/v1/triggers/preview", json!({"trigger": trigger, "now": now, "count": count})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["fire_times"].as_array().unwrap().iter().map(|time| time.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn previews_skip_excluded_dates_weekdays_and_a_yearly_ics_holiday() {
    let server = Server::start(memory_config()).await;
    let (status, stored) = put(
        &server,
        "us-holidays",
        json!({"timezone": "America/New_York", "ics": CHRISTMAS_ICS, "exclude": {"dates": ["2026-12-31"]},
               "base": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["id"], "us-holidays");
    let (status, _) = put(
        &server,
        "business-days",
        json!({"timezone": "America/New_York", "exclude": {"weekdays": ["sat", "sun"]}, "base": "us-holidays"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let daily =
        json!({"type": "cron", "hour": 9, "timezone": "America/New_York", "exclude_calendars": ["business-days"]});
    // Thu 24th; Fri 25th is Christmas; then the weekend; Thu 31st is excluded by date; Fri 1 January fires.
    assert_eq!(
        preview(&server, daily, "2026-12-24T00:00:00-05:00", 5).await,
        [
            "2026-12-24T09:00:00-05:00",
            "2026-12-28T09:00:00-05:00",
            "2026-12-29T09:00:00-05:00",
            "2026-12-30T09:00:00-05:00",
            "2027-01-01T09:00:00-05:00"
        ]
    );
    // The yearly rule goes on: Christmas 2030 (a Wednesday) is skipped too.
    let in_2030 = json!({"type": "interval", "days": 1, "start_date": "2030-12-23T09:00:00", "timezone": "America/New_York",
                         "exclude_calendars": ["us-holidays"]});
    assert_eq!(
        preview(&server, in_2030, "2030-12-24T00:00:00-05:00", 2).await,
        ["2030-12-24T09:00:00-05:00", "2030-12-26T09:00:00-05:00"]
    );

    let (status, body) = server
        .post(
            "/v1/calendars/business-days/check",
            json!({"times": ["2026-12-25T12:00:00", "2026-12-28T12:00:00-05:00"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"excluded": [true, false]}));

    let (status, list) = server.get("/v1/calendars").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["calendars"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["business-days", "us-holidays"]);
    let (status, one) = server.get("/v1/calendars/us-holidays").await;
    assert_eq!((status, one), (StatusCode::OK, stored));
    server.stop().await;
}

#[tokio::test]
async fn a_jobs_next_run_time_moves_when_its_calendar_changes_and_a_calendar_in_use_cannot_be_removed() {
    let server = Server::start(memory_config()).await;
    let (status, _) = put(&server, "maintenance", json!({"timezone": "UTC"})).await;
    assert_eq!(status, StatusCode::OK);
    let start = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let first = start.format("%Y-%m-%dT09:00:00Z").to_string();
    let trigger = json!({"type": "interval", "days": 1, "start_date": first, "timezone": "UTC",
                         "exclude_calendars": ["maintenance"]});
    let (status, job) = server
        .post("/v1/jobs", json!({"id": "report", "trigger": trigger, "action": {"url": "http://127.0.0.1:9/"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["next_run_time"], json!(first.replace('Z', "+00:00")));

    let day = start.format("%Y-%m-%d").to_string();
    let (status, _) = put(&server, "maintenance", json!({"timezone": "UTC", "exclude": {"dates": [day]}})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, job) = server.get("/v1/jobs/report").await;
    let next_day = (start + chrono::TimeDelta::days(1)).format("%Y-%m-%dT09:00:00+00:00").to_string();
    assert_eq!(job["next_run_time"], json!(next_day));
    assert_eq!(job["trigger"]["exclude_calendars"], json!(["maintenance"]));

    let (status, problem) = server.send("DELETE", "/v1/calendars/maintenance", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("report"), "{problem}");

    // Without the calendar the job goes back to its own schedule.
    let plain = json!({"trigger": {"type": "interval", "days": 1, "start_date": first, "timezone": "UTC"}});
    let (status, job) = server.send("PATCH", "/v1/jobs/report", Some(plain)).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let (status, _) = server.send("DELETE", "/v1/calendars/maintenance", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get("/v1/calendars/maintenance").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn bad_calendars_and_unknown_calendars_are_422_naming_the_field() {
    let server = Server::start(memory_config()).await;
    assert_eq!(put(&server, "a", json!({})).await.0, StatusCode::OK);
    assert_eq!(put(&server, "b", json!({"base": "a"})).await.0, StatusCode::OK);
    let cases = [
        ("a", json!({"base": "b"}), "base"),
        ("c", json!({"base": "nope"}), "base"),
        ("c", json!({"id": "d"}), "id"),
        ("c", json!({"timezone": "Mars/Base"}), "timezone"),
        ("c", json!({"exclude": {"dates": ["2026-02-30"]}}), "exclude.dates[0]"),
        ("c", json!({"exclude": {"ranges": [{"start": "2026-01-02", "end": "2026-01-01"}]}}), "exclude.ranges[0].end"),
        ("c", json!({"exclude": {"weekdays": ["someday"]}}), "exclude.weekdays[0]"),
        ("c", json!({"exclude": {"holidays": []}}), "exclude.holidays"),
        (
            "c",
            json!({"ics": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:2026\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"}),
            "ics",
        ),
    ];
    for (id, body, field) in cases {
        let (status, problem) = put(&server, id, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (_, list) = server.get("/v1/calendars").await;
    assert_eq!(list["calendars"].as_array().unwrap().len(), 2, "nothing changed");
    assert_eq!(
        list["calendars"][0],
        json!({"id": "a", "timezone": "UTC", "exclude": {"dates": [], "ranges": [], "weekdays": []}})
    );

    let trigger = json!({"type": "or", "triggers": [{"type": "cron", "hour": 1, "exclude_calendars": ["a", "zzz"]}]});
    let (status, problem) =
        server.post("/v1/jobs", json!({"trigger": trigger, "action": {"url": "http://127.0.0.1:9/"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "trigger.triggers[0].exclude_calendars[1]", "{problem}");
    let (status, problem) = server
        .post("/v1/triggers/preview", json!({"trigger": {"type": "cron", "hour": 1, "exclude_calendars": ["zzz"]}}))
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("trigger.exclude_calendars[0]"))
    );
    let (status, problem) = server.post("/v1/calendars/a/check", json!({"times": ["2026-01-01", "later"]})).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("times[1]")));
    let (status, _) = server.post("/v1/calendars/nope/check", json!({"times": []})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = server.send("DELETE", "/v1/calendars/a", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "the base of b: {problem}");
    server.stop().await;
}

/// Polls `done` until it holds (a replica hears of another's change through a notification).
async fn eventually<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replicas_on_one_postgres_schema_see_each_others_calendar_changes() {
    let schema = ScratchSchema::create().await;
    let first = Server::start(postgres_config(schema.url(), 4)).await;
    let second = Server::start(postgres_config(schema.url(), 4)).await;
    assert_eq!(put(&first, "closed", json!({"timezone": "UTC"})).await.0, StatusCode::OK);
    // A calendar another replica has just added is found at once.
    let daily = json!({"type": "cron", "hour": 9, "timezone": "UTC", "exclude_calendars": ["closed"]});
    assert_eq!(preview(&second, daily.clone(), "2030-06-01T00:00:00Z", 1).await, ["2030-06-01T09:00:00+00:00"]);

    let closed = json!({"timezone": "UTC", "exclude": {"dates": ["2030-06-01"]}});
    assert_eq!(put(&first, "closed", closed).await.0, StatusCode::OK);
    eventually(
        || {
            let (second, daily) = (&second, daily.clone());
            async move { preview(second, daily, "2030-06-01T00:00:00Z", 1).await == ["2030-06-02T09:00:00+00:00"] }
        },
        "the second replica uses the changed calendar",
    )
    .await;
    let (status, problem) = second.post("/v1/calendars/closed/check", json!({"times": ["2030-06-01T12:00:00Z"]})).await;
    assert_eq!((status, problem), (StatusCode::OK, json!({"excluded": [true]})));
    first.stop().await;
    second.stop().await;
}
