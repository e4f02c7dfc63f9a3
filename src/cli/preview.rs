//! `apsched preview --trigger '<json>' [--count N] [--now <rfc3339>]`: the next fire times, one per line, in the
//! trigger's zone. The same `trigger::preview` backs `POST /v1/triggers/preview`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::trigger::{self, TriggerSpec, time::format_time};

/// Parse, resolve, compile and preview a trigger given as JSON; each line is one fire time.
pub fn preview_lines(
    trigger_json: &str,
    count: usize,
    now: DateTime<Utc>,
    default_tz: Tz,
) -> anyhow::Result<Vec<String>> {
    if count == 0 || count > trigger::MAX_PREVIEW_COUNT {
        anyhow::bail!("count: {count} is out of range 1–{}", trigger::MAX_PREVIEW_COUNT);
    }
    let deserializer = &mut serde_json::Deserializer::from_str(trigger_json);
    let spec: TriggerSpec = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        if path == "." {
            anyhow::anyhow!("trigger: {}", err.inner())
        } else {
            anyhow::anyhow!("trigger.{path}: {}", err.inner())
        }
    })?;
    let spec = spec.resolve(default_tz, now).map_err(|err| anyhow::anyhow!("trigger.{err}"))?;
    if !spec.calendar_ids().is_empty() {
        // Calendars live on a server; a local preview has none to apply.
        anyhow::bail!("trigger.exclude_calendars: calendars live on a server: add --server URL to preview with them");
    }
    let compiled = spec.compile(default_tz).map_err(|err| anyhow::anyhow!("trigger.{err}"))?;
    let tz = compiled.timezone();
    Ok(trigger::preview(&compiled, now, count).into_iter().map(|t| format_time(t, tz)).collect())
}
