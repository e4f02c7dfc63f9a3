//! Templates in a webhook call: an action with `"template": true` has its `url`, header values, `body` and the
//! string values of `json` rendered with minijinja before each attempt (docs/api.md, "Templates"). `check` is the
//! rule at save — every templated string compiles and names only the variables a fire has — and `render` makes one
//! attempt's action from a fire's `Vars`. Without `template` nothing here is used: bodies go out byte for byte.

use std::collections::{BTreeMap, HashSet};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::HttpAction;

/// What went wrong where: the field inside the action, and the message.
type FieldError = (String, String);

/// The variables a template may use, top-level and nested; any key under `job.labels` is allowed too.
pub const VARIABLES: [&str; 10] = [
    "job",
    "job.id",
    "job.name",
    "job.labels",
    "scheduled_time",
    "scheduled_timestamp",
    "attempt",
    "idempotency_key",
    "run",
    "run.kind",
];

/// What a template sees of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vars {
    /// `job.id`, `job.name`, `job.labels`.
    pub job: JobVars,
    /// RFC 3339 in the trigger's zone, as `apsched-scheduled-time` carries it.
    pub scheduled_time: String,
    /// Unix seconds.
    pub scheduled_timestamp: i64,
    /// 1 for the first attempt of the fire, 2 for the first retry, …
    pub attempt: u32,
    /// The fire's `idempotency-key`.
    pub idempotency_key: String,
    /// `run.kind`.
    pub run: RunVars,
}

/// The job a fire belongs to, as templates see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobVars {
    /// The job's id.
    pub id: String,
    /// The job's name; empty when it has none (or the job is gone).
    pub name: String,
    /// The job's labels; empty when it has none (or the job is gone).
    pub labels: BTreeMap<String, String>,
}

impl JobVars {
    /// What templates see of `job`.
    pub fn of(job: &crate::job::Job) -> JobVars {
        JobVars {
            id: job.id.clone(),
            name: job.name.clone().unwrap_or_default(),
            // Jobs carry no labels yet; once they do, this is `job.labels.clone()`.
            labels: BTreeMap::new(),
        }
    }
}

/// The run a fire is, as templates see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunVars {
    /// `scheduled`, `manual` or `backfill`.
    pub kind: String,
}

/// Strict: a variable or label that is not there is an error (a failed attempt), not an empty string sent as if
/// it were meant. `{{ job.labels.team | default("none") }}` says what to send instead.
fn environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment
}

/// Every templated string of the action with the field it sits in (inside the action): `url`, `headers.<name>`,
/// `body`, `json.<key>.<key>` (array items by index, `json.items.0`).
fn sources(action: &HttpAction) -> Vec<(String, &str)> {
    let mut sources = vec![("url".to_string(), action.url.as_str())];
    sources.extend(action.headers.iter().map(|(name, value)| (format!("headers.{name}"), value.as_str())));
    if let Some(body) = &action.body {
        sources.push(("body".to_string(), body.as_str()));
    }
    if let Some(json) = &action.json {
        json_strings(json, "json".to_string(), &mut sources);
    }
    sources
}

fn json_strings<'a>(value: &'a serde_json::Value, field: String, into: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::String(text) => into.push((field, text)),
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                json_strings(item, format!("{field}.{index}"), into);
            }
        }
        serde_json::Value::Object(members) => {
            for (key, member) in members {
                json_strings(member, format!("{field}.{key}"), into);
            }
        }
        _ => {}
    }
}

fn known(variable: &str) -> bool {
    VARIABLES.contains(&variable) || variable.starts_with("job.labels.")
}

/// minijinja's message and, where it has one, what it points at; without the template's made-up name.
fn describe(err: &minijinja::Error) -> String {
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(line) = err.line() {
        message.push_str(&format!(" (line {line})"));
    }
    message
}

/// Check every templated string of the action: it must compile and use only the template variables. The error is
/// (the field inside the action, message).
pub fn check(action: &HttpAction) -> Result<(), (String, String)> {
    let environment = environment();
    for (field, source) in sources(action) {
        let template = environment
            .template_from_str(source)
            .map_err(|err| (field.clone(), format!("is not a valid template: {}", describe(&err))))?;
        let used: HashSet<String> = template.undeclared_variables(true);
        let mut unknown: Vec<&String> = used.iter().filter(|variable| !known(variable)).collect();
        unknown.sort();
        if let Some(variable) = unknown.first() {
            return Err((
                field,
                format!(
                    "uses {variable:?}, which is not a template variable; there are: {}",
                    VARIABLES
                        .iter()
                        .filter(|v| v.contains('.') || ["job", "run"].iter().all(|p| *p != **v))
                        .copied()
                        .chain(["job.labels.<key>"])
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A fire to check a templated URL with at save: the URL must render to an absolute http(s) URL whatever the fire,
/// so its scheme and host must not depend on it (nor on labels, which are lenient here: a job may gain them later).
pub fn sample_url(action: &HttpAction) -> Result<String, String> {
    let sample = Vars {
        job: JobVars { id: "job".into(), name: "job".into(), labels: BTreeMap::new() },
        scheduled_time: "2026-01-01T00:00:00Z".into(),
        scheduled_timestamp: 1_767_225_600,
        attempt: 1,
        idempotency_key: "00000000-0000-7000-8000-000000000000".into(),
        run: RunVars { kind: "scheduled".into() },
    };
    Environment::new()
        .render_str(&action.url, sample)
        .map_err(|err| format!("does not render for a sample fire: {}", describe(&err)))
}

/// The action of one attempt: every templated string rendered with `vars`. The error is (the field inside the
/// action, message).
pub fn render(action: &HttpAction, vars: &Vars) -> Result<HttpAction, (String, String)> {
    let environment = environment();
    let render = |field: &str, source: &str| {
        environment.render_str(source, vars).map_err(|err| (field.to_string(), describe(&err)))
    };
    let mut rendered = action.clone();
    rendered.url = render("url", &action.url)?;
    for (name, value) in rendered.headers.iter_mut() {
        *value = render(&format!("headers.{name}"), value)?;
    }
    if let Some(body) = &mut rendered.body {
        *body = render("body", body)?;
    }
    if let Some(json) = &mut rendered.json {
        render_json(json, "json".to_string(), &render)?;
    }
    Ok(rendered)
}

fn render_json(
    value: &mut serde_json::Value,
    field: String,
    render: &dyn Fn(&str, &str) -> Result<String, FieldError>,
) -> Result<(), FieldError> {
    match value {
        serde_json::Value::String(text) => *text = render(&field, text)?,
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                render_json(item, format!("{field}.{index}"), render)?;
            }
        }
        serde_json::Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                render_json(member, format!("{field}.{key}"), render)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(json: serde_json::Value) -> HttpAction {
        serde_json::from_value(json).unwrap()
    }

    fn vars() -> Vars {
        Vars {
            job: JobVars { id: "nightly".into(), name: "Nightly".into(), labels: BTreeMap::new() },
            scheduled_time: "2026-06-01T02:00:00+02:00".into(),
            scheduled_timestamp: 1_780_272_000,
            attempt: 2,
            idempotency_key: "0190-key".into(),
            run: RunVars { kind: "scheduled".into() },
        }
    }

    #[test]
    fn every_templated_field_is_rendered_and_other_values_kept() {
        let templated = action(serde_json::json!({
            "url": "http://127.0.0.1:9/{{ job.id }}?at={{ scheduled_timestamp }}",
            "headers": {"X-Attempt": "{{ attempt }}", "X-Kind": "{{ run.kind }}"},
            "json": {"when": "{{ scheduled_time }}", "n": 3, "keys": ["{{ idempotency_key }}", true],
                     "nested": {"name": "{{ job.name | upper }}"}},
            "template": true
        }));
        check(&templated).unwrap();
        let rendered = render(&templated, &vars()).unwrap();
        assert_eq!(rendered.url, "http://127.0.0.1:9/nightly?at=1780272000");
        assert_eq!(rendered.headers["X-Attempt"], "2");
        assert_eq!(rendered.headers["X-Kind"], "scheduled");
        assert_eq!(
            rendered.json.unwrap(),
            serde_json::json!({"when": "2026-06-01T02:00:00+02:00", "n": 3, "keys": ["0190-key", true],
                               "nested": {"name": "NIGHTLY"}})
        );
        let body = action(serde_json::json!({"url": "http://h/", "body": "k={{ idempotency_key }}", "template": true}));
        assert_eq!(render(&body, &vars()).unwrap().body.as_deref(), Some("k=0190-key"));
    }

    #[test]
    fn a_template_that_does_not_compile_names_its_field() {
        let header = action(serde_json::json!({"url": "http://h/", "headers": {"X-Foo": "{{ job.id "}}));
        let (field, message) = check(&header).unwrap_err();
        assert_eq!(field, "headers.X-Foo");
        assert!(message.starts_with("is not a valid template: syntax error"), "{message}");
        let nested = action(serde_json::json!({"url": "http://h/", "json": {"a": {"b": "{% if %}"}}}));
        assert_eq!(check(&nested).unwrap_err().0, "json.a.b");
        let item = action(serde_json::json!({"url": "http://h/", "json": {"a": ["ok", "{{ }}"]}}));
        assert_eq!(check(&item).unwrap_err().0, "json.a.1");
        let body = action(serde_json::json!({"url": "http://h/", "body": "{% for k in job.labels %}"}));
        assert_eq!(check(&body).unwrap_err().0, "body");
    }

    #[test]
    fn an_unknown_variable_is_refused_at_save_and_labels_are_open() {
        let typo = action(serde_json::json!({"url": "http://h/{{ job.nmae }}"}));
        let (field, message) = check(&typo).unwrap_err();
        assert_eq!(field, "url");
        assert!(message.contains("\"job.nmae\"") && message.contains("job.name"), "{message}");
        assert_eq!(check(&action(serde_json::json!({"url": "http://h/", "body": "{{ now }}"}))).unwrap_err().0, "body");
        let label = action(serde_json::json!({"url": "http://h/", "body": "{{ job.labels.team | default('none') }}"}));
        check(&label).unwrap();
        assert_eq!(render(&label, &vars()).unwrap().body.as_deref(), Some("none"));
        // A loop's own variable is the template's, not a fire's.
        check(&action(serde_json::json!({"url": "http://h/", "body": "{% for k in job.labels %}{{ k }}{% endfor %}"})))
            .unwrap();
    }

    #[test]
    fn a_render_failure_names_its_field() {
        let missing_label =
            action(serde_json::json!({"url": "http://h/", "headers": {"X-Team": "{{ job.labels.team }}"}}));
        let (field, message) = render(&missing_label, &vars()).unwrap_err();
        assert_eq!(field, "headers.X-Team");
        assert!(message.contains("undefined"), "{message}");
    }
}
