//! Shorthand flags for `jobs add` / `jobs edit` / `preview` (`--cron`, `--interval 5m`, `--header K:V`, …) turned
//! into the API's JSON. Pure functions: the server still validates everything; these only reject what cannot be
//! written as JSON at all, so the user hears about it before anything is sent.

use serde_json::{Map, Value, json};

use super::client::CliError;

/// `--interval` units, largest first, as the API's interval fields.
const INTERVAL_UNITS: [(&str, &str); 5] =
    [("w", "weeks"), ("d", "days"), ("h", "hours"), ("m", "minutes"), ("s", "seconds")];

/// `30s`, `5m`, `2h`, `1d`, `1w`, combinations such as `1h30m`, or a bare number of seconds → an interval trigger.
pub fn interval_trigger(text: &str) -> Result<Value, CliError> {
    let bad = || {
        CliError::usage(format!(
            "--interval {text:?}: write a duration such as 30s, 5m, 2h, 1d, 1w or 1h30m (a bare number is seconds)"
        ))
    };
    let text = text.trim();
    let mut trigger = Map::from_iter([("type".to_string(), json!("interval"))]);
    if let Ok(seconds) = text.parse::<f64>() {
        trigger.insert("seconds".into(), json!(seconds));
        return Ok(Value::Object(trigger));
    }
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let amount: f64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len() - digits);
        let unit = &rest[digits..digits + unit_len];
        let (_, field) = INTERVAL_UNITS.iter().find(|(short, _)| *short == unit).ok_or_else(bad)?;
        let sum = trigger.get(*field).and_then(Value::as_f64).unwrap_or(0.0) + amount;
        trigger.insert(field.to_string(), json!(sum));
        rest = &rest[digits + unit_len..];
    }
    if trigger.len() == 1 {
        return Err(bad());
    }
    Ok(Value::Object(trigger))
}

/// `Name: value` (or `Name:value`) → (name, value).
pub fn header(text: &str) -> Result<(String, String), CliError> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.trim().to_string())),
        _ => Err(CliError::usage(format!("--header {text:?}: write it as \"Name: value\""))),
    }
}

/// A JSON argument or file content that must be an object (a job, a patch, a trigger).
pub fn json_object(what: &str, text: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CliError::usage(format!("{what}: expected a JSON object, got {other}"))),
        Err(err) => Err(CliError::usage(format!("{what}: not JSON: {err}"))),
    }
}

/// Any JSON value (a webhook body).
pub fn json_value(what: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|err| CliError::usage(format!("{what}: not JSON: {err}")))
}

/// The trigger the flags describe, if any: at most one of `--trigger`, `--cron`, `--interval`, `--at` (clap
/// enforces that), with `--timezone` put into it.
pub fn trigger(
    trigger_json: Option<&str>,
    cron: Option<&str>,
    interval: Option<&str>,
    at: Option<&str>,
    timezone: Option<&str>,
) -> Result<Option<Value>, CliError> {
    let mut trigger = match (trigger_json, cron, interval, at) {
        (Some(text), ..) => json_object("--trigger", text)?,
        (_, Some(crontab), ..) => Map::from_iter([("type".into(), json!("cron")), ("crontab".into(), json!(crontab))]),
        (_, _, Some(interval), _) => match interval_trigger(interval)? {
            Value::Object(map) => map,
            _ => unreachable!("interval_trigger builds an object"),
        },
        (.., Some(at)) => Map::from_iter([("type".into(), json!("date")), ("run_date".into(), json!(at))]),
        _ => {
            return match timezone {
                Some(_) => Err(CliError::usage("--timezone needs a trigger: --cron, --interval, --at or --trigger")),
                None => Ok(None),
            };
        }
    };
    if let Some(zone) = timezone {
        trigger.insert("timezone".into(), json!(zone));
    }
    Ok(Some(Value::Object(trigger)))
}

/// `--misfire-grace-time 30` or `none` (always run, however late) → the API's number or null.
pub fn misfire(text: &str) -> Result<Value, CliError> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    text.parse::<u32>()
        .map(|seconds| json!(seconds))
        .map_err(|_| CliError::usage(format!("--misfire-grace-time {text:?}: a whole number of seconds, or none")))
}

/// `--max-catchup-runs`: a whole number, or `none` for no bound.
pub fn max_catchup_runs(text: &str) -> Result<Value, CliError> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Value::Null);
    }
    text.parse::<u32>()
        .map(|runs| json!(runs))
        .map_err(|_| CliError::usage(format!("--max-catchup-runs {text:?}: a whole number, or none")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_units_and_combinations() {
        assert_eq!(interval_trigger("30s").unwrap(), json!({"type": "interval", "seconds": 30.0}));
        assert_eq!(interval_trigger("5m").unwrap(), json!({"type": "interval", "minutes": 5.0}));
        assert_eq!(interval_trigger("1h30m").unwrap(), json!({"type": "interval", "hours": 1.0, "minutes": 30.0}));
        assert_eq!(interval_trigger("2w").unwrap(), json!({"type": "interval", "weeks": 2.0}));
        assert_eq!(interval_trigger("1.5h").unwrap(), json!({"type": "interval", "hours": 1.5}));
        assert_eq!(interval_trigger("90").unwrap(), json!({"type": "interval", "seconds": 90.0}));
        for bad in ["", "5x", "m5", "5 minutes", "1h30", "h"] {
            assert!(matches!(interval_trigger(bad), Err(CliError::Usage(_))), "{bad:?} was accepted");
        }
    }

    #[test]
    fn headers_split_at_the_first_colon() {
        assert_eq!(header("Authorization: Bearer a:b").unwrap(), ("Authorization".into(), "Bearer a:b".into()));
        assert_eq!(header("X-Kind:nightly").unwrap(), ("X-Kind".into(), "nightly".into()));
        assert!(header("no colon").is_err());
        assert!(header(": value").is_err());
    }

    #[test]
    fn triggers_from_flags() {
        assert_eq!(
            trigger(None, Some("*/5 * * * *"), None, None, Some("Europe/Berlin")).unwrap(),
            Some(json!({"type": "cron", "crontab": "*/5 * * * *", "timezone": "Europe/Berlin"}))
        );
        assert_eq!(
            trigger(None, None, None, Some("2026-12-01 10:00"), None).unwrap(),
            Some(json!({"type": "date", "run_date": "2026-12-01 10:00"}))
        );
        assert_eq!(trigger(None, None, None, None, None).unwrap(), None);
        assert!(trigger(None, None, None, None, Some("UTC")).is_err());
        assert!(trigger(Some("[1]"), None, None, None, None).is_err());
    }

    #[test]
    fn misfire_takes_seconds_or_none() {
        assert_eq!(misfire("30").unwrap(), json!(30));
        assert_eq!(misfire("None").unwrap(), Value::Null);
        assert!(misfire("-1").is_err());
    }
}
