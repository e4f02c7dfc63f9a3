//! The `apsched` command line. `serve` and `migrate` run the service (see `main.rs`); the client commands (`jobs`,
//! `runs`, `scheduler`, `audit`, and `preview --server`) talk to a running server through its public REST API only, so
//! everything they do a script or SDK can do too. `preview` without `--server` computes locally.

pub mod backfill;
pub mod client;
pub mod output;
pub mod preview;
pub mod shorthand;

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use client::{CliError, Client, DEFAULT_SERVER, segment};
use output::{cell, table, trigger_summary};

/// Shown under the client commands' help, as in the README.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 the API refused the request (4xx); 2 usage error, nothing \
     sent; 3 the server failed (5xx) or could not be reached; 4 a followed backfill failed.";

/// How a client command reaches the server and prints its answer. Global, so the flags may follow the verb.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's base URL.
    #[arg(long, env = "APSCHED_URL", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// A bearer token for servers that require one.
    #[arg(long, env = "APSCHED_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Why: sent as `apsched-reason`, the audit trail records it with the change.
    #[arg(long, env = "APSCHED_REASON", global = true)]
    pub reason: Option<String>,
}

/// `apsched jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, soonest next run first.
    List {
        /// Only paused jobs.
        #[arg(long, conflicts_with = "active")]
        paused: bool,
        /// Only jobs that are not paused.
        #[arg(long)]
        active: bool,
        /// Only jobs of this job store.
        #[arg(long)]
        jobstore: Option<String>,
        /// Only jobs whose labels this selector selects, e.g. 'team=payments,tier in (gold,silver),!legacy'.
        #[arg(long, short = 'l')]
        selector: Option<String>,
        /// At most this many jobs (default: all of them).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one job.
    Get {
        /// The job's id.
        id: String,
    },
    /// Add a job from JSON (a file, or - for standard input) and/or shorthand flags; flags override the JSON.
    Add {
        /// A job as the API takes it (`POST /v1/jobs`); - reads standard input.
        file: Option<PathBuf>,
        /// The job's id (default: a UUID chosen by the server).
        #[arg(long)]
        id: Option<String>,
        /// The job store to keep it in.
        #[arg(long)]
        jobstore: Option<String>,
        /// Replace a job with the same id instead of failing.
        #[arg(long)]
        replace: bool,
        /// Add it paused.
        #[arg(long)]
        paused: bool,
        /// Shorthand flags for the job's fields.
        #[command(flatten)]
        fields: JobFields,
    },
    /// Change a job: a JSON patch (a file, or -) and/or shorthand flags. A new trigger reschedules it.
    Edit {
        /// The job's id.
        id: String,
        /// Fields to change, as the API takes them (`PATCH /v1/jobs/{id}`); - reads standard input.
        file: Option<PathBuf>,
        /// Shorthand flags for the fields to change.
        #[command(flatten)]
        fields: JobFields,
    },
    /// Change every job a selector selects: a JSON patch (a file, or -) and/or shorthand flags, as for `edit`
    /// but without a trigger.
    Patch {
        /// Which jobs, e.g. 'team=payments'.
        #[arg(long, short = 'l')]
        selector: String,
        /// Fields to change, as the API takes them (`PATCH /v1/jobs?selector=…`); - reads standard input.
        file: Option<PathBuf>,
        /// Shorthand flags for the fields to change.
        #[command(flatten)]
        fields: JobFields,
    },
    /// Pause a job, or every job a selector selects: it stops firing until resumed.
    Pause {
        /// The job's id.
        #[arg(required_unless_present = "selector")]
        id: Option<String>,
        /// Every job this selector selects instead, e.g. 'team=payments'.
        #[arg(long, short = 'l', conflicts_with = "id")]
        selector: Option<String>,
        /// Why (shown as the job's paused_reason and recorded in the audit trail); one job only.
        #[arg(long, conflicts_with = "selector")]
        reason: Option<String>,
        /// Resume by itself at this RFC 3339 time (in the future); one job only.
        #[arg(long, conflicts_with = "selector")]
        until: Option<String>,
    },
    /// Resume a job, or every job a selector selects: the next run time is recomputed from now.
    Resume {
        /// The job's id.
        #[arg(required_unless_present = "selector")]
        id: Option<String>,
        /// Every job this selector selects instead, e.g. 'team=payments'.
        #[arg(long, short = 'l', conflicts_with = "id")]
        selector: Option<String>,
    },
    /// Run a job once now, outside its schedule.
    Run {
        /// The job's id.
        id: String,
    },
    /// Remove a job, or every job a selector selects (their run history stays).
    Remove {
        /// The job's id.
        #[arg(required_unless_present = "selector")]
        id: Option<String>,
        /// Every job this selector selects instead, e.g. 'team=payments'.
        #[arg(long, short = 'l', conflicts_with = "id")]
        selector: Option<String>,
    },
    /// Who changed a job, when and why, newest first (also after it was removed).
    History {
        /// The job's id.
        id: String,
        /// Filters and how many.
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// The job's health notifications, newest first: what was sent, how it went (also after it was removed).
    Notifications {
        /// The job's id.
        id: String,
        /// How many, 1–1000.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Deliver the job's past fires in a range, paced, and follow them with a progress bar (exit 4 if some
    /// failed); --detach returns at once.
    Backfill(backfill::StartArgs),
}

/// Filters of the audit trail (`apsched audit`, `apsched jobs history`).
#[derive(Debug, Default, Args)]
pub struct AuditFilter {
    /// Only changes at or after this time (RFC 3339, or a date-time in the scheduler's zone).
    #[arg(long)]
    pub since: Option<String>,
    /// Only changes by this token name (or anonymous).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only changes of this action (add, modify, pause, resume, run, remove, remove_all, scheduler_pause, …).
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many changes, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

impl AuditFilter {
    fn query(&self) -> String {
        let mut query = format!("?limit={}", self.limit);
        for (name, value) in [("since", &self.since), ("actor", &self.actor), ("action", &self.action)] {
            if let Some(value) = value {
                query.push_str(&format!("&{name}={}", segment(value)));
            }
        }
        query
    }
}

/// Shorthand for the fields of a job; each one given overrides the same field of the JSON.
#[derive(Debug, Default, Args)]
pub struct JobFields {
    /// A name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// A crontab line, e.g. "*/5 * * * *" (0 and 7 are Sunday).
    #[arg(long, group = "when")]
    pub cron: Option<String>,
    /// Every so long: 30s, 5m, 2h, 1d, 1w, 1h30m.
    #[arg(long, group = "when")]
    pub interval: Option<String>,
    /// Once, at this time (RFC 3339, or a date-time read in --timezone).
    #[arg(long, group = "when")]
    pub at: Option<String>,
    /// Any trigger as JSON, e.g. '{"type": "cron", "hour": 9, "day_of_week": "mon-fri"}'.
    #[arg(long, group = "when")]
    pub trigger: Option<String>,
    /// The trigger's IANA zone (default: the scheduler's).
    #[arg(long)]
    pub timezone: Option<String>,
    /// The webhook's URL.
    #[arg(long)]
    pub url: Option<String>,
    /// The webhook's method (default POST).
    #[arg(long)]
    pub method: Option<String>,
    /// A header of the webhook call, "Name: value"; repeat for more.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A JSON body for the webhook call.
    #[arg(long, conflicts_with = "body")]
    pub json_body: Option<String>,
    /// A text body for the webhook call.
    #[arg(long)]
    pub body: Option<String>,
    /// Seconds before the webhook call is abandoned.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Render the URL, header values and body as templates for each attempt ({{ job.id }}, {{ scheduled_time }},
    /// {{ attempt }}, {{ idempotency_key }}, …): true or false.
    #[arg(long)]
    pub template: Option<bool>,
    /// Fold a backlog of missed fires into one run: true or false.
    #[arg(long)]
    pub coalesce: Option<bool>,
    /// How many runs of the job may overlap.
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// Seconds a fire may be late and still run, or "none" to always run.
    #[arg(long)]
    pub misfire_grace_time: Option<String>,
    /// After downtime, without coalesce, deliver at most the newest N missed fires, or "none" for all of them.
    #[arg(long, value_name = "N")]
    pub max_catchup_runs: Option<String>,
    /// What a fire that comes while max_instances runs are going does: skip, buffer_one, buffer_all or
    /// cancel_other.
    #[arg(long, value_name = "POLICY")]
    pub overlap: Option<String>,
    /// The executor (delivery pool) to run it in.
    #[arg(long)]
    pub executor: Option<String>,
    /// A label, "key=value"; repeat for more. Given on a change, they replace all the job's labels.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

impl JobFields {
    fn touches_action(&self) -> bool {
        self.url.is_some()
            || self.method.is_some()
            || !self.headers.is_empty()
            || self.json_body.is_some()
            || self.body.is_some()
            || self.timeout.is_some()
            || self.template.is_some()
    }

    /// Write the flags given into `job` (a job to add or a patch).
    fn apply(&self, job: &mut Map<String, Value>) -> Result<(), CliError> {
        if let Some(name) = &self.name {
            job.insert("name".into(), json!(name));
        }
        let trigger = shorthand::trigger(
            self.trigger.as_deref(),
            self.cron.as_deref(),
            self.interval.as_deref(),
            self.at.as_deref(),
            self.timezone.as_deref(),
        )?;
        if let Some(trigger) = trigger {
            job.insert("trigger".into(), trigger);
        }
        if self.touches_action() {
            let action = job.entry("action").or_insert_with(|| json!({}));
            let Value::Object(action) = action else {
                return Err(CliError::usage("action: expected a JSON object"));
            };
            if let Some(url) = &self.url {
                action.insert("url".into(), json!(url));
            }
            if let Some(method) = &self.method {
                action.insert("method".into(), json!(method.to_uppercase()));
            }
            if !self.headers.is_empty() {
                let headers = action.entry("headers").or_insert_with(|| json!({}));
                let Value::Object(headers) = headers else {
                    return Err(CliError::usage("action.headers: expected a JSON object"));
                };
                for text in &self.headers {
                    let (name, value) = shorthand::header(text)?;
                    // Header names are case-insensitive: a new value replaces the old whatever its case.
                    headers.retain(|existing, _| !existing.eq_ignore_ascii_case(&name));
                    headers.insert(name, json!(value));
                }
            }
            if let Some(body) = &self.json_body {
                action.remove("body");
                action.insert("json".into(), shorthand::json_value("--json-body", body)?);
            }
            if let Some(body) = &self.body {
                action.remove("json");
                action.insert("body".into(), json!(body));
            }
            if let Some(timeout) = self.timeout {
                action.insert("timeout_seconds".into(), json!(timeout));
            }
            if let Some(template) = self.template {
                action.insert("template".into(), json!(template));
            }
        }
        if let Some(coalesce) = self.coalesce {
            job.insert("coalesce".into(), json!(coalesce));
        }
        if let Some(max_instances) = self.max_instances {
            job.insert("max_instances".into(), json!(max_instances));
        }
        if let Some(misfire) = &self.misfire_grace_time {
            job.insert("misfire_grace_time".into(), shorthand::misfire(misfire)?);
        }
        if let Some(runs) = &self.max_catchup_runs {
            job.insert("max_catchup_runs".into(), shorthand::max_catchup_runs(runs)?);
        }
        if let Some(overlap) = &self.overlap {
            job.insert("overlap".into(), json!(overlap));
        }
        if let Some(executor) = &self.executor {
            job.insert("executor".into(), json!(executor));
        }
        if !self.labels.is_empty() {
            let mut labels = Map::new();
            for text in &self.labels {
                let (key, value) = text
                    .split_once('=')
                    .ok_or_else(|| CliError::usage(format!("--label {text:?}: expected KEY=VALUE")))?;
                labels.insert(key.trim().to_string(), json!(value.trim()));
            }
            job.insert("labels".into(), Value::Object(labels));
        }
        Ok(())
    }
}

/// `/jobs?selector=…`, the selector escaped for a query string.
fn selected_jobs(selector: &str) -> String {
    format!("/jobs?selector={}", segment(selector))
}

/// `apsched runs …`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The job's id (its runs outlive it).
    pub job: String,
    /// Only runs with this status (pending, running, succeeded, failed, missed, skipped, coalesced, buffered,
    /// cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// `apsched scheduler …`.
#[derive(Debug, Subcommand)]
pub enum SchedulerCommand {
    /// State, timezone, executors, job stores and job defaults.
    Status,
    /// Stop firing for all jobs; the API keeps serving.
    Pause,
    /// Start firing again.
    Resume,
    /// Stop the server: stop firing, wait for running deliveries (unless --no-wait), then exit.
    Shutdown {
        /// Exit without waiting for running deliveries.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `apsched calendars …`.
#[derive(Debug, Subcommand)]
pub enum CalendarsCommand {
    /// List calendars.
    List,
    /// Show one calendar.
    Get {
        /// The calendar's id.
        id: String,
    },
    /// Create or replace a calendar from a file: a calendar as JSON (`PUT /v1/calendars/{id}`), or iCalendar
    /// text (.ics) whose events are all excluded; - reads standard input (JSON if it starts with `{`).
    Put {
        /// The calendar's id.
        id: String,
        /// A .json calendar or an .ics file; - reads standard input.
        file: PathBuf,
        /// The IANA zone its dates are read in (default: the file's, else the scheduler's).
        #[arg(long)]
        timezone: Option<String>,
        /// Another calendar whose exclusions add to this one's.
        #[arg(long)]
        base: Option<String>,
    },
    /// Remove a calendar (refused while a job uses it).
    Remove {
        /// The calendar's id.
        id: String,
    },
    /// Say whether each time falls in an excluded period of the calendar.
    Check {
        /// The calendar's id.
        id: String,
        /// Times: RFC 3339, or date-times read in the calendar's zone.
        #[arg(required = true)]
        times: Vec<String>,
    },
}

/// What a client command asks for.
#[derive(Debug)]
// Built once per process from the command line; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// A `jobs` command.
    Jobs(JobsCommand),
    /// A `runs` command.
    Runs(RunsArgs),
    /// A `scheduler` command.
    Scheduler(SchedulerCommand),
    /// `apsched audit`: who changed what.
    Audit(AuditFilter),
    /// A `calendars` command.
    Calendars(CalendarsCommand),
    /// `apsched preview --server …`: the server's preview of a trigger.
    Preview {
        /// The trigger as the API takes it.
        trigger: Value,
        /// How many fire times to list.
        count: usize,
        /// Preview from this time (RFC 3339) instead of the server's now.
        now: Option<String>,
    },
    /// A `backfills` command.
    Backfills(backfill::BackfillsCommand),
}

/// Run a client command; the exit code is 0 on success, else `client::EXIT_*` with the error on stderr.
pub fn run_client(connection: Connection, request: Request) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return client::EXIT_SERVER;
        }
    };
    let result = runtime.block_on(async {
        let client = Client::new(&connection.server, connection.token.clone())?.with_reason(connection.reason.clone());
        execute(&client, request, connection.json).await
    });
    match result {
        Ok(text) => {
            // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
            if !text.is_empty() {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            0
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Read a JSON object from a file, or from standard input for `-`.
fn read_object(path: &PathBuf) -> Result<Map<String, Value>, CliError> {
    let what = path.display().to_string();
    let text = if what == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|err| CliError::usage(format!("cannot read standard input: {err}")))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|err| CliError::usage(format!("cannot read {what}: {err}")))?
    };
    shorthand::json_object(&what, &text)
}

async fn execute(client: &Client, request: Request, as_json: bool) -> Result<String, CliError> {
    match request {
        Request::Jobs(command) => jobs(client, command, as_json).await,
        Request::Runs(args) => runs(client, args, as_json).await,
        Request::Scheduler(command) => scheduler(client, command, as_json).await,
        Request::Audit(filter) => audit(client, &format!("/audit{}", filter.query()), as_json, "no changes").await,
        Request::Calendars(command) => calendars(client, command, as_json).await,
        Request::Preview { trigger, count, now } => {
            let mut body = json!({"trigger": trigger, "count": count});
            if let Some(now) = now {
                body["now"] = json!(now);
            }
            let answer = client.post("/triggers/preview", Some(&body)).await?;
            if as_json {
                return Ok(pretty(&answer));
            }
            let times: Vec<String> = answer["fire_times"].as_array().into_iter().flatten().map(cell).collect();
            Ok(times.join("\n"))
        }
        Request::Backfills(command) => backfill::backfills(client, command, as_json).await,
    }
}

/// A calendar from a file (or standard input): JSON as the API takes it, or iCalendar text.
fn read_calendar(path: &PathBuf) -> Result<Map<String, Value>, CliError> {
    let what = path.display().to_string();
    let text = if what == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|err| CliError::usage(format!("cannot read standard input: {err}")))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|err| CliError::usage(format!("cannot read {what}: {err}")))?
    };
    let is_json = match path.extension().and_then(|extension| extension.to_str()) {
        Some(extension) => extension.eq_ignore_ascii_case("json"),
        None => text.trim_start().starts_with('{'),
    };
    if is_json { shorthand::json_object(&what, &text) } else { Ok(Map::from_iter([("ics".to_string(), json!(text))])) }
}

fn describe_calendar(calendar: &Value) -> String {
    let list = |value: &Value| {
        let items: Vec<String> = value.as_array().into_iter().flatten().map(cell).collect();
        if items.is_empty() { "-".to_string() } else { items.join(", ") }
    };
    let exclude = &calendar["exclude"];
    let ranges: Vec<String> = (exclude["ranges"].as_array().into_iter().flatten())
        .map(|range| format!("{} to {}", cell(&range["start"]), cell(&range["end"])))
        .collect();
    let ics = calendar["ics"].as_str().map_or("-".to_string(), |text| {
        format!("{} events, {} bytes", text.matches("BEGIN:VEVENT").count(), text.len())
    });
    [
        ("id", cell(&calendar["id"])),
        ("timezone", cell(&calendar["timezone"])),
        ("dates", list(&exclude["dates"])),
        ("ranges", if ranges.is_empty() { "-".to_string() } else { ranges.join(", ") }),
        ("weekdays", list(&exclude["weekdays"])),
        ("ics", ics),
        ("base", cell(&calendar["base"])),
    ]
    .iter()
    .map(|(key, value)| format!("{:<10} {value}", format!("{key}:")))
    .collect::<Vec<_>>()
    .join("\n")
}

async fn calendars(client: &Client, command: CalendarsCommand, as_json: bool) -> Result<String, CliError> {
    let path = |id: &str| format!("/calendars/{}", segment(id));
    let (answer, human) = match command {
        CalendarsCommand::List => {
            let answer = client.get("/calendars").await?;
            let calendars = answer["calendars"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = calendars
                .iter()
                .map(|calendar| {
                    let exclude = &calendar["exclude"];
                    let count = |field: &str| exclude[field].as_array().map_or(0, Vec::len);
                    let summary = format!(
                        "{} dates, {} ranges, {} weekdays{}",
                        count("dates"),
                        count("ranges"),
                        count("weekdays"),
                        if calendar["ics"].is_string() { ", ics" } else { "" }
                    );
                    vec![cell(&calendar["id"]), cell(&calendar["timezone"]), summary, cell(&calendar["base"])]
                })
                .collect();
            let human = if rows.is_empty() {
                "no calendars".to_string()
            } else {
                table(&["ID", "TIMEZONE", "EXCLUDES", "BASE"], &rows)
            };
            (Value::Array(calendars), human)
        }
        CalendarsCommand::Get { id } => {
            let calendar = client.get(&path(&id)).await?;
            let human = describe_calendar(&calendar);
            (calendar, human)
        }
        CalendarsCommand::Put { id, file, timezone, base } => {
            let mut calendar = read_calendar(&file)?;
            if let Some(timezone) = timezone {
                calendar.insert("timezone".into(), json!(timezone));
            }
            if let Some(base) = base {
                calendar.insert("base".into(), json!(base));
            }
            let stored = client.send(reqwest::Method::PUT, &path(&id), Some(&Value::Object(calendar))).await?;
            let human = format!("saved calendar {}", cell(&stored["id"]));
            (stored, human)
        }
        CalendarsCommand::Remove { id } => {
            client.send(reqwest::Method::DELETE, &path(&id), None).await?;
            (json!({"id": id, "removed": true}), format!("removed calendar {id}"))
        }
        CalendarsCommand::Check { id, times } => {
            let answer = client.post(&format!("{}/check", path(&id)), Some(&json!({"times": times}))).await?;
            let excluded = answer["excluded"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = (times.iter().zip(&excluded))
                .map(|(time, excluded)| {
                    vec![time.clone(), if *excluded == true { "excluded" } else { "allowed" }.to_string()]
                })
                .collect();
            (answer, table(&["TIME", "CALENDAR"], &rows))
        }
    };
    Ok(if as_json { pretty(&answer) } else { human })
}

/// Every job (following cursors), up to `limit`.
async fn list_jobs(client: &Client, filter: &str, limit: Option<usize>) -> Result<Vec<Value>, CliError> {
    /// The API's largest page: fewest round trips.
    const PAGE: usize = 1000;
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_size = limit.map_or(PAGE, |limit| (limit - jobs.len()).min(PAGE));
        if page_size == 0 {
            return Ok(jobs);
        }
        let mut query = format!("/jobs?limit={page_size}{filter}");
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={}", segment(cursor)));
        }
        let page = client.get(&query).await?;
        jobs.extend(page["jobs"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(jobs),
        }
    }
}

fn job_state(job: &Value) -> &'static str {
    if job["paused"] == true { "paused" } else { "active" }
}

fn describe_job(job: &Value) -> String {
    let action = &job["action"];
    let mut lines = vec![
        ("id", cell(&job["id"])),
        ("name", cell(&job["name"])),
        ("trigger", trigger_summary(&job["trigger"])),
        ("state", job_state(job).to_string()),
        ("next run", cell(&job["next_run_time"])),
        ("webhook", format!("{} {}", cell(&action["method"]), cell(&action["url"]))),
    ];
    if let Some(headers) = action["headers"].as_object() {
        for (name, value) in headers {
            lines.push(("header", format!("{name}: {}", cell(value))));
        }
    }
    if !action["json"].is_null() {
        lines.push(("json body", action["json"].to_string()));
    }
    if !action["body"].is_null() {
        lines.push(("body", cell(&action["body"])));
    }
    lines.extend([
        ("coalesce", cell(&job["coalesce"])),
        ("max instances", cell(&job["max_instances"])),
        ("misfire grace", cell(&job["misfire_grace_time"])),
        ("executor", cell(&job["executor"])),
        ("job store", cell(&job["jobstore"])),
        ("labels", labels_summary(&job["labels"])),
        ("paused reason", cell(&job["paused_reason"])),
        ("paused until", cell(&job["paused_until"])),
        ("health", cell(&job["health"]["state"])),
        ("failures", cell(&job["health"]["consecutive_failures"])),
        ("last success", cell(&job["health"]["last_success_at"])),
        ("last failure", cell(&job["health"]["last_failure_at"])),
        ("auto-pause", cell(&job["auto_pause_after_failures"])),
        ("stale after", cell(&job["stale_after_seconds"])),
        ("created", cell(&job["created_at"])),
        ("updated", cell(&job["updated_at"])),
    ]);
    lines.iter().map(|(key, value)| format!("{:<14} {value}", format!("{key}:"))).collect::<Vec<_>>().join("\n")
}

/// `key=value, …`, or `-` for none.
fn labels_summary(labels: &Value) -> String {
    let pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() { "-".to_string() } else { pairs.join(", ") }
}

async fn jobs(client: &Client, command: JobsCommand, as_json: bool) -> Result<String, CliError> {
    let job_path = |id: &str| format!("/jobs/{}", segment(id));
    let (answer, human) = match command {
        JobsCommand::List { paused, active, jobstore, selector, limit } => {
            let mut filter = String::new();
            if paused || active {
                filter.push_str(&format!("&paused={paused}"));
            }
            if let Some(store) = &jobstore {
                filter.push_str(&format!("&jobstore={}", segment(store)));
            }
            if let Some(selector) = &selector {
                filter.push_str(&format!("&selector={}", segment(selector)));
            }
            let jobs = list_jobs(client, &filter, limit).await?;
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .map(|job| {
                    vec![
                        cell(&job["id"]),
                        cell(&job["name"]),
                        trigger_summary(&job["trigger"]),
                        cell(&job["next_run_time"]),
                        job_state(job).to_string(),
                        cell(&job["health"]["state"]),
                    ]
                })
                .collect();
            let human = if jobs.is_empty() {
                "no jobs".to_string()
            } else {
                table(&["ID", "NAME", "TRIGGER", "NEXT RUN", "STATE", "HEALTH"], &rows)
            };
            (Value::Array(jobs), human)
        }
        JobsCommand::Get { id } => {
            let job = client.get(&job_path(&id)).await?;
            let human = describe_job(&job);
            (job, human)
        }
        JobsCommand::Add { file, id, jobstore, replace, paused, fields } => {
            let mut job = match &file {
                Some(path) => read_object(path)?,
                None => Map::new(),
            };
            if let Some(id) = id {
                job.insert("id".into(), json!(id));
            }
            if let Some(store) = jobstore {
                job.insert("jobstore".into(), json!(store));
            }
            if replace {
                job.insert("replace_existing".into(), json!(true));
            }
            if paused {
                job.insert("paused".into(), json!(true));
            }
            fields.apply(&mut job)?;
            let added = client.post("/jobs", Some(&Value::Object(job))).await?;
            let human = format!("added job {}; next run {}", cell(&added["id"]), cell(&added["next_run_time"]));
            (added, human)
        }
        JobsCommand::Edit { id, file, fields } => {
            let mut patch = match &file {
                Some(path) => read_object(path)?,
                None => Map::new(),
            };
            if fields.touches_action() && !patch.contains_key("action") {
                // The API replaces the action whole; start from the stored one so unnamed parts stay.
                let current = client.get(&job_path(&id)).await?;
                let mut action = current["action"].clone();
                if let Some(headers) = action["headers"].as_object_mut() {
                    headers.retain(|name, _| {
                        !fields
                            .headers
                            .iter()
                            .any(|h| h.split(':').next().is_some_and(|n| n.trim().eq_ignore_ascii_case(name)))
                    });
                    if let Some((name, _)) = headers.iter().find(|(_, value)| *value == crate::action::MASK) {
                        return Err(CliError::usage(format!(
                            "action.headers: {name} is a masked secret ({}); give it again with --header \"{name}: …\" \
                             or send the whole action as JSON, else the mask itself would be saved",
                            crate::action::MASK
                        )));
                    }
                }
                patch.insert("action".into(), action);
            }
            fields.apply(&mut patch)?;
            if patch.is_empty() {
                return Err(CliError::usage("nothing to change: give a JSON patch or flags such as --cron or --url"));
            }
            let edited = client.send(reqwest::Method::PATCH, &job_path(&id), Some(&Value::Object(patch))).await?;
            let human = format!("changed job {}; next run {}", cell(&edited["id"]), cell(&edited["next_run_time"]));
            (edited, human)
        }
        JobsCommand::Patch { selector, file, fields } => {
            let mut patch = match &file {
                Some(path) => read_object(path)?,
                None => Map::new(),
            };
            fields.apply(&mut patch)?;
            if patch.is_empty() {
                return Err(CliError::usage("nothing to change: give a JSON patch or flags such as --label"));
            }
            let path = selected_jobs(&selector);
            let answer = client.send(reqwest::Method::PATCH, &path, Some(&Value::Object(patch))).await?;
            let human = format!("changed {} jobs", cell(&answer["modified"]));
            (answer, human)
        }
        JobsCommand::Pause { selector: Some(selector), .. } => {
            let path = selected_jobs(&selector);
            let answer = client.send(reqwest::Method::PATCH, &path, Some(&json!({"paused": true}))).await?;
            let human = format!("paused {} jobs", cell(&answer["modified"]));
            (answer, human)
        }
        JobsCommand::Pause { id, selector: None, reason, until } => {
            let id = id.unwrap_or_default();
            let mut note = Map::new();
            if let Some(reason) = reason {
                note.insert("reason".into(), json!(reason));
            }
            if let Some(until) = until {
                note.insert("until".into(), json!(until));
            }
            let body = (!note.is_empty()).then_some(Value::Object(note));
            let job = client.post(&format!("{}/pause", job_path(&id)), body.as_ref()).await?;
            let mut human = format!("paused job {}", cell(&job["id"]));
            if !job["paused_until"].is_null() {
                human.push_str(&format!(" until {}", cell(&job["paused_until"])));
            }
            (job, human)
        }
        JobsCommand::Resume { selector: Some(selector), .. } => {
            let path = selected_jobs(&selector);
            let answer = client.send(reqwest::Method::PATCH, &path, Some(&json!({"paused": false}))).await?;
            let human = format!("resumed {} jobs", cell(&answer["modified"]));
            (answer, human)
        }
        JobsCommand::Resume { id, selector: None } => {
            let id = id.unwrap_or_default();
            let job = client.post(&format!("{}/resume", job_path(&id)), None).await?;
            let human = format!("resumed job {}; next run {}", cell(&job["id"]), cell(&job["next_run_time"]));
            (job, human)
        }
        JobsCommand::Run { id } => {
            let run = client.post(&format!("{}/run", job_path(&id)), None).await?;
            let human = format!("started a run of job {id} (idempotency key {})", cell(&run["idempotency_key"]));
            (run, human)
        }
        JobsCommand::Remove { selector: Some(selector), .. } => {
            let answer = client.send(reqwest::Method::DELETE, &selected_jobs(&selector), None).await?;
            let human = format!("removed {} jobs", cell(&answer["removed"]));
            (answer, human)
        }
        JobsCommand::Remove { id, selector: None } => {
            let id = id.unwrap_or_default();
            client.send(reqwest::Method::DELETE, &job_path(&id), None).await?;
            (json!({"id": id, "removed": true}), format!("removed job {id}"))
        }
        JobsCommand::History { id, filter } => {
            let path = format!("{}/history{}", job_path(&id), filter.query());
            return audit(client, &path, as_json, &format!("no changes of job {id}")).await;
        }
        JobsCommand::Notifications { id, limit } => return notifications(client, &id, limit, as_json).await,
        JobsCommand::Backfill(args) => return backfill::start(client, args, as_json).await,
    };
    Ok(if as_json { pretty(&answer) } else { human })
}

/// A page of the audit trail at `path`: a table of who did what when and why, or the entries as JSON.
async fn audit(client: &Client, path: &str, as_json: bool, empty: &str) -> Result<String, CliError> {
    let answer = client.get(path).await?;
    let entries = answer["entries"].as_array().cloned().unwrap_or_default();
    if as_json {
        return Ok(pretty(&Value::Array(entries)));
    }
    if entries.is_empty() {
        return Ok(empty.to_string());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            vec![
                cell(&entry["time"]),
                cell(&entry["actor"]),
                cell(&entry["action"]),
                cell(&entry["job_id"]),
                output::audit_change(&entry["before"], &entry["after"]),
                cell(&entry["reason"]).replace('\n', " "),
            ]
        })
        .collect();
    Ok(table(&["TIME", "ACTOR", "ACTION", "JOB", "CHANGED", "REASON"], &rows))
}

/// A job's notifications: a table of when, what, how it went and why not, or the notifications as JSON.
async fn notifications(client: &Client, id: &str, limit: usize, as_json: bool) -> Result<String, CliError> {
    let answer = client.get(&format!("/jobs/{}/notifications?limit={limit}", segment(id))).await?;
    let notifications = answer["notifications"].as_array().cloned().unwrap_or_default();
    if as_json {
        return Ok(pretty(&Value::Array(notifications)));
    }
    if notifications.is_empty() {
        return Ok(format!("no notifications about job {id}"));
    }
    let rows: Vec<Vec<String>> = notifications
        .iter()
        .map(|notification| {
            vec![
                cell(&notification["created_at"]),
                cell(&notification["type"]),
                cell(&notification["state"]),
                cell(&notification["attempts"]),
                cell(&notification["last_error"]).replace('\n', " "),
            ]
        })
        .collect();
    Ok(table(&["CREATED", "TYPE", "STATE", "ATTEMPTS", "LAST ERROR"], &rows))
}

async fn runs(client: &Client, args: RunsArgs, as_json: bool) -> Result<String, CliError> {
    let mut path = format!("/jobs/{}/runs?limit={}", segment(&args.job), args.limit);
    if let Some(status) = &args.status {
        path.push_str(&format!("&status={}", segment(status)));
    }
    let answer = client.get(&path).await?;
    let runs = answer["runs"].as_array().cloned().unwrap_or_default();
    if as_json {
        return Ok(pretty(&Value::Array(runs)));
    }
    if runs.is_empty() {
        return Ok(format!("no runs of job {}", args.job));
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let duration = run["duration_ms"].as_u64().map_or("-".to_string(), |ms| format!("{ms} ms"));
            let note = [&run["error"], &run["response_excerpt"]].into_iter().find(|v| v.is_string()).map(cell);
            vec![
                cell(&run["scheduled_time"]),
                cell(&run["kind"]),
                cell(&run["status"]),
                cell(&run["attempts"]),
                cell(&run["http_status"]),
                duration,
                note.unwrap_or_default().replace('\n', " "),
            ]
        })
        .collect();
    Ok(table(&["SCHEDULED", "KIND", "STATUS", "ATTEMPTS", "HTTP", "DURATION", "ERROR / RESPONSE"], &rows))
}

async fn scheduler(client: &Client, command: SchedulerCommand, as_json: bool) -> Result<String, CliError> {
    let answer = match &command {
        SchedulerCommand::Status => client.get("/scheduler").await?,
        SchedulerCommand::Pause => client.post("/scheduler/pause", None).await?,
        SchedulerCommand::Resume => client.post("/scheduler/resume", None).await?,
        SchedulerCommand::Shutdown { no_wait } => {
            client.post("/scheduler/shutdown", Some(&json!({"wait": !no_wait}))).await?
        }
    };
    if as_json {
        return Ok(pretty(&answer));
    }
    let mut lines = match command {
        SchedulerCommand::Status => vec![],
        SchedulerCommand::Pause => vec!["scheduler paused: no job fires until it is resumed".to_string()],
        SchedulerCommand::Resume => vec!["scheduler resumed".to_string()],
        SchedulerCommand::Shutdown { .. } => vec!["scheduler shut down; the server is exiting".to_string()],
    };
    lines.push(format!("state:        {}", cell(&answer["state"])));
    lines.push(format!("timezone:     {}", cell(&answer["timezone"])));
    for (name, pool) in answer["executors"].as_object().into_iter().flatten() {
        lines.push(format!(
            "executor:     {name} ({} workers, {} running, {} queued)",
            cell(&pool["max_workers"]),
            cell(&pool["running"]),
            cell(&pool["queued"])
        ));
    }
    for (name, store) in answer["jobstores"].as_object().into_iter().flatten() {
        lines.push(format!("job store:    {name} ({})", cell(&store["type"])));
    }
    let defaults = &answer["job_defaults"];
    lines.push(format!(
        "job defaults: coalesce={} max_instances={} misfire_grace_time={}",
        cell(&defaults["coalesce"]),
        cell(&defaults["max_instances"]),
        cell(&defaults["misfire_grace_time"])
    ));
    Ok(lines.join("\n"))
}
