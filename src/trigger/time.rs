//! Times as clients write them: RFC 3339 with an offset, or a naive date-time or date read in the trigger's zone
//! (as APScheduler reads naive datetimes).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use super::{TriggerError, wall};

/// Parse `value` of `field`: RFC 3339 (`2026-04-15T17:00:00+02:00`), a naive date-time (`2026-04-15 17:00:00`,
/// `2026-04-15T17:00`) or a date (`2026-04-15`, midnight), the naive forms read in `tz`.
pub fn parse_time(field: &str, value: &str, tz: Tz) -> Result<DateTime<Utc>, TriggerError> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    const NAIVE_FORMATS: [&str; 4] =
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"];
    for format in NAIVE_FORMATS {
        if let Ok(local) = NaiveDateTime::parse_from_str(value, format) {
            return Ok(wall::resolve_earliest(tz, local));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(wall::resolve_earliest(tz, date.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    Err(TriggerError::new(
        field,
        format!(
            "{value:?} is not a time: use RFC 3339 (2026-04-15T17:00:00+02:00), or a date-time or date read in the trigger's timezone (2026-04-15 17:00:00, 2026-04-15)"
        ),
    ))
}

/// Parse an IANA zone name, or take the default.
pub fn parse_timezone(value: Option<&str>, default_tz: Tz) -> Result<Tz, TriggerError> {
    match value {
        None => Ok(default_tz),
        Some(name) => name.parse::<Tz>().map_err(|_| {
            TriggerError::new(
                "timezone",
                format!("{name:?} is not an IANA timezone name (such as Europe/Berlin or UTC)"),
            )
        }),
    }
}

/// An instant written in a zone, as every API response and the preview command write times.
pub fn format_time(instant: DateTime<Utc>, tz: Tz) -> String {
    instant.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_times_are_read_in_the_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = parse_time("start_date", "2026-04-15 17:00:00", berlin).unwrap();
        assert_eq!(format_time(t, berlin), "2026-04-15T17:00:00+02:00");
        let d = parse_time("start_date", "2026-04-15", berlin).unwrap();
        assert_eq!(format_time(d, Tz::UTC), "2026-04-14T22:00:00+00:00");
        let z = parse_time("start_date", "2026-04-15T17:00:00Z", berlin).unwrap();
        assert_eq!(format_time(z, berlin), "2026-04-15T19:00:00+02:00");
    }

    #[test]
    fn a_bad_time_names_the_field_and_value() {
        let err = parse_time("end_date", "tomorrow", Tz::UTC).unwrap_err();
        assert_eq!(err.field, "end_date");
        assert!(err.message.contains("\"tomorrow\""));
        let err = parse_timezone(Some("Mars/Olympus"), Tz::UTC).unwrap_err();
        assert_eq!(err.field, "timezone");
    }
}
