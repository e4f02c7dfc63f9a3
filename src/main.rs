use clap::{Parser, Subcommand};

/// apsched: APScheduler's model as an HTTP service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the next fire times of a trigger, one RFC 3339 time per line in the trigger's zone.
    Preview {
        /// The trigger as JSON, e.g. '{"type": "cron", "minute": "*/15"}'.
        #[arg(long)]
        trigger: String,
        /// How many fire times (1–1000).
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The instant to preview from (RFC 3339); defaults to now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Preview { trigger, count, now } => {
            let now = now.map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_else(chrono::Utc::now);
            match apsched::cli::preview::preview_lines(&trigger, count, now, chrono_tz::Tz::UTC) {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                    std::process::ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    std::process::ExitCode::from(2)
                }
            }
        }
    }
}
