//! Scheduled jobs run on demand with a clock the test controls: first start, one run per tick
//! across daemons, a missed weekly run caught up once, settings read per run.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use council_digest::clock::Clock;
use council_digest::daemon::Context;
use council_digest::scheduler::{Job, TickOutcome, run_due, run_now};
use council_digest::settings::{Settings, TlsMode};
use council_digest::store::Store;
use council_digest::store::jobs::{TickClaim, claim_tick, list_runs};
use council_digest::store::testing::fresh_databases;
use support::seed::{addresses, seed_notices};
use support::smtp::{FaultMode, SmtpServer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Monday 9 February 2026, 07:00:30 in London (GMT): just after the weekly digest's firing.
fn monday_morning() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-09T07:00:30Z")
        .unwrap()
        .to_utc()
}

fn settings_for(server: &SmtpServer, dir: &std::path::Path) -> Settings {
    let mut settings = Settings::defaults();
    settings.smtp.host = "127.0.0.1".to_owned();
    settings.smtp.port = server.port;
    settings.smtp.tls = TlsMode::None;
    settings.smtp.timeout_seconds = 5;
    settings.delivery.rate_per_second = 1000.0;
    settings.tokens.signing_key = "scheduler-test-signing-key-0123456789".to_owned().into();
    settings.mail.outbox_dir = dir.join("outbox");
    settings
}

/// A daemon's context without the daemon: the store, settings that can be swapped (as SIGHUP
/// does), and the store's clock.
fn context(store: &Store, settings: Settings) -> (Context, watch::Sender<Arc<Settings>>) {
    let (tx, rx) = watch::channel(Arc::new(settings));
    let ctx = Context {
        store: store.clone(),
        settings: rx,
        clock: store.clock().clone(),
        shutdown: CancellationToken::new(),
    };
    (ctx, tx)
}

#[tokio::test]
async fn a_job_seen_for_the_first_time_records_its_firing_as_skipped_and_sends_nothing() {
    for db in fresh_databases(Clock::fixed(monday_morning())).await {
        db.store.clock().set(monday_morning());
        let dir = tempfile::tempdir().unwrap();
        let server = SmtpServer::start(FaultMode::Accept);
        let (ctx, _settings) = context(&db.store, settings_for(&server, dir.path()));
        seed_notices(&db.store, &addresses(2)).await;

        let outcome = run_due(&ctx, Job::Delivery, "daemon-a").await.unwrap();

        let tick = DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(
            outcome,
            TickOutcome::FirstStart { tick_at: tick },
            "{}",
            db.label
        );
        assert!(server.messages().is_empty());
        let runs = list_runs(&db.store, "delivery").await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].outcome.as_deref(),
            Some("skipped: the job's first start")
        );
    }
}

#[tokio::test]
async fn each_tick_runs_once_across_two_daemons_sharing_the_database() {
    for db in fresh_databases(Clock::fixed(monday_morning())).await {
        db.store.clock().set(monday_morning());
        let dir = tempfile::tempdir().unwrap();
        let server = SmtpServer::start(FaultMode::Accept);
        let (a, _a_settings) = context(&db.store, settings_for(&server, dir.path()));
        let (b, _b_settings) = context(&db.store, settings_for(&server, dir.path()));
        run_due(&a, Job::Delivery, "daemon-a").await.unwrap();
        seed_notices(&db.store, &addresses(5)).await;

        // The delivery job fires every minute: 07:01:00 is the next tick.
        db.store
            .clock()
            .set(monday_morning() + Duration::seconds(30));
        let (first, second) = tokio::join!(
            run_due(&a, Job::Delivery, "daemon-a"),
            run_due(&b, Job::Delivery, "daemon-b")
        );
        let outcomes = [first.unwrap(), second.unwrap()];

        let tick = monday_morning().timestamp() + 30;
        let ran: Vec<_> = outcomes
            .iter()
            .filter(|o| matches!(o, TickOutcome::Ran { .. }))
            .collect();
        assert_eq!(ran.len(), 1, "{}: {outcomes:?}", db.label);
        // The other either lost the claim or, having looked after the winner claimed, saw
        // nothing due.
        assert!(
            outcomes.contains(&TickOutcome::ClaimedElsewhere { tick_at: tick })
                || outcomes.contains(&TickOutcome::NothingDue),
            "{}: {outcomes:?}",
            db.label
        );
        let late = claim_tick(&db.store, "delivery", tick, "daemon-c", tick, tick + 60)
            .await
            .unwrap();
        assert_eq!(late, TickClaim::Taken, "{}", db.label);
        assert!(
            matches!(ran[0], TickOutcome::Ran { tick_at, summary }
                if *tick_at == tick && summary == "sent 5, retrying 0, failed 0"),
            "{}: {ran:?}",
            db.label
        );
        assert_eq!(server.messages().len(), 5, "{}", db.label);
        assert_eq!(
            run_due(&a, Job::Delivery, "daemon-a").await.unwrap(),
            TickOutcome::NothingDue
        );
    }
}

#[tokio::test]
async fn a_weekly_run_missed_for_three_weeks_runs_once_when_the_daemon_returns() {
    for db in fresh_databases(Clock::fixed(monday_morning())).await {
        db.store.clock().set(monday_morning());
        let dir = tempfile::tempdir().unwrap();
        let server = SmtpServer::start(FaultMode::Accept);
        let (ctx, _settings) = context(&db.store, settings_for(&server, dir.path()));
        assert!(matches!(
            run_due(&ctx, Job::Digest, "daemon-a").await.unwrap(),
            TickOutcome::FirstStart { .. }
        ));
        seed_notices(&db.store, &addresses(3)).await;

        // Down from Monday 9 February until Wednesday 4 March: three Mondays missed.
        let back = DateTime::parse_from_rfc3339("2026-03-04T10:00:00Z")
            .unwrap()
            .to_utc();
        db.store.clock().set(back);
        let caught_up = run_due(&ctx, Job::Digest, "daemon-a").await.unwrap();
        let again = run_due(&ctx, Job::Digest, "daemon-a").await.unwrap();

        let last_monday = DateTime::parse_from_rfc3339("2026-03-02T07:00:00Z")
            .unwrap()
            .timestamp();
        match &caught_up {
            TickOutcome::Ran { tick_at, summary } => {
                assert_eq!(*tick_at, last_monday, "{}", db.label);
                assert!(summary.starts_with("week 2026-W10: "), "{summary}");
                assert!(
                    summary.ends_with("sent 3, retrying 0, failed 0"),
                    "{summary}"
                );
            }
            other => panic!("{}: {other:?}", db.label),
        }
        assert_eq!(again, TickOutcome::NothingDue, "{}", db.label);
        let runs = list_runs(&db.store, "digest").await.unwrap();
        assert_eq!(runs.len(), 2, "{}: {runs:?}", db.label);
        assert!(
            runs[1]
                .outcome
                .as_deref()
                .unwrap()
                .starts_with("ok: week 2026-W10")
        );
        assert_eq!(server.messages().len(), 3);
    }
}

#[tokio::test]
async fn a_job_reads_the_settings_in_force_when_its_run_starts() {
    let db = fresh_databases(Clock::fixed(monday_morning()))
        .await
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let old_server = SmtpServer::start(FaultMode::Accept);
    let new_server = SmtpServer::start(FaultMode::Accept);
    let (ctx, settings_tx) = context(&db.store, settings_for(&old_server, dir.path()));
    seed_notices(&db.store, &addresses(2)).await;

    // What SIGHUP does: new settings replace the old ones for the next run.
    settings_tx.send_replace(Arc::new(settings_for(&new_server, dir.path())));
    let summary = run_now(&ctx, Job::Delivery).await.unwrap();

    assert_eq!(summary, "sent 2, retrying 0, failed 0");
    assert!(old_server.messages().is_empty());
    assert_eq!(new_server.messages().len(), 2);
}

#[tokio::test]
async fn the_promotion_job_runs_on_demand() {
    let db = fresh_databases(Clock::fixed(monday_morning()))
        .await
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Accept);
    let (ctx, _settings) = context(&db.store, settings_for(&server, dir.path()));
    seed_notices(&db.store, &addresses(1)).await;

    let summary = run_now(&ctx, Job::Promotion).await.unwrap();

    // One resident following nobody: no council reaches the threshold of 25.
    assert_eq!(
        summary,
        "0 promoted, 0 demoted, 0 held back, 0 notices queued"
    );
}

#[tokio::test]
async fn the_limited_poll_job_polls_the_limited_councils_sources() {
    let db = fresh_databases(Clock::fixed(monday_morning()))
        .await
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Accept);
    let feed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/feeds/news_windows1252.rss"
    );
    let mut settings = settings_for(&server, dir.path());
    settings.fetch.allow_file_urls = true;
    settings.councils.insert(
        "leeds".to_owned(),
        council_digest::settings::CouncilOverride {
            feeds: vec![format!("file://{feed}")],
            ..Default::default()
        },
    );
    db.store
        .sync_councils(council_digest::registry::Registry::builtin(), &settings)
        .await
        .unwrap();
    // Only the local feed: the registry's council websites are not reachable from tests.
    sqlx::query("UPDATE sources SET active = 0 WHERE url NOT LIKE 'file:%'")
        .execute(db.store.pool())
        .await
        .unwrap();
    let (ctx, _settings) = context(&db.store, settings);

    let summary = run_now(&ctx, Job::PollLimited).await.unwrap();

    // The fixture holds four items; the last has neither a title nor a link and is skipped,
    // so three are new to an empty database.
    assert_eq!(
        summary,
        "1 sources: 3 new, 0 changed, 0 withdrawn, 0 failed"
    );
    let full = run_now(&ctx, Job::PollFull).await.unwrap();
    assert_eq!(full, "0 sources: 0 new, 0 changed, 0 withdrawn, 0 failed");
}

#[tokio::test]
async fn a_poll_runs_as_an_ordinary_spawned_task() {
    let db = fresh_databases(Clock::fixed(monday_morning()))
        .await
        .remove(0);
    let feed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/feeds/news_windows1252.rss"
    );
    let mut settings = Settings::defaults();
    settings.fetch.allow_file_urls = true;
    settings.councils.insert(
        "leeds".to_owned(),
        council_digest::settings::CouncilOverride {
            feeds: vec![format!("file://{feed}")],
            ..Default::default()
        },
    );
    db.store
        .sync_councils(council_digest::registry::Registry::builtin(), &settings)
        .await
        .unwrap();
    sqlx::query("UPDATE sources SET active = 0 WHERE url NOT LIKE 'file:%'")
        .execute(db.store.pool())
        .await
        .unwrap();

    // `tokio::spawn` takes only `Send` futures: this compiles only while the poll's is one.
    let store = db.store.clone();
    let report = tokio::spawn(async move {
        let filter = council_digest::sources::poll::PollFilter::default();
        council_digest::sources::poll::poll_sources(&store, &settings, &filter).await
    })
    .await
    .unwrap()
    .unwrap();

    // Three of the fixture's four items are readable (the last has no title and no link).
    assert_eq!(report.totals().sources, 1);
    assert_eq!(report.totals().new, 3);
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

/// Settings whose job leases last 20 seconds, shorter than the delivery job's minute.
fn short_leases(server: &SmtpServer, dir: &std::path::Path) -> Settings {
    let mut settings = settings_for(server, dir);
    settings.schedule.lease_seconds = 20;
    settings
}

#[tokio::test]
async fn a_tick_left_unfinished_by_a_stopped_daemon_is_run_again_once_its_lease_runs_out() {
    for db in fresh_databases(Clock::fixed(monday_morning())).await {
        db.store.clock().set(monday_morning());
        let dir = tempfile::tempdir().unwrap();
        let server = SmtpServer::start(FaultMode::Accept);
        let (ctx, _settings) = context(&db.store, short_leases(&server, dir.path()));
        run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();
        seed_notices(&db.store, &addresses(4)).await;

        // A daemon claimed the 07:01 tick, leased for 20 seconds, and was killed in the run.
        let tick = at("2026-02-09T07:01:00Z").timestamp();
        let claim = claim_tick(&db.store, "delivery", tick, "daemon-a", tick, tick + 20);
        assert_eq!(claim.await.unwrap(), TickClaim::Won);

        db.store.clock().set(at("2026-02-09T07:01:15Z"));
        let while_leased = run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();
        db.store.clock().set(at("2026-02-09T07:01:21Z"));
        let after_lease = run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();
        let again = run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();

        assert_eq!(while_leased, TickOutcome::NothingDue, "{}", db.label);
        assert_eq!(
            after_lease,
            TickOutcome::Resumed {
                tick_at: tick,
                summary: "sent 4, retrying 0, failed 0".to_owned()
            },
            "{}",
            db.label
        );
        assert_eq!(again, TickOutcome::NothingDue, "{}", db.label);
        assert_eq!(server.messages().len(), 4, "{}", db.label);
        let runs = list_runs(&db.store, "delivery").await.unwrap();
        let run = runs.iter().find(|r| r.tick_at == tick).unwrap();
        assert_eq!(run.claimed_by, "daemon-b", "{}", db.label);
        assert_eq!(
            run.finished_at,
            Some(at("2026-02-09T07:01:21Z").timestamp())
        );
        assert_eq!(
            run.outcome.as_deref(),
            Some("ok: sent 4, retrying 0, failed 0")
        );
    }
}

#[tokio::test]
async fn an_unfinished_tick_of_a_stopped_daemon_is_superseded_by_a_later_firing() {
    for db in fresh_databases(Clock::fixed(monday_morning())).await {
        db.store.clock().set(monday_morning());
        let dir = tempfile::tempdir().unwrap();
        let server = SmtpServer::start(FaultMode::Accept);
        let (ctx, _settings) = context(&db.store, short_leases(&server, dir.path()));
        run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();
        seed_notices(&db.store, &addresses(3)).await;
        let stale = at("2026-02-09T07:01:00Z").timestamp();
        claim_tick(&db.store, "delivery", stale, "daemon-a", stale, stale + 20)
            .await
            .unwrap();

        // Back after the 07:02 firing: that tick runs, once, and the 07:01 one is closed.
        db.store.clock().set(at("2026-02-09T07:02:30Z"));
        let outcome = run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();
        let again = run_due(&ctx, Job::Delivery, "daemon-b").await.unwrap();

        let latest = at("2026-02-09T07:02:00Z").timestamp();
        assert_eq!(
            outcome,
            TickOutcome::Ran {
                tick_at: latest,
                summary: "sent 3, retrying 0, failed 0".to_owned()
            },
            "{}",
            db.label
        );
        assert_eq!(again, TickOutcome::NothingDue, "{}", db.label);
        assert_eq!(server.messages().len(), 3, "{}", db.label);
        let runs = list_runs(&db.store, "delivery").await.unwrap();
        let closed = runs.iter().find(|r| r.tick_at == stale).unwrap();
        assert_eq!(closed.claimed_by, "daemon-a");
        assert_eq!(
            closed.outcome.as_deref(),
            Some("abandoned: its daemon stopped during the run, and a later tick ran"),
            "{}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_renews_its_lease_so_no_other_daemon_takes_its_tick_over() {
    for db in fresh_databases(Clock::fixed(monday_morning())).await {
        db.store.clock().set(monday_morning());
        let dir = tempfile::tempdir().unwrap();
        // The first attempt of each message meets silence: the run lasts the 2 s timeout.
        let server = SmtpServer::start(FaultMode::SilentFirst);
        let mut settings = settings_for(&server, dir.path());
        settings.schedule.lease_seconds = 3;
        settings.smtp.timeout_seconds = 2;
        let (a, _a_settings) = context(&db.store, settings.clone());
        let (b, _b_settings) = context(&db.store, settings);
        run_due(&a, Job::Delivery, "daemon-a").await.unwrap();
        seed_notices(&db.store, &addresses(1)).await;
        let tick = at("2026-02-09T07:01:00Z").timestamp();
        db.store.clock().set(from_ts(tick));

        let running = tokio::spawn(async move { run_due(&a, Job::Delivery, "daemon-a").await });
        wait_for_run(&db.store, tick, |_| true).await;
        // Ten seconds on: the first lease (to 07:01:03) would have run out, but the keeper
        // renews it (every second) to 3 s past the clock.
        db.store.clock().set(from_ts(tick + 10));
        wait_for_run(&db.store, tick, |until| until >= tick + 13).await;
        let other = run_due(&b, Job::Delivery, "daemon-b").await.unwrap();
        let outcome = running
            .await
            .unwrap()
            .map_err(|err| format!("{}: {err:?}", db.label));
        let outcome = outcome.unwrap();

        assert_eq!(other, TickOutcome::NothingDue, "{}", db.label);
        assert_eq!(
            outcome,
            TickOutcome::Ran {
                tick_at: tick,
                summary: "sent 0, retrying 1, failed 0".to_owned()
            },
            "{}",
            db.label
        );
        let runs = list_runs(&db.store, "delivery").await.unwrap();
        let run = runs.iter().find(|r| r.tick_at == tick).unwrap();
        assert_eq!(run.claimed_by, "daemon-a", "{}", db.label);
    }
}

fn from_ts(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap()
}

/// Waits (polling the database, at most 10 s) until the unfinished run of the delivery job at
/// `tick` exists with a lease that satisfies `lease`.
async fn wait_for_run(store: &Store, tick: i64, lease: impl Fn(i64) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let runs = list_runs(store, "delivery").await.unwrap();
        let found = runs.iter().any(|r| {
            r.tick_at == tick && r.finished_at.is_none() && r.claimed_until.is_some_and(&lease)
        });
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never showed the lease: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
