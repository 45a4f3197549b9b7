//! The scheduler in the daemon binary as a real process: killed with SIGKILL in the middle of a
//! weekly digest build and restarted, every subscriber still gets one digest (on SQLite, and on
//! PostgreSQL once the dead daemon's lease runs out); and a fresh start polls its unpolled
//! sources at once, while a restart within a failing source's backoff leaves it alone.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use council_digest::clock::Clock;
use council_digest::registry::Registry;
use council_digest::settings::{CouncilOverride, Settings};
use council_digest::store::Store;
use council_digest::store::testing::{fresh_postgres_url, postgres_admin_url};
use sqlx::Row;
use support::smtp::{FaultMode, SmtpServer};

const BIN: &str = env!("CARGO_BIN_EXE_council-digest");

/// A schedule that fires on 1 January only: never during a test.
const NEVER: &str = "0 0 0 1 1 *";

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(settings: &Path, clock: Option<DateTime<Utc>>, log: PathBuf) -> Daemon {
        let mut command = Command::new(BIN);
        command.arg("--config").arg(settings).arg("run");
        if let Some(clock) = clock {
            command.arg("--clock").arg(clock.to_rfc3339());
        }
        let child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no cleanup.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 20 ms until it holds, failing with the daemon's log after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, daemon: &Daemon, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>("n")
}

// ---------------------------------------------------------------------------------------------
// Killed during the weekly digest build.

/// Enough subscribers for a build of several pages (500 each), so that the kill lands between
/// the first page's commit and the last.
const SUBSCRIBERS: usize = 4_000;

/// Adds the subscribers, each confirmed for Leeds (a limited council: `send_when_all_limited`
/// gives them a digest all the same), in one transaction.
async fn seed_subscribers(store: &Store) {
    store
        .sync_councils(Registry::builtin(), &Settings::defaults())
        .await
        .unwrap();
    let leeds: i64 = sqlx::query("SELECT id FROM councils WHERE slug = 'leeds'")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("id");
    let mut tx = store.begin_write().await.unwrap();
    for i in 1..=SUBSCRIBERS {
        let id: i64 = sqlx::query(
            "INSERT INTO subscribers (email, kind, hard_failures, created_at) \
             VALUES ($1, 'resident', 0, 0) RETURNING id",
        )
        .bind(format!("reader{i}@example.org"))
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("id");
        sqlx::query(
            "INSERT INTO subscriptions (subscriber_id, council_id, state, created_at, \
             confirmed_at) VALUES ($1, $2, 'confirmed', 0, 0)",
        )
        .bind(id)
        .bind(leeds)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn digest_settings(dir: &Path, db_url: &str, smtp_port: u16) -> PathBuf {
    let path = dir.join("settings.toml");
    let text = format!(
        r#"
[database]
url = "{db_url}"
max_connections = 4

[web]
bind = "127.0.0.1:0"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
timeout_seconds = 5

[mail]
outbox_dir = "{outbox}"

[tokens]
signing_key = "scheduler-daemon-test-key-0123456789abcdef"

[schedule]
# Only the weekly run sends: what it queued is sent by its own drain, after the build.
poll_full = "{NEVER}"
poll_limited = "{NEVER}"
promotion = "{NEVER}"
delivery = "{NEVER}"
# The registry's council websites are not for tests to reach.
poll_on_start = false
# The shortest lease: a restarted daemon on PostgreSQL waits this long for the dead one's.
lease_seconds = 3

[delivery]
rate_per_second = 2000.0
workers = 4

[digest]
send_when_all_limited = true

[log]
filter = "info,sqlx=warn"
"#,
        outbox = dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn killed_during_the_build_every_subscriber_still_gets_one_digest(label: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(url, 2, Clock::system()).await.unwrap();
    store.migrate().await.unwrap();
    seed_subscribers(&store).await;
    let server = SmtpServer::start(FaultMode::Accept);
    let settings = digest_settings(dir.path(), url, server.port);

    // Two seconds before the weekly run (Monday 07:00 in London, GMT in February).
    let clock_start: DateTime<Utc> = "2026-02-09T06:59:58Z".parse().unwrap();
    let started = Instant::now();
    let mut first = Daemon::start(&settings, Some(clock_start), dir.path().join("first.log"));
    let digests = "SELECT COUNT(*) AS n FROM digests";
    wait_until(
        "the build has recorded digests",
        Duration::from_secs(120),
        &first,
        || {
            let store = store.clone();
            async move { count(&store, digests).await > 0 }
        },
    )
    .await;
    first.kill();

    let built_at_kill = count(&store, digests).await;
    let sent_at_kill = count(
        &store,
        "SELECT COUNT(*) AS n FROM deliveries WHERE state = 'sent'",
    )
    .await;
    assert!(
        (built_at_kill as usize) < SUBSCRIBERS,
        "{label}: the kill came after the build was done\n{}",
        first.log()
    );
    assert_eq!(sent_at_kill, 0, "{label}: mail was sent before the kill");
    let unfinished = count(
        &store,
        "SELECT COUNT(*) AS n FROM job_runs WHERE job = 'digest' AND finished_at IS NULL",
    )
    .await;
    assert_eq!(
        unfinished, 1,
        "{label}: the weekly run's tick is left unfinished"
    );

    // The restarted daemon's clock carries on from where the first one's was.
    let clock_now = clock_start + chrono::Duration::from_std(started.elapsed()).unwrap();
    let second = Daemon::start(&settings, Some(clock_now), dir.path().join("second.log"));
    let sent_digests =
        "SELECT COUNT(*) AS n FROM deliveries WHERE kind = 'digest' AND state = 'sent'";
    wait_until(
        "every digest is sent",
        Duration::from_secs(180),
        &second,
        || {
            let store = store.clone();
            async move { count(&store, sent_digests).await as usize == SUBSCRIBERS }
        },
    )
    .await;
    wait_until(
        "the weekly run is recorded as finished",
        Duration::from_secs(30),
        &second,
        || {
            let store = store.clone();
            async move {
                count(
                &store,
                "SELECT COUNT(*) AS n FROM job_runs WHERE job = 'digest' AND finished_at IS NULL",
            )
            .await
                == 0
            }
        },
    )
    .await;
    let second_log = second.log();
    drop(second);
    assert!(
        second_log.contains("taking over a run that a stopped daemon did not finish"),
        "{label}: {second_log}"
    );

    // One digest and one delivery per subscriber, and the delivery sent.
    let per_subscriber = sqlx::query(
        "SELECT s.id, (SELECT COUNT(*) FROM digests d WHERE d.subscriber_id = s.id) AS digests, \
         (SELECT COUNT(*) FROM deliveries x WHERE x.subscriber_id = s.id) AS deliveries, \
         (SELECT COUNT(*) FROM deliveries x WHERE x.subscriber_id = s.id AND x.state = 'sent') \
         AS sent FROM subscribers s",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(per_subscriber.len(), SUBSCRIBERS);
    for row in &per_subscriber {
        let counts = (
            row.get::<i64, _>("digests"),
            row.get::<i64, _>("deliveries"),
            row.get::<i64, _>("sent"),
        );
        assert_eq!(
            counts,
            (1, 1, 1),
            "{label}: subscriber {}",
            row.get::<i64, _>("id")
        );
    }
    // Nothing was sent before the kill, so each address received exactly one message.
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for message in server.received() {
        for rcpt in message.rcpt_tos {
            *received.entry(rcpt).or_default() += 1;
        }
    }
    assert_eq!(received.len(), SUBSCRIBERS, "{label}");
    assert!(
        received.values().all(|&n| n == 1),
        "{label}: someone got two"
    );

    let runs = sqlx::query("SELECT outcome FROM job_runs WHERE job = 'digest' ORDER BY tick_at")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let outcomes: Vec<String> = runs.iter().map(|r| r.get("outcome")).collect();
    assert_eq!(
        outcomes.len(),
        2,
        "{label}: the first start's skip and the weekly run"
    );
    assert!(
        outcomes[1].starts_with("ok: week 2026-W07: "),
        "{label}: {}",
        outcomes[1]
    );
    eprintln!(
        "{label}: killed with {built_at_kill} of {SUBSCRIBERS} digests built; restarted run: {}",
        outcomes[1]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_the_digest_build_on_sqlite_finishes_the_week_when_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cd.db").display());
    killed_during_the_build_every_subscriber_still_gets_one_digest("sqlite", &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_the_digest_build_on_postgresql_is_taken_over_after_its_lease() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set TEST_DATABASE_URL to run the kill test on PostgreSQL");
        return;
    };
    let url = fresh_postgres_url(&admin).await;
    killed_during_the_build_every_subscriber_still_gets_one_digest("postgres", &url).await;
}

// ---------------------------------------------------------------------------------------------
// Polling what is due at start.

fn poll_settings(dir: &Path, db_url: &str, feed: &str) -> PathBuf {
    let path = dir.join("settings.toml");
    let text = format!(
        r#"
[database]
url = "{db_url}"

[web]
bind = "127.0.0.1:0"

[mail]
outbox_dir = "{outbox}"

[tokens]
signing_key = "scheduler-daemon-test-key-0123456789abcdef"

[fetch]
allow_private_networks = true
connect_timeout_seconds = 5
backoff_base_seconds = 300

[schedule]
# No firing during the test: only the poll at start polls.
poll_full = "{NEVER}"
poll_limited = "{NEVER}"
promotion = "{NEVER}"
digest = "0 0 7 1 1 *"
delivery = "{NEVER}"

[log]
filter = "info,sqlx=warn"

[councils.leeds]
feeds = ["{feed}"]
"#,
        outbox = dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The feed source's (consecutive failures, next poll time, last error).
async fn feed_health(store: &Store, feed: &str) -> (i64, Option<i64>, Option<String>) {
    let row = sqlx::query(
        "SELECT consecutive_failures, next_poll_at, last_error FROM sources WHERE url = $1",
    )
    .bind(feed)
    .fetch_one(store.pool())
    .await
    .unwrap();
    (
        row.get("consecutive_failures"),
        row.get("next_poll_at"),
        row.get("last_error"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_polls_its_unpolled_source_once_and_a_restart_within_the_backoff_does_not() {
    // A loopback port nobody listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let feed = format!(
        "http://127.0.0.1:{}/news.rss",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cd.db").display());
    let settings = poll_settings(dir.path(), &url, &feed);

    // The registry's own sources count as polled a moment ago (tests do not reach council
    // websites), so the feed is the one source due: never polled.
    let store = Store::connect(&url, 2, Clock::system()).await.unwrap();
    store.migrate().await.unwrap();
    let mut with_feed = Settings::defaults();
    with_feed.councils.insert(
        "leeds".to_owned(),
        CouncilOverride {
            feeds: vec![feed.clone()],
            ..Default::default()
        },
    );
    store
        .sync_councils(Registry::builtin(), &with_feed)
        .await
        .unwrap();
    let now = Utc::now().timestamp();
    sqlx::query("UPDATE sources SET last_poll_at = $1, next_poll_at = $2 WHERE url <> $3")
        .bind(now)
        .bind(now + 86_400)
        .bind(&feed)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(feed_health(&store, &feed).await, (0, None, None));

    let first = Daemon::start(&settings, None, dir.path().join("first.log"));
    wait_until(
        "the poll at start is done",
        Duration::from_secs(60),
        &first,
        || {
            let log = first.log();
            async move { log.contains("overdue sources polled at start") }
        },
    )
    .await;
    let first_log = first.log();
    drop(first);

    let (failures, next_poll_at, error) = feed_health(&store, &feed).await;
    assert_eq!(failures, 1, "{first_log}");
    // The first backoff step: 300 s, scaled by a jitter factor between 0.5 and 1.
    let wait = next_poll_at.unwrap() - now;
    assert!((150..=300 + 60).contains(&wait), "next poll in {wait} s");
    assert!(error.is_some(), "{first_log}");
    let polled = first_log
        .lines()
        .find(|l| l.contains("overdue sources polled at start"))
        .unwrap();
    assert!(
        polled.contains("sources=1") && polled.contains("failed=1"),
        "{polled}"
    );
    assert_eq!(
        first_log.matches("source poll failed").count(),
        1,
        "{first_log}"
    );

    // `sources list --failing` shows it, and only it.
    let listed = Command::new(BIN)
        .arg("--config")
        .arg(&settings)
        .args(["sources", "list", "--failing", "--json"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let failing: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let urls: Vec<&str> = failing
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, vec![feed.as_str()]);

    // Restarted within the backoff: the feed is not due, so nothing is polled or logged.
    let second = Daemon::start(&settings, None, dir.path().join("second.log"));
    wait_until(
        "the second poll at start is done",
        Duration::from_secs(60),
        &second,
        || {
            let log = second.log();
            async move { log.contains("overdue sources polled at start") }
        },
    )
    .await;
    let second_log = second.log();
    drop(second);
    let polled = second_log
        .lines()
        .find(|l| l.contains("overdue sources polled at start"))
        .unwrap();
    assert!(polled.contains("sources=0"), "{polled}");
    assert!(!second_log.contains("source poll failed"), "{second_log}");
    assert_eq!(feed_health(&store, &feed).await.0, 1);
    store.close().await;
}
