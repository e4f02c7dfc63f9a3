//! What the CLI prints for people: aligned tables and short summaries. `--json` bypasses all of this.

use serde_json::Value;

/// Columns padded to their widest cell; the last column is not padded, so lines carry no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|row| line(row.iter().map(String::as_str).collect())));
    out.join("\n")
}

/// What an audit entry changed, in a few words: `added`, `removed`, or the fields whose values differ (`name,
/// trigger`); `updated_at` changes with everything and is left out. `-` when the job is as it was.
pub fn audit_change(before: &Value, after: &Value) -> String {
    match (before.as_object(), after.as_object()) {
        (None, Some(_)) => "added".to_string(),
        (Some(_), None) => "removed".to_string(),
        (Some(before), Some(after)) => {
            let mut fields: Vec<&str> = after
                .iter()
                .filter(|(name, value)| *name != "updated_at" && before.get(name.as_str()) != Some(value))
                .map(|(name, _)| name.as_str())
                .chain(before.keys().filter(|name| !after.contains_key(name.as_str())).map(String::as_str))
                .collect();
            fields.sort_unstable();
            if fields.is_empty() { "-".to_string() } else { fields.join(", ") }
        }
        (None, None) => "-".to_string(),
    }
}

/// A value as a table cell: strings bare, null as "-".
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

const INTERVAL_FIELDS: [(&str, &str); 5] =
    [("weeks", "w"), ("days", "d"), ("hours", "h"), ("minutes", "m"), ("seconds", "s")];
const CRON_FIELDS: [&str; 8] = ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"];

/// A trigger in one short line: `every 1h30m`, `cron */5 * * * *`, `cron hour=9-17 minute=*/15`, with its zone.
pub fn trigger_summary(trigger: &Value) -> String {
    let number = |v: &Value| v.as_f64().map(|n| if n.fract() == 0.0 { format!("{n:.0}") } else { n.to_string() });
    let text = match trigger["type"].as_str().unwrap_or("?") {
        "date" => format!("once at {}", cell(&trigger["run_date"])),
        "interval" => {
            let parts: String = INTERVAL_FIELDS
                .iter()
                .filter_map(|(field, unit)| number(&trigger[*field]).filter(|n| n != "0").map(|n| format!("{n}{unit}")))
                .collect();
            format!("every {parts}")
        }
        "cron" => match trigger["crontab"].as_str() {
            Some(crontab) => format!("cron {crontab}"),
            None => {
                let fields: Vec<String> = CRON_FIELDS
                    .iter()
                    .filter(|field| !trigger[**field].is_null())
                    .map(|field| format!("{field}={}", cell(&trigger[*field])))
                    .collect();
                format!("cron {}", fields.join(" "))
            }
        },
        "calendarinterval" => {
            let every: Vec<String> = ["years", "months", "weeks", "days"]
                .iter()
                .filter_map(|field| number(&trigger[*field]).filter(|n| n != "0").map(|n| format!("{n} {field}")))
                .collect();
            let at = |field: &str| trigger[field].as_i64().unwrap_or(0);
            format!("every {} at {:02}:{:02}:{:02}", every.join(" "), at("hour"), at("minute"), at("second"))
        }
        kind @ ("and" | "or") => {
            let children: Vec<String> =
                trigger["triggers"].as_array().into_iter().flatten().map(trigger_summary).collect();
            format!("{kind}({})", children.join("; "))
        }
        other => other.to_string(),
    };
    let text = match trigger["timezone"].as_str() {
        Some(zone) => format!("{text} [{zone}]"),
        None => text,
    };
    let calendars: Vec<String> = trigger["exclude_calendars"].as_array().into_iter().flatten().map(cell).collect();
    if calendars.is_empty() { text } else { format!("{text} except {}", calendars.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_change_names_the_fields_that_differ() {
        use serde_json::json;
        let before = json!({"id": "a", "name": "x", "paused": false, "updated_at": "1"});
        assert_eq!(audit_change(&Value::Null, &before), "added");
        assert_eq!(audit_change(&before, &Value::Null), "removed");
        assert_eq!(audit_change(&Value::Null, &Value::Null), "-");
        let after = json!({"id": "a", "name": "y", "paused": true, "updated_at": "2"});
        assert_eq!(audit_change(&before, &after), "name, paused");
        assert_eq!(audit_change(&before, &json!({"id": "a", "name": "x", "paused": false, "updated_at": "3"})), "-");
    }
    use serde_json::json;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let text = table(&["ID", "STATE"], &[vec!["a-long-id".into(), "active".into()], vec!["b".into(), "-".into()]]);
        assert_eq!(text, "ID         STATE\na-long-id  active\nb          -");
    }

    #[test]
    fn triggers_read_briefly() {
        assert_eq!(trigger_summary(&json!({"type": "interval", "hours": 1.0, "minutes": 30.0})), "every 1h30m");
        assert_eq!(
            trigger_summary(&json!({"type": "cron", "crontab": "*/5 * * * *", "timezone": "Europe/Berlin"})),
            "cron */5 * * * * [Europe/Berlin]"
        );
        assert_eq!(
            trigger_summary(&json!({"type": "cron", "hour": "9-17", "minute": "*/15"})),
            "cron hour=9-17 minute=*/15"
        );
        assert_eq!(
            trigger_summary(&json!({"type": "date", "run_date": "2026-12-01T10:00:00Z"})),
            "once at 2026-12-01T10:00:00Z"
        );
        assert_eq!(
            trigger_summary(&json!({"type": "calendarinterval", "months": 1, "hour": 9})),
            "every 1 months at 09:00:00"
        );
        assert_eq!(
            trigger_summary(
                &json!({"type": "or", "triggers": [{"type": "interval", "seconds": 5.0}, {"type": "cron", "crontab": "@daily"}]})
            ),
            "or(every 5s; cron @daily)"
        );
    }
}
