//! `apsched jobs backfill` (start one and follow it with a progress bar, or `--detach`) and `apsched backfills …`
//! (get, cancel, list a job's), through `POST /v1/jobs/{id}/backfill`, `GET`/`DELETE /v1/backfills/{id}` and
//! `GET /v1/jobs/{id}/backfills`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::client::{CliError, Client, segment};
use super::output::{cell, table};
use super::pretty;

/// How often a followed backfill is polled: the bar moves smoothly without loading the server.
const POLL: Duration = Duration::from_millis(250);

/// `apsched jobs backfill ID …`: deliver a job's past fires in a range.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The job's id.
    pub id: String,
    /// The range's start (included): RFC 3339, or a date-time or date read in the server's zone.
    #[arg(long)]
    pub start: String,
    /// The range's end (excluded), not after now.
    #[arg(long)]
    pub end: String,
    /// At most this many fires per second (server default 1).
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// At most this many fires, the oldest (server default 1000).
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u32>,
    /// Print the backfill and return at once instead of following it to the end.
    #[arg(long)]
    pub detach: bool,
}

/// `apsched backfills …`.
#[derive(Debug, Subcommand)]
pub enum BackfillsCommand {
    /// Show one backfill and its progress.
    Get {
        /// The backfill's id.
        id: String,
    },
    /// Cancel a running backfill: fires not yet delivered are not.
    Cancel {
        /// The backfill's id.
        id: String,
    },
    /// List a job's backfills.
    List {
        /// The job's id.
        job_id: String,
    },
}

fn backfill_path(id: &str) -> String {
    format!("/backfills/{}", segment(id))
}

/// Delivered, failed and skipped: the fires done with.
fn done(backfill: &Value) -> u64 {
    ["delivered", "failed", "skipped"].iter().map(|field| backfill[*field].as_u64().unwrap_or(0)).sum()
}

fn counts(backfill: &Value) -> String {
    format!(
        "{} delivered, {} failed, {} skipped, {} pending of {}",
        cell(&backfill["delivered"]),
        cell(&backfill["failed"]),
        cell(&backfill["skipped"]),
        cell(&backfill["pending"]),
        cell(&backfill["total"])
    )
}

fn describe(backfill: &Value) -> String {
    [
        ("id", cell(&backfill["id"])),
        ("job", cell(&backfill["job_id"])),
        ("range", format!("{} to {}", cell(&backfill["start"]), cell(&backfill["end"]))),
        ("state", cell(&backfill["state"])),
        ("fires", counts(backfill)),
        ("rate", format!("{}/s", cell(&backfill["rate_per_second"]))),
        ("created", cell(&backfill["created_at"])),
    ]
    .iter()
    .map(|(key, value)| format!("{:<8} {value}", format!("{key}:")))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Start a backfill; unless detached, follow it until it is no longer running. A failed backfill is an error.
pub(super) async fn start(client: &Client, args: StartArgs, as_json: bool) -> Result<String, CliError> {
    let mut body = json!({"start": args.start, "end": args.end});
    if let Some(rate) = args.rate {
        body["rate_per_second"] = json!(rate);
    }
    if let Some(max_runs) = args.max_runs {
        body["max_runs"] = json!(max_runs);
    }
    let started = client.post(&format!("/jobs/{}/backfill", segment(&args.id)), Some(&body)).await?;
    let id = cell(&started["id"]);
    if args.detach {
        return Ok(if as_json {
            pretty(&started)
        } else {
            format!("started backfill {id} of job {}: {} fires", args.id, cell(&started["total"]))
        });
    }
    let show_bar = !as_json && std::io::stdout().is_terminal();
    if !as_json {
        // A closed pipe is the reader's choice; the backfill goes on regardless.
        let _ = writeln!(
            std::io::stdout().lock(),
            "started backfill {id} of job {}: {} fires from {} to {}",
            args.id,
            cell(&started["total"]),
            cell(&started["start"]),
            cell(&started["end"])
        );
    }
    let bar = if show_bar {
        ProgressBar::with_draw_target(started["total"].as_u64(), ProgressDrawTarget::stdout())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    let mut backfill = started;
    loop {
        bar.set_position(done(&backfill));
        bar.set_message(format!("{} failed", cell(&backfill["failed"])));
        if backfill["state"] != "running" {
            break;
        }
        tokio::time::sleep(POLL).await;
        backfill = client.get(&backfill_path(&id)).await?;
    }
    bar.finish_and_clear();
    let state = cell(&backfill["state"]);
    let text = if as_json { pretty(&backfill) } else { format!("backfill {id} {state}: {}", counts(&backfill)) };
    if state == "failed" {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
        return Err(CliError::Failed(format!("backfill {id} failed: {} fires failed", cell(&backfill["failed"]))));
    }
    Ok(text)
}

/// `apsched backfills get|cancel|list`.
pub(super) async fn backfills(client: &Client, command: BackfillsCommand, as_json: bool) -> Result<String, CliError> {
    let (answer, human) = match command {
        BackfillsCommand::Get { id } => {
            let backfill = client.get(&backfill_path(&id)).await?;
            let human = describe(&backfill);
            (backfill, human)
        }
        BackfillsCommand::Cancel { id } => {
            let backfill = client.send(reqwest::Method::DELETE, &backfill_path(&id), None).await?;
            let human = format!("backfill {id} {}: {}", cell(&backfill["state"]), counts(&backfill));
            (backfill, human)
        }
        BackfillsCommand::List { job_id } => {
            let answer = client.get(&format!("/jobs/{}/backfills", segment(&job_id))).await?;
            let backfills = answer["backfills"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = backfills
                .iter()
                .map(|backfill| {
                    vec![
                        cell(&backfill["id"]),
                        cell(&backfill["start"]),
                        cell(&backfill["end"]),
                        cell(&backfill["state"]),
                        cell(&backfill["delivered"]),
                        cell(&backfill["failed"]),
                        cell(&backfill["skipped"]),
                        cell(&backfill["total"]),
                    ]
                })
                .collect();
            let human = if rows.is_empty() {
                format!("no backfills of job {job_id}")
            } else {
                table(&["ID", "START", "END", "STATE", "DELIVERED", "FAILED", "SKIPPED", "TOTAL"], &rows)
            };
            (Value::Array(backfills), human)
        }
    };
    Ok(if as_json { pretty(&answer) } else { human })
}
