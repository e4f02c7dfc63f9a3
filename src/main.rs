use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use apsched::cli;
use apsched::config::Flags;
use apsched::settings::Config;

/// glibc's malloc serialised the delivery tasks on its arena locks (perf: futex waits in `__lll_lock_wait_private`
/// under a burst); jemalloc's per-thread caches do not, and it keeps freed pages for reuse rather than zeroing fresh ones.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// apsched: APScheduler's model as an HTTP service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
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
    ///
    /// Computed locally unless --server is given, in which case the server previews it (POST /v1/triggers/preview).
    #[command(group(clap::ArgGroup::new("when").required(true)))]
    Preview {
        /// The trigger as JSON, e.g. '{"type": "cron", "minute": "*/15"}'.
        #[arg(long, group = "when")]
        trigger: Option<String>,
        /// Or a crontab line, e.g. "*/5 * * * *".
        #[arg(long, group = "when")]
        cron: Option<String>,
        /// Or an interval: 30s, 5m, 2h, 1d, 1w, 1h30m.
        #[arg(long, group = "when")]
        interval: Option<String>,
        /// Or one time (a date trigger).
        #[arg(long, group = "when")]
        at: Option<String>,
        /// How many fire times (1–1000).
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The instant to preview from (RFC 3339); defaults to now.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// The zone for a trigger that names none (locally default UTC; through a server, the server's).
        #[arg(long)]
        timezone: Option<chrono_tz::Tz>,
        /// Ask this server instead of computing locally.
        #[arg(long)]
        server: Option<String>,
        /// A bearer token for the server.
        #[arg(long, env = "APSCHED_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print {"fire_times": [...]} instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Jobs on a running server: list, get, add, edit, pause, resume, run, remove.
    #[command(after_help = cli::EXIT_CODES_HELP)]
    Jobs {
        #[command(subcommand)]
        command: cli::JobsCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// A job's run history on a running server, newest first.
    #[command(after_help = cli::EXIT_CODES_HELP)]
    Runs {
        #[command(flatten)]
        args: cli::RunsArgs,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// The scheduler of a running server: status, pause, resume, shutdown.
    #[command(after_help = cli::EXIT_CODES_HELP)]
    Scheduler {
        #[command(subcommand)]
        command: cli::SchedulerCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Who changed what on a running server, newest first (the audit trail).
    #[command(after_help = cli::EXIT_CODES_HELP)]
    Audit {
        #[command(flatten)]
        filter: cli::AuditFilter,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Calendars on a running server (named exclusions triggers use): list, get, put, remove, check.
    #[command(after_help = cli::EXIT_CODES_HELP)]
    Calendars {
        #[command(subcommand)]
        command: cli::CalendarsCommand,
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Backfills on a running server (a job's past fires delivered on request): get, cancel, list.
    #[command(after_help = cli::EXIT_CODES_HELP)]
    Backfills {
        #[command(subcommand)]
        command: cli::backfill::BackfillsCommand,
        #[command(flatten)]
        connection: cli::Connection,
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
        Command::Preview { trigger, cron, interval, at, count, now, timezone, server, token, json } => {
            let trigger = match trigger {
                Some(trigger) => trigger,
                // clap guarantees one of the four; the zone is applied below, as for --trigger.
                None => {
                    match cli::shorthand::trigger(None, cron.as_deref(), interval.as_deref(), at.as_deref(), None) {
                        Ok(Some(trigger)) => trigger.to_string(),
                        Ok(None) => unreachable!("clap requires a trigger"),
                        Err(err) => {
                            eprintln!("error: {err}");
                            return ExitCode::from(err.exit_code());
                        }
                    }
                }
            };
            match server {
                Some(server) => preview_remote(&trigger, count, now, timezone, server, token, json),
                None => preview_local(&trigger, count, now, timezone.unwrap_or(chrono_tz::UTC), json),
            }
        }
        Command::Jobs { command, connection } => {
            ExitCode::from(cli::run_client(connection, cli::Request::Jobs(command)))
        }
        Command::Runs { args, connection } => ExitCode::from(cli::run_client(connection, cli::Request::Runs(args))),
        Command::Audit { filter, connection } => {
            ExitCode::from(cli::run_client(connection, cli::Request::Audit(filter)))
        }
        Command::Scheduler { command, connection } => {
            ExitCode::from(cli::run_client(connection, cli::Request::Scheduler(command)))
        }
        Command::Calendars { command, connection } => {
            ExitCode::from(cli::run_client(connection, cli::Request::Calendars(command)))
        }
        Command::Backfills { command, connection } => {
            ExitCode::from(cli::run_client(connection, cli::Request::Backfills(command)))
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

fn preview_local(
    trigger: &str,
    count: usize,
    now: Option<chrono::DateTime<chrono::FixedOffset>>,
    timezone: chrono_tz::Tz,
    json: bool,
) -> ExitCode {
    let now = now.map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_else(chrono::Utc::now);
    match cli::preview::preview_lines(trigger, count, now, timezone) {
        Ok(lines) if json => {
            println!("{}", serde_json::json!({ "fire_times": lines }));
            ExitCode::SUCCESS
        }
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(cli::client::EXIT_USAGE)
        }
    }
}

fn preview_remote(
    trigger: &str,
    count: usize,
    now: Option<chrono::DateTime<chrono::FixedOffset>>,
    timezone: Option<chrono_tz::Tz>,
    server: String,
    token: Option<String>,
    json: bool,
) -> ExitCode {
    let mut trigger = match cli::shorthand::json_object("--trigger", trigger) {
        Ok(trigger) => trigger,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    if let Some(zone) = timezone {
        trigger.entry("timezone").or_insert_with(|| zone.name().into());
    }
    let request =
        cli::Request::Preview { trigger: serde_json::Value::Object(trigger), count, now: now.map(|t| t.to_rfc3339()) };
    ExitCode::from(cli::run_client(cli::Connection { server, token, json, reason: None }, request))
}

async fn serve(config_file: Option<PathBuf>, flags: Flags) -> anyhow::Result<()> {
    let config = Config::load(config_file.as_deref(), &flags)?;
    let address = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|err| cannot_listen(address, &err))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    apsched::run(config, listener, shutdown).await
}

/// Why the address cannot be served, and what to do about it.
fn cannot_listen(address: std::net::SocketAddr, err: &std::io::Error) -> anyhow::Error {
    let advice = match err.kind() {
        std::io::ErrorKind::AddrInUse => "is another apsched running? set --listen or APSCHED_LISTEN",
        std::io::ErrorKind::AddrNotAvailable => {
            "that address is not one of this machine's; set --listen or APSCHED_LISTEN"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; choose another with --listen or APSCHED_LISTEN"
        }
        _ => "set --listen or APSCHED_LISTEN",
    };
    anyhow::anyhow!("cannot listen on {address}: {err}; {advice}")
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
