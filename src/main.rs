use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use apsched::config::{Config, Flags};

/// apsched: APScheduler's model as an HTTP service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler and its REST API.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; also APSCHED_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log as JSON lines.
        #[arg(long)]
        json_logs: bool,
        /// Serve on a non-loopback address although no API tokens are configured: anyone who reaches the port
        /// may then change jobs (also APSCHED_INSECURE_LISTEN_ANYWHERE=true).
        #[arg(long)]
        insecure_listen_anywhere: bool,
    },
    /// Create or upgrade the job stores' schemas, then exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
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
        /// The zone for triggers that name none.
        #[arg(long, default_value = "UTC")]
        timezone: chrono_tz::Tz,
    },
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Preview { trigger, count, now, timezone } => {
            let now = now.map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_else(chrono::Utc::now);
            match apsched::cli::preview::preview_lines(&trigger, count, now, timezone) {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { listen, config, json_logs, insecure_listen_anywhere } => {
            init_tracing(json_logs);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            match runtime.block_on(serve(config, Flags { listen, insecure_listen_anywhere })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate { config } => {
            init_tracing(false);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            match runtime.block_on(migrate(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config_file: Option<PathBuf>, flags: Flags) -> anyhow::Result<()> {
    let config = Config::load(config_file.as_deref(), &flags)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    apsched::run(config, listener, shutdown).await
}

async fn migrate(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_file.as_deref(), &Flags::default())?;
    for (name, store) in &config.jobstores {
        // Opening a store runs its migrations.
        apsched::store::open(name, store).await?;
        tracing::info!(store = %name, "migrated");
    }
    Ok(())
}

/// SIGTERM or ctrl-c: stop gracefully; a second one exits at once (the ledger keeps unfinished fires).
async fn cancel_on_signal(shutdown: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down; a second signal stops at once");
    shutdown.cancel();
    wait_for_signal().await;
    std::process::exit(130);
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
