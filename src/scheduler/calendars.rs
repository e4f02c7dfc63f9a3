//! Calendar operations (`put_calendar`, `remove_calendar`, `check_calendar`, …) and the compiled calendars the
//! planner uses. Calendars live in the default job store; the scheduler keeps them compiled (`CalendarSet`) and
//! reads them again only when the store's calendar version moves. On a shared store another replica's change
//! wakes this one (the store's change notifications), which marks the set stale, so the next round of the loop
//! reads the new calendars before it plans a fire; a periodic check covers a notification lost on the way.
//!
//! A change recomputes the next run time of every job whose trigger names the calendar, directly or through a
//! `base` chain: the first fire time from its stored next run time (or now, if that is later) that the
//! calendars allow. A job left with no fire time is removed, as one whose trigger ended.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::Scheduler;
use super::error::{Error, Result};
use super::events::{EventKind, Subject};
use crate::calendar::{self, Calendar, CalendarLookup, CalendarSet, CompiledCalendar};
use crate::job::{self, Job};
use crate::store::{JobStore, StoreError};

/// A shared store's calendars are compared with the store at least this often, should a change notification be
/// lost (a notification is normally what tells).
const CALENDAR_RECHECK: Duration = Duration::from_secs(60);
/// A refused removal names at most this many of the jobs that use the calendar.
const MAX_NAMED_USERS: usize = 10;
/// Times one check may ask about: a preview's worth and then some.
pub const MAX_CHECK_TIMES: usize = 1000;

/// The compiled calendars of a scheduler and when to read them again.
pub(crate) struct Calendars {
    current: RwLock<Arc<CalendarSet>>,
    /// Set when another process may have changed the calendars: the next refresh reads the store's version.
    stale: AtomicBool,
    last_check: Mutex<Instant>,
    /// Changes take turns, so a base cycle cannot slip between two changes' checks and a recompute sees the
    /// calendars its change made.
    changing: tokio::sync::Mutex<()>,
}

impl Default for Calendars {
    fn default() -> Self {
        Calendars {
            current: RwLock::new(Arc::new(CalendarSet::default())),
            // Nothing is read until the first refresh.
            stale: AtomicBool::new(true),
            last_check: Mutex::new(Instant::now()),
            changing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Calendars {
    /// Another process may have changed the calendars.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    fn current(&self) -> Arc<CalendarSet> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Unknown calendars compile as excluding nothing: the planner must plan a stored job even when a replica's
/// calendars lag a moment behind the store (they were checked when the job was saved), and says so in the log.
pub(crate) struct Lenient<'a> {
    pub(crate) set: &'a CalendarSet,
    pub(crate) missing: &'a AtomicBool,
}

impl CalendarLookup for Lenient<'_> {
    fn calendar(&self, id: &str) -> Option<Arc<CompiledCalendar>> {
        Some(self.set.calendar(id).unwrap_or_else(|| {
            tracing::warn!(calendar = %id, "a job names a calendar this scheduler does not know; it excludes nothing until the calendars are read again");
            self.missing.store(true, Ordering::SeqCst);
            Arc::new(CompiledCalendar::default())
        }))
    }
}

fn calendar_error(err: calendar::CalendarError) -> Error {
    Error::invalid(err.field, err.message)
}

fn no_such_calendar(id: &str) -> Error {
    Error::NotFound(format!("no calendar with id {id:?}"))
}

/// The calendars whose exclusions include `changed`'s: itself and every calendar with it in its base chain.
fn affected_by(changed: &str, stored: &HashMap<String, Calendar>) -> HashSet<String> {
    let mut affected = HashSet::from([changed.to_string()]);
    for id in stored.keys() {
        let mut next = Some(id.as_str());
        let mut steps = 0;
        while let Some(current) = next {
            if current == changed {
                affected.insert(id.clone());
                break;
            }
            steps += 1;
            if steps > calendar::MAX_BASE_DEPTH {
                break;
            }
            next = stored.get(current).and_then(|calendar| calendar.base.as_deref());
        }
    }
    affected
}

impl Scheduler {
    /// Where calendars are kept: the default job store.
    fn calendar_store(&self) -> Result<&Arc<dyn JobStore>> {
        self.store(self.default_jobstore()).ok_or_else(|| Error::NotFound("no default job store".to_string()))
    }

    /// The compiled calendars as last read.
    pub fn calendar_set(&self) -> Arc<CalendarSet> {
        self.calendars.current()
    }

    /// Read the calendars again if they may have changed (`force`: ask the store in any case); the set, current as
    /// of this call. Reading them is one query for the version; the calendars themselves only when it moved.
    pub async fn refresh_calendars(&self, force: bool) -> Result<Arc<CalendarSet>> {
        let due = {
            let last = self.calendars.last_check.lock().unwrap_or_else(|p| p.into_inner());
            last.elapsed() >= CALENDAR_RECHECK
        };
        // Cleared before reading, so a change notified while this reads marks it stale again.
        let stale = self.calendars.stale.swap(false, Ordering::SeqCst);
        if !(force || stale || due) {
            return Ok(self.calendars.current());
        }
        let read = async {
            let store = self.calendar_store()?;
            let version = store.calendar_version().await?;
            let current = self.calendars.current();
            // Version 0 is a store whose calendars never changed: none, as the empty set starts.
            if version == current.version {
                return Ok(current);
            }
            let calendars = store.list_calendars().await?;
            let set = Arc::new(CalendarSet::build(version, calendars, self.default_tz));
            tracing::debug!(version, calendars = set.len(), "calendars read");
            // Versions only grow: a read that finished after a newer one must not put older calendars back.
            let mut current = self.calendars.current.write().unwrap_or_else(|p| p.into_inner());
            if set.version >= current.version {
                *current = set;
            }
            Ok::<_, Error>(current.clone())
        };
        match read.await {
            Ok(set) => {
                *self.calendars.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                Ok(set)
            }
            Err(err) => {
                self.calendars.mark_stale();
                Err(err)
            }
        }
    }

    /// The calendars for compiling `ids`: read again first when one is not known here yet (another replica may
    /// have just added it).
    pub(crate) async fn calendars_for(&self, ids: &[&str]) -> Result<Arc<CalendarSet>> {
        let set = self.refresh_calendars(false).await?;
        if ids.iter().all(|id| set.calendar(id).is_some()) {
            return Ok(set);
        }
        self.refresh_calendars(true).await
    }

    /// Create or replace a calendar; the calendar as stored (its zone filled in). Every job whose trigger names it
    /// (or a calendar it is the base of) gets its next run time recomputed.
    pub async fn put_calendar(&self, calendar: Calendar) -> Result<Calendar> {
        job::validate_id(&calendar.id).map_err(|message| Error::invalid("id", message))?;
        let calendar = calendar.resolved(self.default_tz).map_err(calendar_error)?;
        calendar.compile_own(self.default_tz).map_err(calendar_error)?;
        let _turn = self.calendars.changing.lock().await;
        let store = self.calendar_store()?.clone();
        let mut stored: HashMap<String, Calendar> =
            store.list_calendars().await?.into_iter().map(|calendar| (calendar.id.clone(), calendar)).collect();
        calendar::check_base(&calendar, &stored).map_err(calendar_error)?;
        store.put_calendar(&calendar).await?;
        tracing::info!(calendar = %calendar.id, "calendar saved");
        stored.insert(calendar.id.clone(), calendar.clone());
        let set = self.refresh_calendars(true).await?;
        self.recompute_jobs(&affected_by(&calendar.id, &stored), &set).await?;
        Ok(calendar)
    }

    /// The calendar with this id, if any.
    pub async fn get_calendar(&self, id: &str) -> Result<Option<Calendar>> {
        Ok(self.calendar_store()?.get_calendar(id).await?)
    }

    /// Every calendar, by id.
    pub async fn list_calendars(&self) -> Result<Vec<Calendar>> {
        Ok(self.calendar_store()?.list_calendars().await?)
    }

    /// Remove a calendar. `Conflict` while a job's trigger names it, or another calendar has it as its `base`.
    pub async fn remove_calendar(&self, id: &str) -> Result<()> {
        let _turn = self.calendars.changing.lock().await;
        let store = self.calendar_store()?.clone();
        let stored: HashMap<String, Calendar> =
            store.list_calendars().await?.into_iter().map(|calendar| (calendar.id.clone(), calendar)).collect();
        if !stored.contains_key(id) {
            return Err(no_such_calendar(id));
        }
        let mut bases: Vec<&str> =
            stored.values().filter(|other| other.base.as_deref() == Some(id)).map(|other| other.id.as_str()).collect();
        if !bases.is_empty() {
            bases.sort_unstable();
            return Err(Error::Conflict(format!(
                "calendar {id:?} is the base of {bases:?}: change or remove those calendars first"
            )));
        }
        let users = self.jobs_using(&HashSet::from([id.to_string()])).await?;
        if !users.is_empty() {
            let named: Vec<&str> = users.iter().take(MAX_NAMED_USERS).map(|(_, job)| job.id.as_str()).collect();
            let more = users.len().saturating_sub(named.len());
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            return Err(Error::Conflict(format!(
                "calendar {id:?} is used by the job(s) {named:?}{more}: remove it from their exclude_calendars first"
            )));
        }
        if !store.remove_calendar(id).await? {
            return Err(no_such_calendar(id));
        }
        tracing::info!(calendar = %id, "calendar removed");
        self.refresh_calendars(true).await?;
        Ok(())
    }

    /// Whether each of `times` falls in an excluded period of the calendar (or its base chain).
    pub async fn check_calendar(&self, id: &str, times: &[DateTime<Utc>]) -> Result<Vec<bool>> {
        if times.len() > MAX_CHECK_TIMES {
            return Err(Error::invalid("times", format!("has {} times; at most {MAX_CHECK_TIMES}", times.len())));
        }
        let set = self.refresh_calendars(true).await?;
        let compiled = set.calendar(id).ok_or_else(|| no_such_calendar(id))?;
        Ok(times.iter().map(|time| calendar::is_excluded(&compiled, *time)).collect())
    }

    /// Jobs of every store whose trigger names one of `ids`, with their store's name, by id.
    async fn jobs_using(&self, ids: &HashSet<String>) -> Result<Vec<(String, Job)>> {
        let mut users = Vec::new();
        for (name, store) in self.stores() {
            for job in store.jobs_with_calendars().await? {
                if job.trigger.calendar_ids().iter().any(|id| ids.contains(*id)) {
                    users.push((name.clone(), job));
                }
            }
        }
        users.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        Ok(users)
    }

    /// Give every active job naming one of `ids` the next run time the calendars now allow.
    async fn recompute_jobs(&self, ids: &HashSet<String>, set: &CalendarSet) -> Result<()> {
        let now = self.now();
        let mut changed = 0usize;
        for (store_name, mut job) in self.jobs_using(ids).await? {
            let Some(stored_next) = job.next_run_time.filter(|_| !job.paused) else { continue };
            let trigger = match job.trigger.compile_with(self.default_tz, set) {
                Ok(trigger) => trigger,
                Err(err) => {
                    tracing::error!(job_id = %job.id, error = %err, "cannot recompute the next run time");
                    continue;
                }
            };
            let next = trigger.next_fire_time(None, stored_next.min(now));
            if next == Some(stored_next) {
                continue;
            }
            let Some(store) = self.store(&store_name) else { continue };
            changed += 1;
            match next {
                Some(next) => {
                    job.next_run_time = Some(next);
                    job.updated_at = now;
                    match store.update_job(&job).await {
                        Ok(()) => self.publish(EventKind::JobModified, Subject::Job(Arc::new(job))),
                        // Removed meanwhile: nothing left to recompute.
                        Err(StoreError::NotFound) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                None => {
                    tracing::info!(job_id = %job.id, "the calendars exclude every fire time the job had left; removing it");
                    if store.remove_job(&job.id).await? {
                        let subject = Subject::RemovedJob { job_id: job.id.clone(), jobstore: store_name.clone() };
                        self.publish(EventKind::JobRemoved, subject);
                    }
                }
            }
        }
        if changed > 0 {
            tracing::info!(jobs = changed, "next run times recomputed for a calendar change");
            self.wake();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, TimeDelta, Utc};
    use serde_json::json;

    use super::super::clock::ManualClock;
    use super::super::{Error, JobSpec, Scheduler};
    use crate::action::Action;
    use crate::calendar::Calendar;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    async fn scheduler_at(now: &str) -> (Arc<Scheduler>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(at(now)));
        let scheduler = Scheduler::builder()
            .jobstore("default", crate::store::Memory::new())
            .jobstore("other", crate::store::Memory::new())
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        scheduler.register_fn("noop", |_context| async { Ok(()) });
        (scheduler, clock)
    }

    fn calendar(value: serde_json::Value) -> Calendar {
        serde_json::from_value(value).unwrap()
    }

    async fn daily_nine(scheduler: &Scheduler, id: &str, calendars: &[&str], jobstore: &str) {
        let trigger =
            serde_json::from_value(json!({"type": "cron", "hour": 9, "exclude_calendars": calendars})).unwrap();
        // Several instances, so a fire is never skipped for the one before still being delivered.
        let mut spec = JobSpec::new(trigger, Action::function("noop")).id(id).max_instances(10);
        spec.jobstore = Some(jobstore.to_string());
        scheduler.add_job(spec).await.unwrap();
    }

    async fn next_run(scheduler: &Scheduler, id: &str) -> Option<DateTime<Utc>> {
        scheduler.get_job(id).await.unwrap().unwrap().next_run_time
    }

    #[tokio::test]
    async fn changing_a_calendar_moves_the_next_run_time_of_every_job_that_uses_it_in_every_store() {
        // 2026-12-24 is a Thursday.
        let (scheduler, _clock) = scheduler_at("2026-12-24T10:00:00Z").await;
        scheduler.put_calendar(calendar(json!({"id": "holidays", "timezone": "UTC"}))).await.unwrap();
        scheduler
            .put_calendar(calendar(json!({"id": "company", "timezone": "UTC", "base": "holidays"})))
            .await
            .unwrap();
        daily_nine(&scheduler, "direct", &["holidays"], "default").await;
        daily_nine(&scheduler, "chained", &["company"], "other").await;
        daily_nine(&scheduler, "plain", &[], "default").await;
        assert_eq!(next_run(&scheduler, "direct").await, Some(at("2026-12-25T09:00:00Z")));

        let mut events = scheduler.subscribe();
        scheduler
            .put_calendar(calendar(json!({"id": "holidays", "timezone": "UTC", "exclude": {"dates": ["2026-12-25"]}})))
            .await
            .unwrap();
        assert_eq!(next_run(&scheduler, "direct").await, Some(at("2026-12-26T09:00:00Z")));
        assert_eq!(next_run(&scheduler, "chained").await, Some(at("2026-12-26T09:00:00Z")), "through its base");
        assert_eq!(next_run(&scheduler, "plain").await, Some(at("2026-12-25T09:00:00Z")));
        let modified = std::iter::from_fn(|| events.try_recv().ok())
            .filter(|event| event.kind == super::super::EventKind::JobModified)
            .count();
        assert_eq!(modified, 2);

        // Lifting the exclusion brings the 25th back.
        scheduler.put_calendar(calendar(json!({"id": "holidays", "timezone": "UTC"}))).await.unwrap();
        assert_eq!(next_run(&scheduler, "direct").await, Some(at("2026-12-25T09:00:00Z")));
    }

    #[tokio::test]
    async fn the_loop_plans_past_excluded_fires() {
        let (scheduler, _clock) = scheduler_at("2026-01-01T00:00:00Z").await;
        // 2026-01-02 is a Friday: the fire after it is Monday's.
        let weekend = json!({"id": "weekend", "timezone": "UTC", "exclude": {"weekdays": ["sat", "sun"]}});
        scheduler.put_calendar(calendar(weekend)).await.unwrap();
        daily_nine(&scheduler, "weekday", &["weekend"], "default").await;
        assert_eq!(next_run(&scheduler, "weekday").await, Some(at("2026-01-01T09:00:00Z")));
        assert_eq!(scheduler.tick(at("2026-01-01T09:00:00Z")).await.submitted, 1);
        assert_eq!(scheduler.tick(at("2026-01-02T09:00:00Z")).await.submitted, 1);
        assert_eq!(next_run(&scheduler, "weekday").await, Some(at("2026-01-05T09:00:00Z")));
    }

    #[tokio::test]
    async fn a_calendar_in_use_cannot_be_removed_and_bad_ones_are_refused_naming_the_field() {
        let (scheduler, _clock) = scheduler_at("2026-01-01T00:00:00Z").await;
        scheduler.put_calendar(calendar(json!({"id": "base"}))).await.unwrap();
        let stored = scheduler.put_calendar(calendar(json!({"id": "used", "base": "base"}))).await.unwrap();
        assert_eq!(stored.timezone.as_deref(), Some("UTC"), "the zone is filled in");
        daily_nine(&scheduler, "user", &["used"], "other").await;

        let err = scheduler.remove_calendar("used").await.unwrap_err();
        assert!(matches!(&err, Error::Conflict(message) if message.contains("\"user\"")), "{err}");
        let err = scheduler.remove_calendar("base").await.unwrap_err();
        assert!(matches!(&err, Error::Conflict(message) if message.contains("the base of [\"used\"]")), "{err}");
        assert!(matches!(scheduler.remove_calendar("nope").await, Err(Error::NotFound(_))));

        let invalid = |result: Result<Calendar, Error>| match result {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(invalid(scheduler.put_calendar(calendar(json!({"id": "base", "base": "used"}))).await), "base");
        assert_eq!(invalid(scheduler.put_calendar(calendar(json!({"id": "x", "base": "gone"}))).await), "base");
        assert_eq!(invalid(scheduler.put_calendar(calendar(json!({"id": "a b"}))).await), "id");
        let bad_date = json!({"id": "x", "exclude": {"dates": ["tomorrow"]}});
        assert_eq!(invalid(scheduler.put_calendar(calendar(bad_date)).await), "exclude.dates[0]");
        assert_eq!(scheduler.list_calendars().await.unwrap().len(), 2, "nothing was stored");

        let trigger = serde_json::from_value(json!({"type": "and", "triggers": [
            {"type": "cron", "hour": 9}, {"type": "cron", "minute": 0, "exclude_calendars": ["used", "missing"]}]}))
        .unwrap();
        let err = scheduler.add_job(JobSpec::new(trigger, Action::function("noop"))).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { field, .. } if field == "trigger.triggers[1].exclude_calendars[1]"),
            "{err}"
        );

        scheduler.remove_job("user").await.unwrap();
        scheduler.remove_calendar("used").await.unwrap();
        scheduler.remove_calendar("base").await.unwrap();
        assert!(scheduler.list_calendars().await.unwrap().is_empty());
        assert!(scheduler.calendar_set().is_empty());
    }

    #[tokio::test]
    async fn a_job_left_with_no_fire_time_is_removed() {
        let (scheduler, _clock) = scheduler_at("2026-01-01T00:00:00Z").await;
        scheduler.put_calendar(calendar(json!({"id": "january"}))).await.unwrap();
        let trigger = serde_json::from_value(
            json!({"type": "date", "run_date": "2026-01-15T12:00:00Z", "exclude_calendars": ["january"]}),
        )
        .unwrap();
        scheduler.add_job(JobSpec::new(trigger, Action::function("noop")).id("once")).await.unwrap();
        let january = json!({"id": "january", "exclude": {"ranges": [{"start": "2026-01-01", "end": "2026-02-01"}]}});
        scheduler.put_calendar(calendar(january)).await.unwrap();
        assert_eq!(scheduler.get_job("once").await.unwrap(), None);
    }

    #[tokio::test]
    async fn check_answers_for_each_time_and_a_new_calendar_is_found_at_once() {
        let (scheduler, clock) = scheduler_at("2026-01-01T00:00:00Z").await;
        let weekend = json!({"id": "weekend", "timezone": "UTC", "exclude": {"weekdays": ["sat", "sun"]}});
        scheduler.put_calendar(calendar(weekend)).await.unwrap();
        let times = [at("2026-01-02T12:00:00Z"), at("2026-01-03T12:00:00Z"), at("2026-01-05T00:00:00Z")];
        assert_eq!(scheduler.check_calendar("weekend", &times).await.unwrap(), [false, true, false]);
        assert!(matches!(scheduler.check_calendar("nope", &times).await, Err(Error::NotFound(_))));
        let too_many = vec![at("2026-01-02T12:00:00Z"); super::MAX_CHECK_TIMES + 1];
        assert!(
            matches!(scheduler.check_calendar("weekend", &too_many).await, Err(Error::Invalid { field, .. }) if field == "times")
        );
        clock.advance(TimeDelta::hours(1));
        assert_eq!(scheduler.calendar_set().len(), 1);
    }
}
