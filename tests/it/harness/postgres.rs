//! PostgreSQL for the integration tests: a scratch schema per test (tests run in parallel on one database), and a
//! TCP proxy in front of the server that a test can cut, to take "the database" away from one apsched without
//! disturbing the other tests that share the server.

use std::collections::BTreeMap;
use std::sync::Arc;

use apsched::settings::{Config, JobStoreConfig, StoreType};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What CI sets `APSCHED_TEST_DATABASE_URL` to; the tests run (and fail if the server is down) when it is unset.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn database_url() -> String {
    std::env::var("APSCHED_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

pub async fn admin() -> sqlx::PgConnection {
    let url = database_url();
    <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("PostgreSQL at {url} (APSCHED_TEST_DATABASE_URL): {err}"))
}

/// A schema of its own, dropped with everything in it when the test ends.
pub struct ScratchSchema {
    pub name: String,
}

impl ScratchSchema {
    pub async fn create() -> ScratchSchema {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&mut admin().await).await.unwrap();
        ScratchSchema { name }
    }

    /// `base` (a database url) with this schema as search path and `application_name` naming the connections, so
    /// a test can find (and terminate) exactly its own.
    pub fn url_via(&self, base: &str, application_name: &str) -> String {
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options[search_path]={}&application_name={application_name}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(&database_url(), &self.name)
    }

    /// A connection working in this schema, to look at the ledger directly.
    pub async fn connect(&self) -> sqlx::PgConnection {
        <sqlx::PgConnection as sqlx::Connection>::connect(&self.url_via(&database_url(), "apsched_test")).await.unwrap()
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context; a thread of its own can block on the cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&database_url()).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE"))).execute(&mut admin).await
            })
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not drop the scratch schema {}: {err}", self.name);
        }
    }
}

pub fn postgres_config(url: String, pool_size: u32) -> Config {
    Config {
        jobstores: BTreeMap::from([(
            "default".to_string(),
            JobStoreConfig { store_type: Some(StoreType::Postgres), url: Some(url), pool_size: Some(pool_size) },
        )]),
        ..Config::default()
    }
}

/// Terminate the server-side sessions of connections named `application_name`; how many.
pub async fn terminate_backends(application_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()) terminated",
    )
    .bind(application_name)
    .fetch_one(&mut admin().await)
    .await
    .unwrap()
}

/// A TCP proxy on 127.0.0.1 to the PostgreSQL server. `cut` drops every connection through it and turns new ones
/// away (as a server that went down would); `restore` lets them through again.
pub struct Proxy {
    pub port: u16,
    up: Arc<watch::Sender<bool>>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(watch::Sender::new(true));
        let accepting = up.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*accepting.borrow() {
                    continue; // dropped: the client sees its connection closed at once
                }
                let mut cut = accepting.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up }
    }

    /// The test database's url, through this proxy.
    pub fn database_url(&self) -> String {
        let url = database_url();
        let rest = url.split_once('@').map(|(_, rest)| rest).expect("the test url names a user: user@host:port/db");
        let (_, path) = rest.split_once('/').expect("the test url names a database");
        let user = url.split_once('@').unwrap().0;
        format!("{user}@127.0.0.1:{}/{path}", self.port)
    }

    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// host:port of the test database, for the proxy.
pub fn database_address() -> String {
    let url = database_url();
    let rest = url.split_once('@').map(|(_, rest)| rest).unwrap_or(url.trim_start_matches("postgres://"));
    let host_port = rest.split(['/', '?']).next().unwrap();
    if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:5432") }
}
