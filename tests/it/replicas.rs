//! Three apsched processes (the real binary) on one PostgreSQL schema: 200 jobs firing every second are each
//! delivered exactly once per scheduled time; when one replica is SIGKILLed mid-delivery, the others take over its
//! fires within the lease, and a fire is repeated only with the key it already had (at-least-once).
//!
//! To be sure the killed replica holds fires when it dies, the other two pause their schedulers for one second
//! of the run, so it claims all of that second's fires; it is killed once the receiver has seen them all arrive
//! (each delivery takes `DELIVERY_MS`, so they are still in flight).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use futures::StreamExt;
use serde_json::json;

use crate::harness::postgres::*;
use crate::harness::*;

const REPLICAS: usize = 3;
const JOBS: usize = 200;
/// Fires per job: one a second for this long, so the run lasts over 20 s.
const FIRES: i64 = 25;
/// The replica is killed this many seconds into the run, with fires before and after it.
const KILL_AFTER: i64 = 10;
/// Short, so the takeover happens within the test; the lease upkeep runs every lease/3.
const LEASE_SECONDS: i64 = 3;
/// How long the receiver takes to answer: deliveries overlap the next second's claims and the kill.
const DELIVERY_MS: u64 = 1500;
/// Concurrent runs a job may have: the killed replica's fires count as running until they are taken over (a
/// lease and an upkeep period, ~4 s), on top of the ~2 in flight; more than that would skip fires of the run.
const MAX_INSTANCES: u32 = 10;
/// Lead time between adding the jobs and their first fire: 200 POSTs take seconds on a loaded machine.
const LEAD: i64 = 10;
/// A fire is first delivered no later than this after its time, and a killed replica's fires again no later than
/// this after the kill: a lease (extended until the kill) plus an upkeep period (lease / 3), plus slack for a
/// loaded machine.
const TAKEOVER_BOUND: TimeDelta = TimeDelta::seconds(LEASE_SECONDS + 4);

struct Replica {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Replica {
    fn spawn(dir: &Path, index: usize, url: &str) -> Replica {
        let config = dir.join(format!("replica-{index}.toml"));
        let mut file = std::fs::File::create(&config).unwrap();
        write!(
            file,
            "[api]\nlisten = \"127.0.0.1:0\"\n\
             [jobstores.default]\ntype = \"postgres\"\nurl = \"{url}\"\npool_size = 5\n\
             [executors.default]\nmax_workers = 1000\n\
             [scheduler]\nlease_seconds = {LEASE_SECONDS}\n"
        )
        .unwrap();
        let log = dir.join(format!("replica-{index}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_apsched"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the apsched binary starts");
        Replica { child, base: String::new(), log }
    }

    /// The address it listens on, from its start-up log line (it was given port 0).
    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = without_colours(&std::fs::read_to_string(&self.log).unwrap_or_default());
            if let Some(address) = log.lines().find(|line| line.contains("apsched serving")).and_then(|line| {
                line.split_whitespace().find_map(|word| word.strip_prefix("listen=")).map(str::to_string)
            }) {
                self.base = format!("http://{address}");
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("replica exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "replica did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The log as text: tracing colours its fields with ANSI escapes (`ESC [ … m`).
fn without_colours(log: &str) -> String {
    let mut text = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            text.push(c);
        }
    }
    text
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Delivery {
    key: String,
    /// Receipt time, as a wall-clock instant comparable with scheduled times.
    at: DateTime<Utc>,
}

/// (job id, scheduled time) → every delivery of it.
fn deliveries(
    receiver: &Receiver,
    clock: (Instant, DateTime<Utc>),
) -> BTreeMap<(String, DateTime<Utc>), Vec<Delivery>> {
    let mut fires: BTreeMap<(String, DateTime<Utc>), Vec<Delivery>> = BTreeMap::new();
    for request in receiver.matching("slow/") {
        let job = request.header("apsched-job-id").expect("job id header");
        let time = request.header("apsched-scheduled-time").expect("scheduled time header");
        let time = DateTime::parse_from_rfc3339(&time).expect("RFC 3339").with_timezone(&Utc);
        let at = clock.1 + TimeDelta::from_std(request.arrived.duration_since(clock.0)).unwrap();
        fires.entry((job, time)).or_default().push(Delivery { key: request.header("idempotency-key").unwrap(), at });
    }
    fires
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_database_without_double_firing_and_take_over_a_killed_one() {
    let _turn = crate::harness::timing_bound_turn().await;
    let clock = (Instant::now(), Utc::now());
    let schema = ScratchSchema::create().await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let mut replicas: Vec<Replica> =
        (0..REPLICAS).map(|index| Replica::spawn(dir.path(), index, &schema.url())).collect();
    for replica in &mut replicas {
        replica.wait_listening().await;
    }
    let client = reqwest::Client::new();

    // Every job on the same grid, so each second 200 fires fall due at once and the replicas contend for them.
    let start = (Utc::now() + TimeDelta::seconds(LEAD)).trunc_subsecs(0);
    let end = start + TimeDelta::seconds(FIRES - 1);
    // Eight adds in flight at a time: one after another they took over 6 s on a loaded CI machine.
    let adds = (0..JOBS).map(|index| {
        let id = format!("job-{index:03}");
        // Spread the adds over the replicas: each notifies the others.
        let url = format!("{}/v1/jobs", replicas[index % REPLICAS].base);
        let job = json!({"id": id, "coalesce": false, "max_instances": MAX_INSTANCES,
                         "trigger": {"type": "interval", "seconds": 1, "start_date": start.to_rfc3339(),
                                     "end_date": end.to_rfc3339()},
                         "action": {"url": receiver.url(&format!("slow/{DELIVERY_MS}/{id}"))}});
        let client = client.clone();
        async move {
            let response = client.post(url).json(&job).send().await.unwrap();
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        }
    });
    futures::stream::iter(adds).buffer_unordered(8).collect::<Vec<()>>().await;
    assert!(Utc::now() < start, "adding the jobs took longer than the lead time; raise LEAD");

    // Phase one: all three replicas, until the second before the kill, whose fires only the last one claims.
    let victim_second = start + TimeDelta::seconds(KILL_AFTER);
    let pause_at = victim_second - TimeDelta::milliseconds(500);
    tokio::time::sleep((pause_at - Utc::now()).to_std().unwrap_or_default()).await;
    let victim = REPLICAS - 1;
    for replica in &replicas[..victim] {
        let paused = client.post(format!("{}/v1/scheduler/pause", replica.base)).send().await.unwrap();
        assert_eq!(paused.status(), 200);
    }
    let deadline = Instant::now() + PATIENCE;
    while deliveries(&receiver, clock).keys().filter(|(_, time)| *time == victim_second).count() < JOBS {
        assert!(Instant::now() < deadline, "the last replica never delivered the fires of {victim_second}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_kill = deliveries(&receiver, clock);
    replicas[victim].child.kill().expect("SIGKILL the last replica");
    let killed_at = Utc::now();
    for replica in &replicas[..victim] {
        let resumed = client.post(format!("{}/v1/scheduler/resume", replica.base)).send().await.unwrap();
        assert_eq!(resumed.status(), 200);
    }

    // Phase two: the survivors, until every fire of the run has arrived.
    let expected: HashSet<(String, DateTime<Utc>)> = (0..JOBS)
        .flat_map(|index| (0..FIRES).map(move |n| (format!("job-{index:03}"), start + TimeDelta::seconds(n))))
        .collect();
    let deadline = Instant::now() + PATIENCE + Duration::from_secs(FIRES as u64);
    let fires = loop {
        let fires = deliveries(&receiver, clock);
        if expected.iter().all(|fire| fires.contains_key(fire)) {
            break fires;
        }
        if Instant::now() > deadline {
            let mut missing: Vec<_> = expected.iter().filter(|fire| !fires.contains_key(*fire)).collect();
            missing.sort();
            panic!(
                "{} fires never delivered (killed at {killed_at}), e.g. {:?}",
                missing.len(),
                &missing[..5.min(missing.len())]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Before the kill: every fire delivered exactly once.
    let repeated_before: Vec<_> = before_kill.iter().filter(|(_, got)| got.len() > 1).collect();
    assert!(repeated_before.is_empty(), "delivered twice with all replicas up: {repeated_before:?}");
    // Only fires of the run, none twice with different keys; repeats only of what the killed replica had in hand
    // (this second's fires, and the previous second's if it had claimed those too), again within the lease.
    let mut repeated = 0;
    for ((job, time), got) in &fires {
        assert!(expected.contains(&(job.clone(), *time)), "unexpected fire {job} at {time}");
        assert!(got.iter().all(|delivery| delivery.key == got[0].key), "{job} at {time} delivered with different keys");
        let first = got.iter().map(|delivery| delivery.at).min().unwrap();
        assert!(first - *time < TAKEOVER_BOUND, "{job} at {time} first delivered {} late", first - *time);
        if *time == victim_second {
            assert_eq!(got.len(), 2, "{job} at {time}: delivered by the killed replica, then once by a survivor");
        }
        if got.len() > 1 {
            repeated += 1;
            assert!(
                *time >= victim_second - TimeDelta::seconds(1) && *time <= victim_second,
                "{job} at {time} repeated"
            );
            let again = got.iter().map(|delivery| delivery.at).max().unwrap();
            assert!(
                again - killed_at < TAKEOVER_BOUND,
                "{job} at {time} taken over {} after the kill",
                again - killed_at
            );
        }
    }
    eprintln!("{} fires delivered, {repeated} taken over from the killed replica with their keys", fires.len());

    // The ledger agrees: one row per fire, all delivered.
    let mut db = schema.connect().await;
    let wait = Instant::now() + PATIENCE;
    loop {
        let (rows, succeeded): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'succeeded') FROM runs")
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert_eq!(rows, expected.len() as i64, "one ledger row per fire");
        if succeeded == rows {
            break;
        }
        assert!(Instant::now() < wait, "{} of {rows} runs never recorded as succeeded", rows - succeeded);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs_left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(&mut db).await.unwrap();
    assert_eq!(jobs_left, 0, "every job was removed after its last fire");
    drop(replicas);
}
