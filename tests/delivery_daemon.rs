//! The daemon binary as a real process: killed with SIGKILL in the middle of a send batch and
//! restarted, and two daemons sharing one PostgreSQL database sending one week's digests.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use council_digest::clock::Clock;
use council_digest::store::Store;
use council_digest::store::testing::{fresh_postgres_url, postgres_admin_url};
use sqlx::Row;
use support::seed::{addresses, seed_notices};
use support::smtp::{FaultMode, SmtpServer};

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(settings: &Path, clock: Option<&str>, log: PathBuf) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_council-digest"));
        command.arg("--config").arg(settings).arg("run");
        if let Some(clock) = clock {
            command.arg("--clock").arg(clock);
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

fn write_settings(dir: &Path, name: &str, db_url: &str, smtp_port: u16, extra: &str) -> PathBuf {
    let path = dir.join(name);
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
signing_key = "daemon-test-signing-key-0123456789abcdef"

[schedule]
# Drain every second so the test need not wait for a minute.
delivery = "* * * * * *"
# No poll at start: the registry's council websites are not for tests to reach.
poll_on_start = false

[log]
filter = "info,sqlx=warn"

{extra}
"#,
        outbox = dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

async fn states(store: &Store) -> BTreeMap<i64, (String, Option<i64>)> {
    sqlx::query("SELECT id, state, subscriber_id FROM deliveries")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get::<i64, _>("id"),
                (
                    row.get::<String, _>("state"),
                    row.get::<Option<i64>, _>("subscriber_id"),
                ),
            )
        })
        .collect()
}

fn received_per_recipient(server: &SmtpServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for received in server.received() {
        for rcpt in received.rcpt_tos {
            *counts.entry(rcpt).or_insert(0) += 1;
        }
    }
    counts
}

async fn subscriber_addresses(store: &Store) -> BTreeMap<i64, String> {
    sqlx::query("SELECT id, email FROM subscribers")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<i64, _>("id"), row.get::<String, _>("email")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_and_restarted_the_daemon_sends_all_and_repeats_only_in_flight_mail() {
    const SUBSCRIBERS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cd.db").display());
    let store = Store::connect(&url, 2, Clock::system()).await.unwrap();
    store.migrate().await.unwrap();
    seed_notices(&store, &addresses(SUBSCRIBERS)).await;
    let server = SmtpServer::start(FaultMode::Accept);
    // 50 a second: the run takes about three seconds, so the kill lands inside it. The lease
    // is the shortest allowed, so the restarted daemon takes the orphaned rows back soon.
    let settings = write_settings(
        dir.path(),
        "settings.toml",
        &url,
        server.port,
        "[delivery]\nrate_per_second = 50.0\nworkers = 4\nlease_seconds = 10\n",
    );

    let mut first = Daemon::start(&settings, None, dir.path().join("first.log"));
    wait_until(
        "the first daemon has sent 40 messages",
        Duration::from_secs(60),
        || server.messages().len() >= 40,
        || first.log(),
    );
    first.kill();

    let at_kill = states(&store).await;
    let in_flight: BTreeSet<i64> = at_kill
        .iter()
        .filter(|(_, (state, _))| state == "sending")
        .filter_map(|(_, (_, subscriber))| *subscriber)
        .collect();
    let received_at_kill = server.messages().len();
    let sent_at_kill = at_kill
        .values()
        .filter(|(state, _)| state == "sent")
        .count();
    assert!(
        sent_at_kill < SUBSCRIBERS,
        "the kill came after the batch was done"
    );
    assert!(!in_flight.is_empty(), "nothing was in flight at the kill");
    // Accepted by the server but not marked sent: at most the running sends and the marks
    // waiting to be written, at most `workers` (4) of each.
    assert!(
        received_at_kill <= sent_at_kill + 2 * 4,
        "{received_at_kill} received but only {sent_at_kill} marked sent at the kill"
    );

    let second = Daemon::start(&settings, None, dir.path().join("second.log"));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sent = states(&store)
            .await
            .values()
            .filter(|(state, _)| state == "sent")
            .count();
        if sent == SUBSCRIBERS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {sent} of {SUBSCRIBERS} sent after the restart\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);

    // Every subscriber ends with exactly one delivery row, and it is sent.
    let at_end = states(&store).await;
    let mut rows_per_subscriber: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (state, subscriber) in at_end.values() {
        rows_per_subscriber
            .entry(subscriber.unwrap())
            .or_default()
            .push(state.as_str());
    }
    assert_eq!(rows_per_subscriber.len(), SUBSCRIBERS);
    assert!(
        rows_per_subscriber
            .values()
            .all(|states| states == &["sent"])
    );

    // Every address received its message; twice only if it was in flight at the kill.
    let addresses = subscriber_addresses(&store).await;
    let counts = received_per_recipient(&server);
    assert_eq!(counts.len(), SUBSCRIBERS);
    for (subscriber, address) in &addresses {
        let n = counts.get(address).copied().unwrap_or(0);
        assert!(
            (1..=2).contains(&n),
            "subscriber {subscriber} received {n} copies"
        );
        if n == 2 {
            assert!(
                in_flight.contains(subscriber),
                "subscriber {subscriber} got a second copy but was not in flight at the kill"
            );
        }
    }
    let duplicates = counts.values().filter(|&&n| n == 2).count();
    eprintln!(
        "kill after {received_at_kill} received, {sent_at_kill} marked sent, {} in flight; \
         {duplicates} sent twice",
        in_flight.len()
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgresql_database_send_each_subscriber_one_digest() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set TEST_DATABASE_URL to run the two-daemon test on PostgreSQL");
        return;
    };
    const SUBSCRIBERS: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_postgres_url(&admin).await;
    let store = Store::connect(&url, 4, Clock::system()).await.unwrap();
    store.migrate().await.unwrap();
    let seeded = seed_notices(&store, &addresses(SUBSCRIBERS)).await;
    // Only the week's digests, not the seeded notices: drop those, keep the subscribers and
    // make each follow Leeds.
    sqlx::query("DELETE FROM deliveries")
        .execute(store.pool())
        .await
        .unwrap();
    let leeds: i64 = sqlx::query("SELECT id FROM councils WHERE slug = 'leeds'")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("id");
    for (subscriber, _) in &seeded {
        sqlx::query(
            "INSERT INTO subscriptions (subscriber_id, council_id, state, created_at, \
             confirmed_at) VALUES ($1, $2, 'confirmed', 0, 0)",
        )
        .bind(subscriber)
        .bind(leeds)
        .execute(store.pool())
        .await
        .unwrap();
    }

    let server = SmtpServer::start(FaultMode::Accept);
    // 40 a second per daemon and claims of 40 (a tenth of the lease at that rate): the run
    // takes a few seconds, so delivery ticks of either daemon overlap the weekly run's drain.
    let extra = "[delivery]\nrate_per_second = 40.0\nworkers = 4\nlease_seconds = 10\n\n\
                 [digest]\nsend_when_all_limited = true\n";
    let settings_a = write_settings(dir.path(), "a.toml", &url, server.port, extra);
    let settings_b = write_settings(dir.path(), "b.toml", &url, server.port, extra);
    // Both start three seconds before the weekly run (Monday 07:00 in London, GMT in
    // February) and reach it together.
    let clock = "2026-02-09T06:59:57Z";
    let a = Daemon::start(&settings_a, Some(clock), dir.path().join("a.log"));
    let b = Daemon::start(&settings_b, Some(clock), dir.path().join("b.log"));

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sent: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM deliveries WHERE kind = 'digest' AND state = 'sent'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("n");
        if sent as usize == SUBSCRIBERS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sent} of {SUBSCRIBERS} digests sent\n--- a ---\n{}\n--- b ---\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let any duplicate that was on its way arrive before counting.
    server
        .wait_for_async(SUBSCRIBERS, Duration::from_secs(5))
        .await;
    let counts = received_per_recipient(&server);
    assert_eq!(counts.len(), SUBSCRIBERS);
    assert!(
        counts.values().all(|&n| n == 1),
        "someone received more than one: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // The weekly run's own drain may still be finishing when the last digest is marked sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let runs = sqlx::query(
            "SELECT tick_at, claimed_by, outcome FROM job_runs WHERE job = 'digest' \
             ORDER BY tick_at",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        if runs
            .iter()
            .all(|run| run.get::<Option<String>, _>("outcome").is_some())
        {
            break runs;
        }
        assert!(Instant::now() < deadline, "the weekly run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        runs.len(),
        2,
        "the first start's skip and the one weekly run"
    );
    let outcome: String = runs[1].get("outcome");
    assert!(outcome.starts_with("ok: week 2026-W07"), "{outcome}");
    // A lease holder is `pid<N>-<random>`: count the processes that sent.
    let senders: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT split_part(leased_by, '-', 1)) AS n FROM deliveries \
         WHERE state = 'sent'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
    .get("n");
    // Each delivery tick is also claimed once, so whether the second daemon took part depends
    // on which daemon won the ticks during the run; it is reported, not asserted.
    eprintln!("digest run: {outcome}; sent by {senders} daemons");
    drop(a);
    drop(b);
    store.close().await;
}
