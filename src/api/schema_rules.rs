//! Rules the server enforces on strings that the derived schemas cannot say by themselves: timezone names, the
//! time and date grammars, calendar ids, header names and values, signing secrets, list bounds. They are written
//! into the spec here, from the same constants the validators use, so a generated client refuses what the server
//! would refuse (and the tests below check the server accepts every value a pattern allows).

use serde_json::{Value, json};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{Components, RefOr};

use crate::action::{MAX_HEADERS, signing};
use crate::calendar::{MAX_DATES, MAX_RANGES, WEEKDAYS};
use crate::scheduler::calendars::MAX_CHECK_TIMES;

/// An instant as `parse_time` reads it: RFC 3339, or a naive date-time (seconds and fraction optional) or date.
/// Day numbers a month lacks (`02-30`) match and are still refused with 422: a pattern cannot count leap years.
pub const TIME_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?|[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$";
/// An instant with its offset, as RFC 3339 (and chrono's reading of it) writes it.
pub const RFC3339_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";
/// A whole day.
pub const DATE_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";
/// An HTTP header name: an RFC 9110 token.
pub const HEADER_NAME_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/// An HTTP header value: no control character but tab.
pub const HEADER_VALUE_PATTERN: &str = "^[^\\u0000-\\u0008\\u000A-\\u001F\\u007F]*$";
/// A calendar id in a `PUT` body: an id, or empty (the path names it).
const CALENDAR_BODY_ID_PATTERN: &str = r"^([A-Za-z0-9._:-]{1,200})?$";

/// `whsec_` and the canonical base64 (padded, no stray bits) of 24–64 bytes, as `SigningKey::parse` takes it; or
/// the mask a job is shown with, which a change sends back to keep the stored secret.
pub fn signing_secret_pattern() -> String {
    const B64: &str = "[A-Za-z0-9+/]";
    // 1 byte left over: one character and a character whose low 4 bits are zero, then `==`; 2 bytes: low 2 bits.
    let one = format!("{B64}[AQgw]==");
    let two = format!("{B64}{{2}}[AEIMQUYcgkosw048]=");
    let (min, max) = (signing::MIN_SECRET_BYTES / 3, signing::MAX_SECRET_BYTES / 3);
    // Only 63 and 64 bytes make `max` whole groups, so the longest secrets take at most the one-byte tail.
    let mask = crate::action::MASK.replace('*', r"\*");
    let prefix = signing::SECRET_PREFIX;
    let groups = format!("({B64}{{4}}){{{min},{}}}({one}|{two})?|({B64}{{4}}){{{max}}}({one})?", max - 1);
    format!("^({mask}|{prefix}({groups}))$")
}

/// Every zone name `chrono_tz` parses, as the `Timezone` component, with a constant name for each in generated
/// clients (`x-enum-varnames`): without them, generators fold `GMT+0`, `GMT-0` and `GMT0` into one name and fail.
fn timezone_schema() -> Value {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    let constants: Vec<String> = names.iter().map(|name| zone_constant(name)).collect();
    json!({
        "type": "string",
        "description": "An IANA timezone name, as the tz database (bundled with the server) spells it.",
        "enum": names,
        "x-enum-varnames": constants,
        "example": "Europe/Berlin",
    })
}

/// `Etc/GMT+5` → `ETC_GMT_PLUS_5`, `America/Port-au-Prince` → `AMERICA_PORT_AU_PRINCE`: a sign before a digit is
/// spelt out (it tells offsets apart), any other character but a letter or digit is `_`.
fn zone_constant(name: &str) -> String {
    let mut constant = String::with_capacity(name.len() + 8);
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        let before_digit = chars.peek().is_some_and(char::is_ascii_digit);
        match c {
            '+' if before_digit => constant.push_str("_PLUS_"),
            '-' if before_digit => constant.push_str("_MINUS_"),
            c if c.is_ascii_alphanumeric() => constant.push(c.to_ascii_uppercase()),
            _ => constant.push('_'),
        }
    }
    constant
}

/// The trigger specs and the calendar: the schemas with a `timezone`.
const ZONED: [&str; 6] = ["DateSpec", "IntervalSpec", "CronSpec", "CalendarIntervalSpec", "CombineSpec", "Calendar"];

pub fn document(spec: &mut utoipa::openapi::OpenApi) {
    optional_bodies(spec);
    let Some(components) = spec.components.as_mut() else { return };
    if let Ok(timezone) = serde_json::from_value(timezone_schema()) {
        components.schemas.insert("Timezone".to_string(), timezone);
    }
    for name in ZONED {
        edit(components, name, "timezone", |property| {
            let description = property.get("description").cloned().unwrap_or(Value::Null);
            *property = json!({"oneOf": [{"$ref": "#/components/schemas/Timezone"}, {"type": "null"}],
                               "description": description});
        });
        for time in ["run_date", "start_date", "end_date"] {
            edit(components, name, time, |property| property["pattern"] = json!(TIME_PATTERN));
        }
        edit(components, name, "exclude_calendars", |property| {
            property["items"]["pattern"] = json!(crate::job::ID_PATTERN)
        });
    }
    edit(components, "Calendar", "id", |id| {
        id["pattern"] = json!(CALENDAR_BODY_ID_PATTERN);
        id["maxLength"] = json!(200);
    });
    edit(components, "Calendar", "base", |base| base["pattern"] = json!(crate::job::ID_PATTERN));
    edit(components, "Exclude", "dates", |dates| {
        dates["items"]["pattern"] = json!(DATE_PATTERN);
        dates["maxItems"] = json!(MAX_DATES);
    });
    edit(components, "Exclude", "ranges", |ranges| ranges["maxItems"] = json!(MAX_RANGES));
    edit(components, "Exclude", "weekdays", |weekdays| weekdays["items"]["enum"] = json!(WEEKDAYS));
    for end in ["start", "end"] {
        edit(components, "Range", end, |time| time["pattern"] = json!(TIME_PATTERN));
    }
    edit(components, "CheckIn", "times", |times| {
        times["items"]["pattern"] = json!(TIME_PATTERN);
        times["maxItems"] = json!(MAX_CHECK_TIMES);
    });
    for end in ["start", "end"] {
        edit(components, "BackfillIn", end, |time| time["pattern"] = json!(TIME_PATTERN));
    }
    edit(components, "PauseIn", "until", |until| until["pattern"] = json!(RFC3339_PATTERN));
    edit(components, "HttpAction", "headers", |headers| {
        headers["propertyNames"]["pattern"] = json!(HEADER_NAME_PATTERN);
        headers["additionalProperties"]["pattern"] = json!(HEADER_VALUE_PATTERN);
        headers["maxProperties"] = json!(MAX_HEADERS);
    });
    edit(components, "HttpAction", "signing_secret", |secret| secret["pattern"] = json!(signing_secret_pattern()));
}

/// An optional body (`Option<T>` in a handler) is written as "not required, a `T` when present" rather than as
/// a nullable `T`: generated clients (openapi-python-client) otherwise send their "unset" marker as the body.
fn optional_bodies(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::Required;
    use utoipa::openapi::schema::OneOf;
    for item in spec.paths.paths.values_mut() {
        let operations = [&mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten();
        let bodies = operations.filter_map(|operation| match operation.request_body.as_mut() {
            Some(RefOr::T(body)) => Some(body),
            _ => None,
        });
        for body in bodies {
            for content in body.content.values_mut() {
                let RefOr::T(content) = content else { continue };
                let Some(RefOr::T(Schema::OneOf(OneOf { items, .. }))) = &content.schema else { continue };
                let [RefOr::Ref(present), _null] = items.as_slice() else { continue };
                let present = RefOr::Ref(present.clone());
                content.schema = Some(present);
                body.required = Some(Required::False);
            }
        }
    }
}

/// Change the schema of `property` in the object schema `name` as JSON. Only the property's own schema goes
/// through JSON and back (utoipa cannot read back every schema it writes, an untyped one such as `json` among
/// them); a schema or property renamed away is left alone, and the tests below then name it.
fn edit(components: &mut Components, name: &str, property: &str, change: impl FnOnce(&mut Value)) {
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) else { return };
    let Some(schema) = object.properties.get_mut(property) else { return };
    let Ok(mut value) = serde_json::to_value(&*schema) else { return };
    change(&mut value);
    if let Ok(changed) = serde_json::from_value(value) {
        *schema = changed;
    }
}

#[cfg(test)]
mod tests {
    use chrono_tz::Tz;
    use proptest::prelude::*;
    use proptest::string::string_regex;

    use super::*;
    use crate::action::signing::SigningKey;
    use crate::trigger::time::parse_time;

    fn spec() -> Value {
        serde_json::to_value(crate::api::openapi()).unwrap()
    }

    /// The JSON Schema patterns here are also valid Rust regexes; `string_regex` generates from the Rust reading.
    fn strategy(pattern: &str) -> impl Strategy<Value = String> {
        let body = pattern.trim_start_matches('^').trim_end_matches('$');
        string_regex(&format!("(?s){body}")).unwrap()
    }

    #[test]
    fn every_rule_lands_on_its_property() {
        let spec = spec();
        let schema = |pointer: &str| spec.pointer(pointer).unwrap_or_else(|| panic!("{pointer} is missing")).clone();
        for name in ZONED {
            let timezone = schema(&format!("/components/schemas/{name}/properties/timezone/oneOf/0/$ref"));
            assert_eq!(timezone, "#/components/schemas/Timezone", "{name}");
        }
        assert_eq!(schema("/components/schemas/CronSpec/properties/start_date/pattern"), TIME_PATTERN);
        assert_eq!(schema("/components/schemas/DateSpec/properties/run_date/pattern"), TIME_PATTERN);
        assert_eq!(schema("/components/schemas/Range/properties/end/pattern"), TIME_PATTERN);
        assert_eq!(schema("/components/schemas/BackfillIn/properties/start/pattern"), TIME_PATTERN);
        assert_eq!(schema("/components/schemas/PauseIn/properties/until/pattern"), RFC3339_PATTERN);
        assert_eq!(schema("/components/schemas/Exclude/properties/dates/items/pattern"), DATE_PATTERN);
        assert_eq!(schema("/components/schemas/Exclude/properties/weekdays/items/enum/6"), "sun");
        assert_eq!(schema("/components/schemas/CheckIn/properties/times/maxItems"), MAX_CHECK_TIMES);
        assert_eq!(schema("/components/schemas/Calendar/properties/base/pattern"), crate::job::ID_PATTERN);
        let headers = schema("/components/schemas/HttpAction/properties/headers");
        assert_eq!(headers["propertyNames"]["pattern"], HEADER_NAME_PATTERN);
        assert_eq!(headers["additionalProperties"]["pattern"], HEADER_VALUE_PATTERN);
        let secret = schema("/components/schemas/HttpAction/properties/signing_secret/pattern");
        assert_eq!(secret, signing_secret_pattern());
        let zones = schema("/components/schemas/Timezone/enum");
        assert!(zones.as_array().unwrap().iter().any(|zone| zone == "America/New_York"));
    }

    #[test]
    fn every_zone_has_its_own_constant() {
        let constants: std::collections::HashSet<String> =
            chrono_tz::TZ_VARIANTS.iter().map(|tz| zone_constant(tz.name())).collect();
        assert_eq!(constants.len(), chrono_tz::TZ_VARIANTS.len());
        assert_eq!(zone_constant("Etc/GMT+5"), "ETC_GMT_PLUS_5");
        assert_eq!(zone_constant("GMT-0"), "GMT_MINUS_0");
        assert_eq!(zone_constant("America/Port-au-Prince"), "AMERICA_PORT_AU_PRINCE");
    }

    #[test]
    fn every_zone_in_the_enum_parses() {
        for tz in chrono_tz::TZ_VARIANTS {
            assert_eq!(tz.name().parse::<Tz>().ok(), Some(tz));
        }
    }

    #[test]
    fn the_secret_pattern_takes_exactly_the_secrets_the_server_takes() {
        let pattern = regex::Regex::new(&signing_secret_pattern()).unwrap();
        use base64::Engine;
        for bytes in 0..=80usize {
            let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(vec![0xA5u8; bytes]));
            assert_eq!(pattern.is_match(&secret), SigningKey::parse(&secret).is_ok(), "{bytes} bytes: {secret}");
            assert!(pattern.is_match(crate::action::MASK));
        }
        // Non-zero bits after the last byte decode nowhere: base64 refuses them, and so does the pattern.
        let stray = format!("whsec_{}B==", "A".repeat(4 * 8 + 1));
        assert!(SigningKey::parse(&stray).is_err());
        assert!(!pattern.is_match(&stray));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_server_takes_every_secret_the_pattern_allows(secret in strategy(&signing_secret_pattern())) {
            prop_assert!(secret == crate::action::MASK || SigningKey::parse(&secret).is_ok(), "{secret}");
        }

        #[test]
        fn the_server_takes_every_header_the_patterns_allow(
            name in strategy(HEADER_NAME_PATTERN).prop_filter("short", |n| n.len() < 200),
            // HEADER_VALUE_PATTERN, as a Rust character class.
            value in "[^\u{0}-\u{8}\u{a}-\u{1f}\u{7f}]{0,40}",
        ) {
            prop_assert!(reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok(), "{name}");
            prop_assert!(reqwest::header::HeaderValue::from_str(&value).is_ok(), "{value:?}");
        }

        #[test]
        fn every_instant_the_rfc3339_pattern_allows_on_a_day_every_month_has_parses(
            time in strategy(RFC3339_PATTERN).prop_filter("a day every month has", |t| t[8..10].parse::<u32>().unwrap() <= 28),
        ) {
            prop_assert!(chrono::DateTime::parse_from_rfc3339(&time).is_ok(), "{time}");
        }

        #[test]
        fn every_time_the_pattern_allows_on_a_day_every_month_has_parses(
            time in strategy(TIME_PATTERN).prop_filter("a day every month has", |t| t[8..10].parse::<u32>().unwrap() <= 28),
        ) {
            prop_assert!(parse_time("start_date", &time, Tz::UTC).is_ok(), "{time}");
        }
    }
}
