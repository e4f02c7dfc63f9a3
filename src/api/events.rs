//! `GET /v1/events`: the scheduler's events as server-sent events (`event: <kind>`, `data: <json>`), filtered by
//! kind and job id. A client that falls behind gets a `lagged` notice saying how many events it lost; it never
//! slows the scheduler. The stream ends when the server shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono_tz::Tz;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::jobs::{JobOut, RunOut};
use super::{ApiQuery, AppState};
use crate::error::{ApiError, Problem, Result};
use crate::scheduler::events::{Event, EventKind, Subject};
use crate::trigger::time::format_time;

/// A comment line this often keeps proxies and clients from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The SSE event name of the notice sent to a client that fell behind.
pub const LAGGED: &str = "lagged";

/// Which events to stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated kinds to receive, e.g. `job_executed,job_error`; all when absent.
    pub kind: Option<String>,
    /// Only events about this job (scheduler-wide events are left out).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub job_id: Option<String>,
}

/// The `data` of one event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventOut {
    /// What happened.
    pub kind: EventKind,
    /// When it happened, in the scheduler's zone.
    pub time: String,
    /// The job it happened to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The store of that job, or the store emptied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobstore: Option<String>,
    /// `job_added`, `job_modified`: the job as the API shows it (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobOut>,
    /// `job_submitted`, `job_executed`, `job_error`, `job_missed`, `job_max_instances`: the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunOut>,
    /// `all_jobs_removed`, `jobs_removed`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    /// `jobs_modified`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
    /// `jobs_modified`, `jobs_removed`: the selector that chose the jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

impl EventOut {
    pub fn of(event: &Event, default_tz: Tz) -> EventOut {
        let mut out = EventOut {
            kind: event.kind,
            time: format_time(event.time, default_tz),
            job_id: event.job_id().map(str::to_string),
            jobstore: None,
            job: None,
            run: None,
            removed: None,
            modified: None,
            selector: None,
        };
        match &event.subject {
            Subject::Scheduler => {}
            Subject::Job(job) => {
                out.jobstore = Some(job.jobstore.clone());
                out.job = Some(JobOut::of(job, default_tz));
            }
            Subject::RemovedJob { jobstore, .. } => out.jobstore = Some(jobstore.clone()),
            Subject::Run { run, jobstore } => {
                out.jobstore = Some(jobstore.clone());
                out.run = Some(RunOut::of(run));
            }
            Subject::AllJobs { jobstore, removed } => {
                out.jobstore = jobstore.clone();
                out.removed = Some(*removed);
            }
            Subject::SelectedJobs { selector, jobstore, count } => {
                out.jobstore = Some(jobstore.clone());
                out.selector = Some(selector.clone());
                match event.kind {
                    EventKind::JobsModified => out.modified = Some(*count),
                    _ => out.removed = Some(*count),
                }
            }
        }
        out
    }
}

/// Which events a client asked for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    kinds: Option<HashSet<EventKind>>,
    job_id: Option<String>,
}

impl Filter {
    pub fn parse(query: EventsQuery) -> Result<Filter> {
        let kinds = match query.kind.as_deref() {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(|name| {
                        EventKind::parse(name).ok_or_else(|| {
                            let known: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
                            ApiError::invalid("kind", format!("{name:?} is not an event kind; known: {known:?}"))
                        })
                    })
                    .collect::<Result<HashSet<_>>>()?,
            ),
        };
        Ok(Filter { kinds, job_id: query.job_id })
    }

    fn matches(&self, event: &Event) -> bool {
        self.kinds.as_ref().is_none_or(|kinds| kinds.contains(&event.kind))
            && self.job_id.as_deref().is_none_or(|wanted| event.job_id() == Some(wanted))
    }
}

enum Next {
    Event(Event),
    Lagged(u64),
    End,
}

/// The SSE stream of `events`: a first comment (so the client knows it is subscribed), then every matching event,
/// a `lagged` notice where events were lost, and the end once `stop` is cancelled and what was already published
/// has been sent.
pub fn event_stream(
    events: broadcast::Receiver<Event>,
    filter: Filter,
    stop: CancellationToken,
    default_tz: Tz,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    let subscribed = futures::stream::once(async { Ok(SseEvent::default().comment("subscribed")) });
    let events = futures::stream::unfold((events, false), move |(mut events, mut stopping)| {
        let filter = filter.clone();
        let stop = stop.clone();
        async move {
            loop {
                let next = if stopping {
                    match events.try_recv() {
                        Ok(event) => Next::Event(event),
                        Err(TryRecvError::Lagged(missed)) => Next::Lagged(missed),
                        Err(_) => Next::End,
                    }
                } else {
                    tokio::select! {
                        biased;
                        received = events.recv() => match received {
                            Ok(event) => Next::Event(event),
                            Err(RecvError::Lagged(missed)) => Next::Lagged(missed),
                            Err(RecvError::Closed) => Next::End,
                        },
                        _ = stop.cancelled() => {
                            // Drain what was published before the stop (scheduler_shutdown among it), then end.
                            stopping = true;
                            continue;
                        }
                    }
                };
                let sse = match next {
                    Next::Event(event) if filter.matches(&event) => {
                        let data = serde_json::to_string(&EventOut::of(&event, default_tz)).unwrap_or_default();
                        SseEvent::default().event(event.kind.as_str()).data(data)
                    }
                    Next::Event(_) => continue,
                    Next::Lagged(missed) => {
                        tracing::warn!(missed, "an event stream client fell behind");
                        SseEvent::default().event(LAGGED).data(serde_json::json!({ "missed": missed }).to_string())
                    }
                    Next::End => return None,
                };
                return Some((Ok(sse), (events, stopping)));
            }
        }
    });
    futures::StreamExt::chain(subscribed, events)
}

/// Stream the scheduler's events (server-sent events)
///
/// Each event is `event: <kind>` with `data: <EventOut as JSON>`; kinds are APScheduler's event constants in lower
/// case. A client that falls behind receives `event: lagged` with `data: {"missed": N}`. Comment lines keep an idle
/// stream alive.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of events", body = EventOut, content_type = "text/event-stream"),
        (status = 400, description = "An unknown or malformed query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown event kind; `field` names the parameter", body = Problem, content_type = "application/problem+json")))]
pub async fn stream_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let filter = Filter::parse(query)?;
    // Subscribed before answering, so nothing published after the client has its response is missed.
    let events = state.scheduler.events.subscribe();
    let stream = event_stream(events, filter, state.streams_stop.clone(), state.scheduler.default_tz);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::events::EventBus;
    use axum::response::IntoResponse;
    use chrono::Utc;

    /// The wire text of a stream that has been stopped, so it ends.
    async fn wire(stream: impl Stream<Item = std::result::Result<SseEvent, Infallible>> + Send + 'static) -> String {
        let body = Sse::new(stream).into_response().into_body();
        String::from_utf8(axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec()).unwrap()
    }

    fn event_names(text: &str) -> Vec<&str> {
        text.lines().filter_map(|line| line.strip_prefix("event: ")).collect()
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_a_notice_then_the_newest_events() {
        let bus = EventBus::new(4);
        let stop = CancellationToken::new();
        let stream = event_stream(bus.subscribe(), Filter::default(), stop.clone(), Tz::UTC);
        for _ in 0..10 {
            bus.publish(EventKind::SchedulerPaused, Utc::now(), Subject::Scheduler);
        }
        stop.cancel();
        let text = wire(stream).await;
        assert!(text.starts_with(": subscribed\n"), "{text}");
        assert_eq!(
            event_names(&text),
            ["lagged", "scheduler_paused", "scheduler_paused", "scheduler_paused", "scheduler_paused"]
        );
        assert!(text.contains("data: {\"missed\":6}"), "{text}");
    }

    #[tokio::test]
    async fn events_published_before_the_stop_are_still_sent_and_filters_apply() {
        let bus = EventBus::new(16);
        let stop = CancellationToken::new();
        let filter =
            Filter::parse(EventsQuery { kind: Some("scheduler_shutdown, job_removed".into()), job_id: None }).unwrap();
        let stream = event_stream(bus.subscribe(), filter, stop.clone(), Tz::UTC);
        bus.publish(EventKind::SchedulerPaused, Utc::now(), Subject::Scheduler);
        let removed = Subject::RemovedJob { job_id: "j".into(), jobstore: "default".into() };
        bus.publish(EventKind::JobRemoved, Utc::now(), removed);
        bus.publish(EventKind::SchedulerShutdown, Utc::now(), Subject::Scheduler);
        stop.cancel();
        let text = wire(stream).await;
        assert_eq!(event_names(&text), ["job_removed", "scheduler_shutdown"]);
        let data: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        assert_eq!(data[0]["job_id"], "j");
        assert_eq!(data[0]["jobstore"], "default");
        assert_eq!(data[1]["kind"], "scheduler_shutdown");
    }

    #[tokio::test]
    async fn a_job_filter_keeps_only_that_jobs_events() {
        let bus = EventBus::new(16);
        let stop = CancellationToken::new();
        let filter = Filter::parse(EventsQuery { kind: None, job_id: Some("mine".into()) }).unwrap();
        let stream = event_stream(bus.subscribe(), filter, stop.clone(), Tz::UTC);
        for job_id in ["other", "mine"] {
            let subject = Subject::RemovedJob { job_id: job_id.into(), jobstore: "default".into() };
            bus.publish(EventKind::JobRemoved, Utc::now(), subject);
        }
        bus.publish(EventKind::SchedulerPaused, Utc::now(), Subject::Scheduler);
        stop.cancel();
        let text = wire(stream).await;
        assert_eq!(event_names(&text), ["job_removed"]);
        assert!(text.contains("\"job_id\":\"mine\""), "{text}");
    }

    #[test]
    fn an_unknown_kind_is_refused_naming_the_parameter() {
        let err = Filter::parse(EventsQuery { kind: Some("job_added,job_exploded".into()), job_id: None }).unwrap_err();
        assert!(
            matches!(&err, ApiError::Invalid { field, message } if field == "kind" && message.contains("job_exploded"))
        );
    }
}
