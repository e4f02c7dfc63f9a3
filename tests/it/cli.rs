//! The CLI client end to end: the real `apsched` binary against a real server on 127.0.0.1:0, a real receiver
//! for the webhooks; every verb, `--json` parsed, and the exit codes of each kind of failure.

use std::process::Stdio;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_apsched");
/// The documented exit codes (README, `cli::client`).
const EXIT_API_REFUSED: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_SERVER: i32 = 3;

#[derive(Debug)]
pub(crate) struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {self:#?}"))
    }

    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        &self.stdout
    }
}

/// Run the binary with `APSCHED_URL` pointing at `server` (and no token unless given), feeding `stdin`.
pub(crate) async fn apsched(server: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Outcome {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env_remove("APSCHED_TOKEN")
        .env_remove("APSCHED_REASON")
        .env("APSCHED_URL", server)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the apsched binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("apsched {args:?} did not finish within {PATIENCE:?}"))
        .unwrap();
    Outcome {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn every_jobs_verb_works_and_json_output_parses() {
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();
    let hook = receiver.url("ok/cli");

    // add: shorthand flags.
    let added = apsched(
        base,
        &[
            "jobs",
            "add",
            "--id",
            "short",
            "--name",
            "Short one",
            "--cron",
            "*/5 * * * *",
            "--timezone",
            "Europe/Berlin",
            "--url",
            &hook,
            "--method",
            "put",
            "--header",
            "Authorization: Bearer s3cret",
            "--header",
            "X-Kind: report",
            "--json-body",
            r#"{"kind": "nightly"}"#,
            "--json",
        ],
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(added["id"], "short");
    assert_eq!(added["name"], "Short one");
    assert_eq!(added["trigger"], json!({"type": "cron", "crontab": "*/5 * * * *", "timezone": "Europe/Berlin"}));
    assert_eq!(added["action"]["method"], "PUT");
    assert_eq!(added["action"]["headers"]["Authorization"], "********", "secrets are masked");
    assert_eq!(added["action"]["headers"]["X-Kind"], "report");
    assert_eq!(added["action"]["json"], json!({"kind": "nightly"}));
    assert!(added["next_run_time"].as_str().is_some_and(|t| t.ends_with("+01:00") || t.ends_with("+02:00")));

    // add: a job as JSON on standard input, and from a file with a flag overriding it.
    let from_stdin = json!({"id": "stdin-job", "trigger": {"type": "interval", "hours": 1}, "action": {"url": hook}});
    let added = apsched(base, &["jobs", "add", "-", "--json"], &[], Some(&from_stdin.to_string())).await.json();
    assert_eq!(added["trigger"]["type"], "interval");
    let file = tempfile::NamedTempFile::new().unwrap();
    let from_file = json!({"id": "file-job", "name": "from the file", "action": {"url": hook}, "trigger": {"type": "date", "run_date": "2099-01-01 10:00"}});
    std::fs::write(file.path(), from_file.to_string()).unwrap();
    let path = file.path().to_str().unwrap();
    let added = apsched(base, &["jobs", "add", path, "--name", "flag wins", "--json"], &[], None).await.json();
    assert_eq!(added["name"], "flag wins");
    assert_eq!(added["next_run_time"], "2099-01-01T10:00:00+00:00");

    // list: JSON and the human table.
    let listed = apsched(base, &["jobs", "list", "--json"], &[], None).await.json();
    let mut ids: Vec<&str> = listed.as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["file-job", "short", "stdin-job"]);
    let table = apsched(base, &["jobs", "list"], &[], None).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("NEXT RUN"), "{table:#?}");
    assert_eq!(lines.len(), 4, "{table:#?}");
    assert!(table.stdout.contains("cron */5 * * * * [Europe/Berlin]"), "{table:#?}");
    let limited = apsched(base, &["jobs", "list", "--limit", "2", "--json"], &[], None).await.json();
    assert_eq!(limited.as_array().unwrap().len(), 2);

    // get.
    let got = apsched(base, &["jobs", "get", "short", "--json"], &[], None).await.json();
    assert_eq!(got["id"], "short");
    let human = apsched(base, &["jobs", "get", "short"], &[], None).await;
    assert!(human.ok().contains("Authorization: ********"), "{human:#?}");

    // edit: a new trigger reschedules; the name goes with it.
    let edited =
        apsched(base, &["jobs", "edit", "short", "--interval", "1h30m", "--name", "renamed", "--json"], &[], None)
            .await
            .json();
    assert_eq!(edited["trigger"]["type"], "interval");
    assert_eq!(edited["trigger"]["hours"], 1.0);
    assert_eq!(edited["trigger"]["minutes"], 30.0);
    assert_eq!(edited["name"], "renamed");
    // Changing the webhook of a job with a masked secret must not save the mask: refused until it is given again.
    let masked = apsched(base, &["jobs", "edit", "short", "--url", &receiver.url("ok/cli2")], &[], None).await;
    assert_eq!(masked.code, EXIT_USAGE, "{masked:#?}");
    assert!(masked.stderr.contains("action.headers: Authorization is a masked secret"), "{masked:#?}");
    let edited = apsched(
        base,
        &[
            "jobs",
            "edit",
            "short",
            "--url",
            &receiver.url("ok/cli2"),
            "--header",
            "authorization: Bearer new",
            "--json",
        ],
        &[],
        None,
    )
    .await
    .json();
    assert!(edited["action"]["url"].as_str().unwrap().ends_with("/ok/cli2"));
    assert_eq!(edited["action"]["headers"]["X-Kind"], "report", "unnamed parts of the action stay");
    assert_eq!(edited["action"]["json"], json!({"kind": "nightly"}));
    // A JSON patch from standard input.
    let patched =
        apsched(base, &["jobs", "edit", "short", "-", "--json"], &[], Some(r#"{"max_instances": 3}"#)).await.json();
    assert_eq!(patched["max_instances"], 3);
    let nothing = apsched(base, &["jobs", "edit", "short"], &[], None).await;
    assert_eq!(nothing.code, EXIT_USAGE, "{nothing:#?}");

    // pause and resume.
    let paused = apsched(base, &["jobs", "pause", "stdin-job", "--json"], &[], None).await.json();
    assert_eq!(paused["paused"], true);
    assert!(paused["next_run_time"].is_null());
    let only_paused = apsched(base, &["jobs", "list", "--paused", "--json"], &[], None).await.json();
    assert_eq!(only_paused.as_array().unwrap().len(), 1);
    assert_eq!(only_paused[0]["id"], "stdin-job");
    let active = apsched(base, &["jobs", "list", "--active", "--json"], &[], None).await.json();
    assert_eq!(active.as_array().unwrap().len(), 2);
    let resumed = apsched(base, &["jobs", "resume", "stdin-job"], &[], None).await;
    assert!(resumed.ok().starts_with("resumed job stdin-job; next run 20"), "{resumed:#?}");

    // run now, then its run in the history.
    let run = apsched(base, &["jobs", "run", "short", "--json"], &[], None).await.json();
    assert_eq!(run["job_id"], "short");
    assert_eq!(run["status"], "pending");
    let delivered = receiver.wait_for("ok/cli2", 1).await;
    assert_eq!(delivered[0].header("authorization").as_deref(), Some("Bearer new"));
    let deadline = Instant::now() + PATIENCE;
    let runs = loop {
        let runs = apsched(base, &["runs", "short", "--json"], &[], None).await.json();
        if runs[0]["status"] == "succeeded" {
            break runs;
        }
        assert!(Instant::now() < deadline, "the run never succeeded: {runs:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(runs[0]["idempotency_key"], run["idempotency_key"]);
    assert_eq!(runs[0]["http_status"], 200);
    assert_eq!(runs[0]["kind"], "manual");
    let history = apsched(base, &["runs", "short"], &[], None).await;
    let header = history.ok().lines().next().unwrap();
    assert!(header.starts_with("SCHEDULED") && header.contains(" KIND "), "{history:#?}");
    assert!(history.stdout.lines().nth(1).unwrap().contains(" manual "), "{history:#?}");
    assert!(history.stdout.contains("succeeded") && history.stdout.contains("200 for ok/cli2"), "{history:#?}");
    let failed_only = apsched(base, &["runs", "short", "--status", "failed", "--json"], &[], None).await.json();
    assert_eq!(failed_only, json!([]));

    // remove; the job is gone and says so.
    let removed = apsched(base, &["jobs", "remove", "file-job", "--json"], &[], None).await.json();
    assert_eq!(removed, json!({"id": "file-job", "removed": true}));
    let gone = apsched(base, &["jobs", "get", "file-job"], &[], None).await;
    assert_eq!(gone.code, EXIT_API_REFUSED, "{gone:#?}");
    server.stop().await;
}

#[tokio::test]
async fn failures_print_the_problem_and_exit_with_their_code() {
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();

    // The API refused: unknown job, bad trigger, bad webhook URL, duplicate id.
    let unknown = apsched(base, &["jobs", "get", "nope"], &[], None).await;
    assert_eq!(unknown.code, EXIT_API_REFUSED);
    assert_eq!(unknown.stderr.trim(), r#"error: no job with id "nope" (HTTP 404)"#);
    assert!(unknown.stdout.is_empty());
    for verb in ["pause", "resume", "run", "remove"] {
        let outcome = apsched(base, &["jobs", verb, "nope"], &[], None).await;
        assert_eq!(outcome.code, EXIT_API_REFUSED, "{verb}: {outcome:#?}");
    }
    let bad_cron =
        apsched(base, &["jobs", "add", "--cron", "99 * * * *", "--url", "http://127.0.0.1:9/x"], &[], None).await;
    assert_eq!(bad_cron.code, EXIT_API_REFUSED, "{bad_cron:#?}");
    assert!(bad_cron.stderr.starts_with("error: trigger.crontab: "), "{bad_cron:#?}");
    assert!(bad_cron.stderr.trim_end().ends_with("(HTTP 422)"), "{bad_cron:#?}");
    let bad_url = apsched(base, &["jobs", "add", "--interval", "5m", "--url", "ftp://x"], &[], None).await;
    assert_eq!(bad_url.code, EXIT_API_REFUSED);
    assert!(bad_url.stderr.starts_with("error: action.url: "), "{bad_url:#?}");
    let args = ["jobs", "add", "--id", "twice", "--interval", "5m", "--url", "http://127.0.0.1:9/x"];
    apsched(base, &args, &[], None).await.ok();
    let twice = apsched(base, &args, &[], None).await;
    assert_eq!(twice.code, EXIT_API_REFUSED);
    assert!(twice.stderr.contains("(HTTP 409)"), "{twice:#?}");
    assert_eq!(apsched(base, &[&args[..], &["--replace"]].concat(), &[], None).await.code, 0);
    let no_runs = apsched(base, &["runs", "never-was"], &[], None).await;
    assert_eq!(no_runs.code, EXIT_API_REFUSED);

    // Usage errors: nothing is sent.
    let bad_interval =
        apsched(base, &["jobs", "add", "--interval", "5x", "--url", "http://127.0.0.1:9/x"], &[], None).await;
    assert_eq!(bad_interval.code, EXIT_USAGE);
    assert!(bad_interval.stderr.starts_with(r#"error: --interval "5x""#), "{bad_interval:#?}");
    let bad_header =
        apsched(base, &["jobs", "add", "--header", "nocolon", "--url", "http://127.0.0.1:9/x"], &[], None).await;
    assert_eq!(bad_header.code, EXIT_USAGE);
    let not_json = apsched(base, &["jobs", "add", "-"], &[], Some("{not json")).await;
    assert_eq!(not_json.code, EXIT_USAGE);
    assert!(not_json.stderr.contains("not JSON"), "{not_json:#?}");
    let missing_file = apsched(base, &["jobs", "add", "/nonexistent/job.json"], &[], None).await;
    assert_eq!(missing_file.code, EXIT_USAGE);
    let two_triggers = apsched(base, &["jobs", "add", "--cron", "* * * * *", "--interval", "5m"], &[], None).await;
    assert_eq!(two_triggers.code, EXIT_USAGE, "clap refuses two triggers: {two_triggers:#?}");
    let no_id = apsched(base, &["jobs", "get"], &[], None).await;
    assert_eq!(no_id.code, EXIT_USAGE);
    let bad_server = apsched("not a url", &["jobs", "list"], &[], None).await;
    assert_eq!(bad_server.code, EXIT_USAGE);

    // No server there: a port that was just free.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let unreachable = apsched(&closed, &["jobs", "list"], &[], None).await;
    assert_eq!(unreachable.code, EXIT_SERVER, "{unreachable:#?}");
    assert!(unreachable.stderr.starts_with(&format!("error: cannot reach apsched at {closed}")), "{unreachable:#?}");
    // --server wins over APSCHED_URL.
    let flag_wins = apsched(&closed, &["jobs", "list", "--server", base, "--json"], &[], None).await.json();
    assert_eq!(flag_wins.as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_token_is_sent_as_a_bearer_and_a_foreign_answer_is_a_server_error() {
    // The receiver stands in for a server: it records the request and answers text, not the API's JSON.
    let receiver = Receiver::start().await;
    let outcome = apsched(&receiver.base, &["jobs", "get", "x"], &[("APSCHED_TOKEN", "t0ken")], None).await;
    assert_eq!(outcome.code, EXIT_SERVER, "{outcome:#?}");
    assert!(outcome.stderr.contains("not JSON"), "{outcome:#?}");
    let request = &receiver.wait_for("v1/jobs/x", 1).await[0];
    assert_eq!(request.header("authorization").as_deref(), Some("Bearer t0ken"));
    let flag =
        apsched(&receiver.base, &["jobs", "get", "y", "--token", "flag"], &[("APSCHED_TOKEN", "env")], None).await;
    assert_eq!(flag.code, EXIT_SERVER);
    assert_eq!(receiver.wait_for("v1/jobs/y", 1).await[0].header("authorization").as_deref(), Some("Bearer flag"));
    // A 5xx is the server's failure, not the request's.
    let failing = apsched(&format!("{}/status/503", receiver.base), &["jobs", "get", "z"], &[], None).await;
    assert_eq!(failing.code, EXIT_SERVER, "{failing:#?}");
    assert!(failing.stderr.contains("HTTP 503"), "{failing:#?}");
}

#[tokio::test]
async fn scheduler_verbs_report_and_control_the_state() {
    let server = Server::start(memory_config()).await;
    let base = server.base.clone();
    let status = apsched(&base, &["scheduler", "status", "--json"], &[], None).await.json();
    assert_eq!(status["state"], "running");
    assert_eq!(status["jobstores"]["default"]["type"], "memory");
    let human = apsched(&base, &["scheduler", "status"], &[], None).await;
    assert!(human.ok().contains("state:        running"), "{human:#?}");
    assert!(human.stdout.contains("executor:     default (10 workers"), "{human:#?}");
    let paused = apsched(&base, &["scheduler", "pause", "--json"], &[], None).await.json();
    assert_eq!(paused["state"], "paused");
    assert_eq!(server.get("/v1/scheduler").await.1["state"], "paused");
    let resumed = apsched(&base, &["scheduler", "resume"], &[], None).await;
    assert!(resumed.ok().starts_with("scheduler resumed\nstate:        running"), "{resumed:#?}");
    let shutdown = apsched(&base, &["scheduler", "shutdown", "--json"], &[], None).await.json();
    assert_eq!(shutdown["state"], "stopped");
    server.stopped().await;
}

#[tokio::test]
async fn history_and_audit_show_who_changed_what_and_why() {
    use apsched::api::auth::{ApiToken, Role};
    let mut config = memory_config();
    config.api.tokens = vec![
        ApiToken::named("ci", "ci-token-0123456789ab", Role::Write),
        ApiToken::named("ops", "ops-token-0123456789a", Role::Admin),
    ];
    let server = Server::start(config).await;
    let base = server.base.clone();
    let ci = [("APSCHED_TOKEN", "ci-token-0123456789ab")];
    let add = [
        "jobs",
        "add",
        "--id",
        "nightly",
        "--interval",
        "1h",
        "--url",
        "http://127.0.0.1:9/",
        "--reason",
        "first deploy",
    ];
    apsched(&base, &add, &ci, None).await.ok();
    let ops = [("APSCHED_TOKEN", "ops-token-0123456789a"), ("APSCHED_REASON", "incident 7")];
    apsched(&base, &["jobs", "pause", "nightly"], &ops, None).await.ok();
    apsched(&base, &["jobs", "remove", "nightly"], &ci, None).await.ok();

    let table = apsched(&base, &["jobs", "history", "nightly"], &ci, None).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{table:#?}");
    assert!(lines[0].starts_with("TIME") && lines[0].contains("ACTOR") && lines[0].ends_with("REASON"), "{table:#?}");
    for (line, words) in lines[1..].iter().zip([
        ["ci", "remove", "removed", "-"],
        ["ops", "pause", "next_run_time, paused", "incident 7"],
        ["ci", "add", "added", "first deploy"],
    ]) {
        assert!(words.iter().all(|word| line.contains(word)), "{line:?} lacks one of {words:?}");
    }
    let entries = apsched(&base, &["audit", "--actor", "ops", "--json"], &ci, None).await.json();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!((&entries[0]["action"], &entries[0]["reason"]), (&json!("pause"), &json!("incident 7")));
    let adds = apsched(&base, &["audit", "--action", "add", "--limit", "5", "--json"], &ci, None).await.json();
    assert_eq!(adds[0]["after"]["id"], "nightly");
    let bad = apsched(&base, &["audit", "--action", "delete"], &ci, None).await;
    assert_eq!(bad.code, EXIT_API_REFUSED, "{bad:#?}");
    assert!(bad.stderr.contains("action"), "{bad:#?}");
    server.stop().await;
}

#[tokio::test]
async fn preview_works_locally_and_through_the_server() {
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();
    let now = "2026-03-27T12:00:00+00:00";
    let args = ["preview", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin", "--count", "3", "--now", now];
    let local = apsched(base, &[&args[..], &["--json"]].concat(), &[], None).await.json();
    let remote = apsched(base, &[&args[..], &["--json", "--server", base]].concat(), &[], None).await.json();
    // 29 March 2026 has no 02:30 in Berlin: both fire at the first instant after the gap.
    let expected =
        json!({"fire_times": ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]});
    assert_eq!(local, expected);
    assert_eq!(remote, expected);
    let lines = apsched(base, &[&args[..], &["--server", base]].concat(), &[], None).await;
    assert_eq!(
        lines.ok().lines().collect::<Vec<_>>(),
        ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    );
    let interval = apsched(base, &["preview", "--interval", "90m", "--count", "2", "--now", now], &[], None).await;
    assert_eq!(interval.ok().lines().collect::<Vec<_>>(), ["2026-03-27T13:30:00+00:00", "2026-03-27T15:00:00+00:00"]);

    let bad = r#"{"type": "cron", "minute": "99"}"#;
    let local_bad = apsched(base, &["preview", "--trigger", bad], &[], None).await;
    assert_eq!(local_bad.code, EXIT_USAGE, "{local_bad:#?}");
    assert!(local_bad.stderr.starts_with("error: trigger.minute: "), "{local_bad:#?}");
    let remote_bad = apsched(base, &["preview", "--trigger", bad, "--server", base], &[], None).await;
    assert_eq!(remote_bad.code, EXIT_API_REFUSED, "{remote_bad:#?}");
    assert!(remote_bad.stderr.starts_with("error: trigger.minute: "), "{remote_bad:#?}");
    let none = apsched(base, &["preview"], &[], None).await;
    assert_eq!(none.code, EXIT_USAGE, "a trigger is required: {none:#?}");
    server.stop().await;
}

/// `apsched serve` on a port another process holds says which address and what to do, and exits with 1.
#[tokio::test]
async fn serving_on_a_taken_port_names_the_address_and_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    // A memory store, so the attempt leaves no file behind should it get that far.
    let env = [("APSCHED_JOBSTORES__DEFAULT__TYPE", "memory")];
    let outcome = apsched("http://127.0.0.1:1", &["serve", "--listen", &address], &env, None).await;
    assert_eq!(outcome.code, 1, "{outcome:#?}");
    assert!(outcome.stderr.contains(&format!("error: cannot listen on {address}: ")), "{outcome:#?}");
    assert!(outcome.stderr.contains("is another apsched running? set --listen or APSCHED_LISTEN"), "{outcome:#?}");
    drop(taken);
}

#[tokio::test]
async fn labels_and_selectors_on_the_command_line() {
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();
    for (id, team) in [("pay-1", "payments"), ("pay-2", "payments"), ("ops-1", "ops")] {
        let label = format!("team={team}");
        let args = ["jobs", "add", "--id", id, "--interval", "1d", "--url", "http://127.0.0.1:9/", "--label", &label];
        let added = apsched(base, &[&args[..], &["--label", "tier = gold", "--json"]].concat(), &[], None).await;
        assert_eq!(added.json()["labels"], json!({"team": team, "tier": "gold"}));
    }
    let listed =
        apsched(base, &["jobs", "list", "--selector", "team=payments,tier in (gold)", "--json"], &[], None).await;
    let listed = listed.json();
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pay-1", "pay-2"]);
    assert!(apsched(base, &["jobs", "get", "ops-1"], &[], None).await.ok().contains("team=ops, tier=gold"));

    let paused = apsched(base, &["jobs", "pause", "-l", "team=payments"], &[], None).await;
    assert_eq!(paused.ok().trim(), "paused 2 jobs");
    assert_eq!(server.get("/v1/jobs/pay-1").await.1["paused"], true);
    assert_eq!(server.get("/v1/jobs/ops-1").await.1["paused"], false);
    let resumed = apsched(base, &["jobs", "resume", "--selector", "team=payments", "--json"], &[], None).await;
    assert_eq!(resumed.json(), json!({"modified": 2}));
    assert_eq!(server.get("/v1/jobs/pay-2").await.1["paused"], false);
    let patched =
        apsched(base, &["jobs", "patch", "-l", "!legacy", "--max-instances", "3", "--label", "team=all"], &[], None)
            .await;
    assert_eq!(patched.ok().trim(), "changed 3 jobs");
    assert_eq!(server.get("/v1/jobs/ops-1").await.1["labels"], json!({"team": "all"}));

    // A malformed selector is the API's 422, named.
    let refused = apsched(base, &["jobs", "remove", "--selector", "team:all"], &[], None).await;
    assert_eq!(refused.code, EXIT_API_REFUSED, "{refused:#?}");
    assert!(refused.stderr.contains("selector"), "{refused:#?}");
    let bad_label = apsched(base, &["jobs", "patch", "-l", "team", "--label", "no-equals"], &[], None).await;
    assert_eq!(bad_label.code, EXIT_USAGE, "{bad_label:#?}");
    // Neither an id nor a selector: a usage error, nothing sent.
    assert_eq!(apsched(base, &["jobs", "pause"], &[], None).await.code, EXIT_USAGE);

    let removed = apsched(base, &["jobs", "remove", "--selector", "team=all"], &[], None).await;
    assert_eq!(removed.ok().trim(), "removed 3 jobs");
    assert_eq!(server.get("/v1/jobs").await.1["jobs"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn calendars_are_put_from_json_or_an_ics_file_listed_checked_and_removed() {
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();
    let dir = tempfile::tempdir().unwrap();
    let ics = dir.path().join("holidays.ics");
    std::fs::write(
        &ics,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cli test//EN\r\nBEGIN:VEVENT\r\nUID:ny@test\r\n\
         DTSTART;VALUE=DATE:20260101\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    let ics = ics.to_str().unwrap();
    let stored =
        apsched(base, &["calendars", "put", "holidays", ics, "--timezone", "Europe/Berlin", "--json"], &[], None)
            .await
            .json();
    assert_eq!(stored["timezone"], "Europe/Berlin");
    assert!(stored["ics"].as_str().unwrap().contains("RRULE:FREQ=YEARLY"));
    let weekend = r#"{"exclude": {"weekdays": ["sat", "sun"]}}"#;
    let saved = apsched(base, &["calendars", "put", "business", "-", "--base", "holidays"], &[], Some(weekend)).await;
    assert_eq!(saved.ok().trim(), "saved calendar business");

    let listed = apsched(base, &["calendars", "list"], &[], None).await;
    assert!(listed.ok().contains("business") && listed.stdout.contains("holidays"), "{listed:#?}");
    let described = apsched(base, &["calendars", "get", "business"], &[], None).await;
    assert!(
        described.ok().contains("weekdays:  sat, sun") && described.stdout.contains("base:      holidays"),
        "{described:#?}"
    );

    let checked =
        apsched(base, &["calendars", "check", "business", "2027-01-01 09:00", "2027-01-04 09:00", "--json"], &[], None)
            .await
            .json();
    assert_eq!(checked, json!({"excluded": [true, false]}));

    let refused = apsched(base, &["calendars", "remove", "holidays"], &[], None).await;
    assert_eq!(refused.code, EXIT_API_REFUSED, "the base of business: {refused:#?}");
    assert!(
        apsched(base, &["calendars", "remove", "business"], &[], None).await.ok().contains("removed calendar business")
    );
    let bad =
        apsched(base, &["calendars", "put", "x", "-"], &[], Some(r#"{"exclude": {"weekdays": ["funday"]}}"#)).await;
    assert_eq!(bad.code, EXIT_API_REFUSED);
    assert!(bad.stderr.contains("exclude.weekdays[0]"), "{bad:#?}");
    server.stop().await;
}

#[tokio::test]
async fn cli_health_column_details_and_pause_with_a_reason_until_a_time() {
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();
    let job = json!({"id": "watched", "trigger": {"type": "interval", "hours": 1},
        "action": {"url": "http://127.0.0.1:9/"}, "auto_pause_after_failures": 2});
    assert_eq!(server.post("/v1/jobs", job).await.0, axum::http::StatusCode::CREATED);
    let table = apsched(base, &["jobs", "list"], &[], None).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].contains("HEALTH") && lines[1].contains("unknown"), "{table:#?}");
    let details = apsched(base, &["jobs", "get", "watched"], &[], None).await;
    assert!(details.ok().contains("health:") && details.stdout.contains("auto-pause:"), "{details:#?}");

    let until = (chrono::Utc::now() + chrono::TimeDelta::hours(2)).to_rfc3339();
    let args = ["jobs", "pause", "watched", "--reason", "vendor maintenance", "--until", &until, "--json"];
    let paused = apsched(base, &args, &[], None).await.json();
    assert_eq!((paused["paused"].clone(), paused["paused_reason"].clone()), (json!(true), json!("vendor maintenance")));
    assert!(paused["paused_until"].is_string(), "{paused}");
    let past = apsched(base, &["jobs", "pause", "watched", "--until", "2000-01-01T00:00:00Z"], &[], None).await;
    assert_ne!(past.code, 0, "{past:#?}");
    assert!(past.stderr.contains("until"), "{past:#?}");
    server.stop().await;
}

/// `apsched jobs backfill` followed to the end: without a terminal no bar, plain lines; each past fire delivered
/// once; `backfills list/get/cancel`; a backfill whose fires fail exits 4 with the counts printed.
#[tokio::test]
async fn backfill_is_started_followed_listed_and_a_failed_one_exits_non_zero() {
    use chrono::{DateTime, DurationRound, TimeDelta, Utc};
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let base = server.base.as_str();
    let end = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let start = end - TimeDelta::minutes(5);
    let (from, to) = (start.to_rfc3339(), end.to_rfc3339());
    let hook = receiver.url("ok/cli-backfill");
    apsched(base, &["jobs", "add", "--id", "minutely", "--cron", "* * * * *", "--url", &hook], &[], None).await.ok();

    let followed =
        apsched(base, &["jobs", "backfill", "minutely", "--start", &from, "--end", &to, "--rate", "50"], &[], None)
            .await;
    let lines: Vec<&str> = followed.ok().lines().collect();
    assert_eq!(lines.len(), 2, "a start line and a final line, no bar: {followed:#?}");
    assert!(lines[0].starts_with("started backfill ") && lines[0].contains("of job minutely: 5 fires"), "{lines:?}");
    assert!(lines[1].ends_with("succeeded: 5 delivered, 0 failed, 0 skipped, 0 pending of 5"), "{followed:#?}");
    let mut fires: Vec<DateTime<Utc>> = (receiver.matching("ok/cli-backfill").iter())
        .filter(|hit| hit.header("apsched-backfill").as_deref() == Some("true"))
        .map(|hit| DateTime::parse_from_rfc3339(&hit.header("apsched-scheduled-time").unwrap()).unwrap().to_utc())
        .collect();
    fires.sort();
    assert_eq!(fires, (0..5).map(|i| start + TimeDelta::minutes(i)).collect::<Vec<_>>(), "each fire once");

    // Detached, a slow one over earlier minutes (the ones above would all be skipped): listed, shown, cancelled.
    let earlier = (start - TimeDelta::minutes(5)).to_rfc3339();
    let detached = apsched(
        base,
        &["jobs", "backfill", "minutely", "--start", &earlier, "--end", &from, "--rate", "0.01", "--detach", "--json"],
        &[],
        None,
    )
    .await
    .json();
    let id = detached["id"].as_str().unwrap();
    assert_eq!(detached["state"], "running");
    let listed = apsched(base, &["backfills", "list", "minutely"], &[], None).await;
    assert!(listed.ok().starts_with("ID") && listed.stdout.contains(id), "{listed:#?}");
    assert_eq!(listed.stdout.lines().count(), 3, "a header and two backfills: {listed:#?}");
    let as_json = apsched(base, &["backfills", "list", "minutely", "--json"], &[], None).await.json();
    assert_eq!(as_json.as_array().map(Vec::len), Some(2), "{as_json}");
    let shown = apsched(base, &["backfills", "get", id], &[], None).await;
    assert!(shown.ok().contains("state:   running") && shown.stdout.contains("job:     minutely"), "{shown:#?}");
    let cancelled = apsched(base, &["backfills", "cancel", id, "--json"], &[], None).await.json();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let missing = apsched(base, &["backfills", "get", "no-such-backfill"], &[], None).await;
    assert_eq!(missing.code, EXIT_API_REFUSED, "{missing:#?}");

    // Fires that fail: the counts on stdout, the failure on stderr, exit 4.
    let failing = receiver.url("status/404/cli-backfill");
    apsched(base, &["jobs", "add", "--id", "failing", "--cron", "* * * * *", "--url", &failing], &[], None).await.ok();
    let failed =
        apsched(base, &["jobs", "backfill", "failing", "--start", &from, "--end", &to, "--rate", "50"], &[], None)
            .await;
    assert_eq!(failed.code, 4, "{failed:#?}");
    assert!(failed.stdout.contains("failed: 0 delivered, 5 failed"), "{failed:#?}");
    assert!(failed.stderr.contains("5 fires failed"), "{failed:#?}");
    server.stop().await;
}
