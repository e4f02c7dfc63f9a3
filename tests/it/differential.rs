//! Runs the differential test against APScheduler 3.11.3 (`tests/it/differential.py`) on a fixed sample
//! and fails on any disagreement that docs/triggers.md does not explain. Needs `python3`; the script creates its
//! virtualenv (apscheduler==3.11.3, tzdata) on first use, which needs PyPI, and reuses it afterwards.

use std::path::Path;
use std::process::Command;

use apsched::trigger::TriggerSpec;
use chrono_tz::Tz;

/// Small enough to finish well within a minute once the virtualenv exists, large enough to meet DST transitions.
const CASES: &str = "150";
/// Fixed so that a failure reproduces: `differential.py --seed 20261125 --cases 150 --verbose`.
const SEED: &str = "20261125";
const ALL_KINDS: &str = "date,interval,calendarinterval,cron,crontab,or,and";
const KINDS_WITHOUT_CRON: &str = "date,interval,calendarinterval,or,and";

/// The cron trigger is built elsewhere; until it compiles here, its cases would only measure its absence.
fn cron_is_built() -> bool {
    serde_json::from_str::<TriggerSpec>(r#"{"type": "cron", "crontab": "*/5 * * * *"}"#)
        .ok()
        .is_some_and(|spec| spec.compile(Tz::UTC).is_ok())
}

#[test]
fn apsched_agrees_with_apscheduler() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 is not installed: the differential test against APScheduler cannot run");
        return;
    }
    let kinds = if cron_is_built() { ALL_KINDS } else { KINDS_WITHOUT_CRON };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/differential.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(["--apsched", env!("CARGO_BIN_EXE_apsched"), "--cases", CASES, "--seed", SEED, "--kinds", kinds])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("kinds: {kinds}\n{stdout}");
    assert!(output.status.success(), "the differential test failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(&format!("agreement: {CASES}/{CASES}")), "unexpected report:\n{stdout}");
}
