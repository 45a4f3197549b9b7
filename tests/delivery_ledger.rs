//! The delivery ledger end to end, in process: real SQLite file and PostgreSQL database (when
//! TEST_DATABASE_URL is set), real templates, real SMTP server on loopback with fault modes,
//! and a fixed clock the test moves.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use council_digest::clock::Clock;
use council_digest::delivery::{DrainReport, drain_queue};
use council_digest::domain::DeliveryState;
use council_digest::mail::message::MailContext;
use council_digest::mail::templates::Renderer;
use council_digest::mail::transport::Transport;
use council_digest::settings::{Settings, TlsMode};
use council_digest::store::Store;
use council_digest::store::ledger;
use council_digest::store::testing::{TestDatabase, fresh_databases};
use council_digest::tokens::SigningKey;
use sqlx::Row;
use support::seed::{addresses, queue_another, seed_notices};
use support::smtp::{FaultMode, SmtpServer};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
        .unwrap()
        .to_utc()
}

fn settings_for(server: &SmtpServer) -> Settings {
    let mut settings = Settings::defaults();
    settings.smtp.host = "127.0.0.1".to_owned();
    settings.smtp.port = server.port;
    settings.smtp.tls = TlsMode::None;
    settings.smtp.timeout_seconds = 5;
    settings.delivery.rate_per_second = 1000.0;
    settings.delivery.workers = 4;
    settings.delivery.backoff_base_seconds = 60;
    settings.delivery.backoff_max_seconds = 21_600;
    settings.delivery.max_attempts = 10;
    settings.delivery.suppress_after_hard_failures = 3;
    settings
}

/// Everything a drain needs, built as the daemon builds it.
struct Sender {
    settings: Settings,
    transport: Transport,
    renderer: Renderer,
    ctx: MailContext,
}

impl Sender {
    fn new(settings: Settings, clock: &Clock) -> Sender {
        Sender {
            transport: Transport::from_settings(&settings).unwrap(),
            renderer: Renderer::built_in().unwrap(),
            ctx: MailContext::new(&settings, SigningKey::from_bytes(&[7; 32]), clock.clone())
                .unwrap(),
            settings,
        }
    }

    async fn drain(&self, store: &Store) -> DrainReport {
        drain_queue(
            store,
            &self.settings,
            &self.transport,
            &self.renderer,
            &self.ctx,
        )
        .await
        .unwrap()
    }
}

async fn record(db: &TestDatabase, id: i64) -> ledger::DeliveryRecord {
    ledger::list_deliveries(&db.store, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap()
}

fn recipient_counts(server: &SmtpServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for received in server.received() {
        for rcpt in received.rcpt_tos {
            *counts.entry(rcpt).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn every_queued_delivery_is_sent_once_and_a_second_drain_sends_nothing() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Accept);
        let sender = Sender::new(settings_for(&server), db.store.clock());
        let seeded = seed_notices(&db.store, &addresses(6)).await;

        let first = sender.drain(&db.store).await;
        let second = sender.drain(&db.store).await;

        assert_eq!(
            (first.sent, first.retrying, first.failed),
            (6, 0, 0),
            "{}",
            db.label
        );
        assert_eq!(second, DrainReport::default(), "{}", db.label);
        let counts = recipient_counts(&server);
        assert_eq!(counts.len(), 6, "{}", db.label);
        assert!(counts.values().all(|&n| n == 1), "{}: {counts:?}", db.label);
        for (_, delivery_id) in seeded {
            let row = record(&db, delivery_id).await;
            assert_eq!(row.state, DeliveryState::Sent, "{}", db.label);
            assert_eq!(row.attempts, 1);
            assert_eq!(row.sent_at, Some(t0().timestamp()));
            assert_eq!(row.lease_until, None);
        }
        let text = server.received()[0].text();
        assert!(text.contains("Leeds"), "{}: {text}", db.label);
    }
}

#[tokio::test]
async fn a_451_reply_is_retried_after_the_backoff_and_delivered_once() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::TempFailFirst);
        let sender = Sender::new(settings_for(&server), db.store.clock());
        let [(_, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };

        let first = sender.drain(&db.store).await;
        assert_eq!((first.sent, first.retrying), (0, 1), "{}", db.label);
        let row = record(&db, id).await;
        assert_eq!(row.state, DeliveryState::Retrying);
        assert_eq!(row.attempts, 1);
        // First retry: base 60 s, jittered between 30 and 60 s.
        let wait = row.next_attempt_at - t0().timestamp();
        assert!((30..=60).contains(&wait), "{}: retry in {wait} s", db.label);
        assert!(row.last_error.as_deref().unwrap_or("").contains("451"));

        let too_early = sender.drain(&db.store).await;
        assert_eq!(too_early, DrainReport::default(), "{}", db.label);

        db.store.clock().set(t0() + chrono::Duration::seconds(wait));
        let retried = sender.drain(&db.store).await;
        assert_eq!(retried.sent, 1, "{}", db.label);
        let row = record(&db, id).await;
        assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 2));
        assert_eq!(server.messages().len(), 1, "{}", db.label);
        let outcomes: Vec<String> = server.events().into_iter().map(|e| e.outcome).collect();
        assert_eq!(outcomes, vec!["deferred-451", "accepted"], "{}", db.label);
    }
}

#[tokio::test]
async fn a_550_reply_fails_the_delivery_for_good_and_counts_against_the_subscriber() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Reject);
        let sender = Sender::new(settings_for(&server), db.store.clock());
        let [(subscriber, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };

        let report = sender.drain(&db.store).await;
        db.store.clock().set(t0() + chrono::Duration::days(2));
        let later = sender.drain(&db.store).await;

        assert_eq!((report.sent, report.retrying, report.failed), (0, 0, 1));
        assert_eq!(later, DrainReport::default(), "{}", db.label);
        let row = record(&db, id).await;
        assert_eq!(row.state, DeliveryState::Failed);
        assert!(row.last_error.as_deref().unwrap_or("").contains("550"));
        assert_eq!(server.events().len(), 1, "{}: tried once only", db.label);
        let hard: i64 = sqlx::query("SELECT hard_failures FROM subscribers WHERE id = $1")
            .bind(subscriber)
            .fetch_one(db.store.pool())
            .await
            .unwrap()
            .get("hard_failures");
        assert_eq!(hard, 1, "{}", db.label);
    }
}

#[tokio::test]
async fn a_subscriber_is_suppressed_after_the_configured_permanent_failures_and_not_tried_again() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Reject);
        let mut settings = settings_for(&server);
        settings.delivery.suppress_after_hard_failures = 2;
        let sender = Sender::new(settings, db.store.clock());
        let [(subscriber, _)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };
        queue_another(&db.store, subscriber, "second").await;

        let report = sender.drain(&db.store).await;
        assert_eq!(report.failed, 2, "{}", db.label);
        let row = sqlx::query("SELECT hard_failures, suppressed_at FROM subscribers WHERE id = $1")
            .bind(subscriber)
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>("hard_failures"), 2);
        assert_eq!(
            row.get::<Option<i64>, _>("suppressed_at"),
            Some(t0().timestamp())
        );

        let third = queue_another(&db.store, subscriber, "third").await;
        let report = sender.drain(&db.store).await;
        assert_eq!(report.failed, 1, "{}", db.label);
        assert_eq!(
            server.events().len(),
            2,
            "{}: the third was not offered",
            db.label
        );
        let row = record(&db, third).await;
        assert_eq!(row.state, DeliveryState::Failed);
        assert!(row.last_error.unwrap().contains("suppressed"));
    }
}

#[tokio::test]
async fn a_connection_dropped_during_data_is_retried_and_the_message_delivered_once() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::DropFirst);
        let sender = Sender::new(settings_for(&server), db.store.clock());
        let [(_, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };

        let first = sender.drain(&db.store).await;
        assert_eq!(first.retrying, 1, "{}", db.label);
        let row = record(&db, id).await;
        db.store
            .clock()
            .set(DateTime::from_timestamp(row.next_attempt_at, 0).unwrap());
        let second = sender.drain(&db.store).await;

        assert_eq!(second.sent, 1, "{}", db.label);
        assert_eq!(server.messages().len(), 1);
        let outcomes: Vec<String> = server.events().into_iter().map(|e| e.outcome).collect();
        assert_eq!(outcomes, vec!["dropped", "accepted"], "{}", db.label);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_costs_one_timeout_and_the_delivery_is_retried() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::NeverGreet);
        let mut settings = settings_for(&server);
        settings.smtp.timeout_seconds = 1;
        let sender = Sender::new(settings, db.store.clock());
        let [(_, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };

        let started = std::time::Instant::now();
        let report = sender.drain(&db.store).await;
        let elapsed = started.elapsed();

        assert_eq!((report.sent, report.retrying), (0, 1), "{}", db.label);
        assert!(
            elapsed < Duration::from_secs(4),
            "{}: took {elapsed:?}",
            db.label
        );
        let row = record(&db, id).await;
        assert_eq!((row.state, row.attempts), (DeliveryState::Retrying, 1));
        assert!(row.last_error.is_some());
    }
}

#[tokio::test]
async fn transient_failures_give_up_after_max_attempts_without_counting_a_hard_failure() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Drop);
        let mut settings = settings_for(&server);
        settings.delivery.max_attempts = 2;
        let sender = Sender::new(settings, db.store.clock());
        let [(subscriber, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };

        assert_eq!(sender.drain(&db.store).await.retrying, 1);
        db.store.clock().set(t0() + chrono::Duration::hours(1));
        let last = sender.drain(&db.store).await;

        assert_eq!(last.failed, 1, "{}", db.label);
        let row = record(&db, id).await;
        assert_eq!((row.state, row.attempts), (DeliveryState::Failed, 2));
        assert!(
            row.last_error
                .unwrap()
                .starts_with("gave up after 2 attempts")
        );
        let hard: i64 = sqlx::query("SELECT hard_failures FROM subscribers WHERE id = $1")
            .bind(subscriber)
            .fetch_one(db.store.pool())
            .await
            .unwrap()
            .get("hard_failures");
        assert_eq!(hard, 0, "{}", db.label);
    }
}

#[tokio::test]
async fn a_lease_held_by_a_dead_worker_returns_to_the_queue_when_it_expires() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Accept);
        let sender = Sender::new(settings_for(&server), db.store.clock());
        let [(_, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
            unreachable!()
        };
        let now = t0().timestamp();
        let taken = ledger::claim_due(&db.store, "dead-worker", 10, now, now + 300)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);

        let while_leased = sender.drain(&db.store).await;
        assert_eq!(while_leased, DrainReport::default(), "{}", db.label);
        assert_eq!(record(&db, id).await.state, DeliveryState::Sending);

        db.store.clock().set(t0() + chrono::Duration::seconds(301));
        let after_expiry = sender.drain(&db.store).await;

        assert_eq!(after_expiry.sent, 1, "{}", db.label);
        let row = record(&db, id).await;
        assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 2));
        assert_eq!(server.messages().len(), 1, "{}", db.label);
    }
}

#[tokio::test]
async fn failed_deliveries_requeued_by_an_operator_are_sent_by_the_next_drain() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let rejecting = SmtpServer::start(FaultMode::Reject);
        let seeded = seed_notices(&db.store, &addresses(3)).await;
        let report = Sender::new(settings_for(&rejecting), db.store.clock())
            .drain(&db.store)
            .await;
        assert_eq!(report.failed, 3, "{}", db.label);

        let requeued = ledger::requeue_failed(&db.store, t0().timestamp())
            .await
            .unwrap();
        let accepting = SmtpServer::start(FaultMode::Accept);
        let report = Sender::new(settings_for(&accepting), db.store.clock())
            .drain(&db.store)
            .await;

        assert_eq!(requeued, 3);
        assert_eq!(report.sent, 3, "{}", db.label);
        for (_, id) in seeded {
            assert_eq!(record(&db, id).await.state, DeliveryState::Sent);
        }
        assert_eq!(recipient_counts(&accepting).len(), 3);
    }
}

#[tokio::test]
async fn two_drains_at_once_on_one_database_send_each_message_once() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        // The databases share one clock; each pass starts at t0.
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Accept);
        let mut settings = settings_for(&server);
        settings.delivery.lease_seconds = 10;
        settings.delivery.workers = 3;
        let first = Sender::new(settings.clone(), db.store.clock());
        let second = Sender::new(settings, db.store.clock());
        seed_notices(&db.store, &addresses(60)).await;

        let (a, b) = tokio::join!(first.drain(&db.store), second.drain(&db.store));

        assert_eq!(a.sent + b.sent, 60, "{}: {a:?} {b:?}", db.label);
        let counts = recipient_counts(&server);
        assert_eq!(counts.len(), 60, "{}", db.label);
        assert!(counts.values().all(|&n| n == 1), "{}: {counts:?}", db.label);
    }
}

#[tokio::test]
async fn the_rate_limit_spaces_out_sends() {
    let db = fresh_databases(Clock::fixed(t0())).await.remove(0);
    let server = SmtpServer::start(FaultMode::Accept);
    let mut settings = settings_for(&server);
    settings.delivery.rate_per_second = 20.0;
    settings.delivery.workers = 2;
    let sender = Sender::new(settings, db.store.clock());
    seed_notices(&db.store, &addresses(12)).await;

    let started = std::time::Instant::now();
    let report = sender.drain(&db.store).await;
    let elapsed = started.elapsed();

    assert_eq!(report.sent, 12);
    // A burst of 2 (one per worker), then 10 more at 20 a second: at least 0.5 s.
    assert!(elapsed >= Duration::from_millis(450), "took {elapsed:?}");
}

#[tokio::test]
async fn a_drain_stopped_for_shutdown_finishes_its_sends_and_hands_back_the_rest() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        db.store.clock().set(t0());
        let server = SmtpServer::start(FaultMode::Accept);
        let mut settings = settings_for(&server);
        // Two a second, one at a time: the six claimed messages take about three seconds.
        settings.delivery.rate_per_second = 2.0;
        settings.delivery.workers = 1;
        let sender = Sender::new(settings, db.store.clock());
        let seeded = seed_notices(&db.store, &addresses(6)).await;
        let shutdown = tokio_util::sync::CancellationToken::new();

        let render = council_digest::delivery::MailRenderer {
            store: &db.store,
            settings: &sender.settings,
            renderer: &sender.renderer,
            ctx: &sender.ctx,
        };
        let drain = council_digest::delivery::Drain::new(
            &db.store,
            &sender.settings.delivery,
            &sender.transport,
        );
        let stop_after_first = async {
            server.wait_for_async(1, Duration::from_secs(10)).await;
            shutdown.cancel();
        };
        let (report, ()) = tokio::join!(drain.run(&render, Some(&shutdown)), stop_after_first);
        let report = report.unwrap();

        assert!(
            report.sent >= 1 && report.released >= 1,
            "{}: {report:?}",
            db.label
        );
        assert_eq!(report.sent + report.released, 6, "{}: {report:?}", db.label);
        let mut queued = 0;
        for (_, id) in seeded {
            let row = record(&db, id).await;
            match row.state {
                DeliveryState::Sent => assert_eq!(row.attempts, 1),
                DeliveryState::Queued => {
                    assert_eq!((row.attempts, row.lease_until), (0, None));
                    queued += 1;
                }
                other => panic!("{}: delivery {id} is {other}", db.label),
            }
        }
        assert_eq!(queued, report.released, "{}", db.label);
        assert_eq!(server.messages().len() as u64, report.sent, "{}", db.label);
    }
}

#[tokio::test]
async fn a_group_of_sent_marks_is_written_at_once_with_each_rows_own_values() {
    for db in fresh_databases(Clock::fixed(t0())).await {
        db.store.clock().set(t0());
        let seeded = seed_notices(&db.store, &addresses(4)).await;
        let now = t0().timestamp();
        let claimed = ledger::claim_due(&db.store, "w1", 10, now, now + 300)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 4, "{}", db.label);
        let ids: Vec<i64> = seeded.iter().map(|(_, id)| *id).collect();

        let marks = [
            ledger::SentMark {
                id: ids[0],
                message_id: Some("<a@test>"),
                sent_at: now + 1,
            },
            ledger::SentMark {
                id: ids[1],
                message_id: None,
                sent_at: now + 2,
            },
            ledger::SentMark {
                id: ids[2],
                message_id: Some("<c@test>"),
                sent_at: now + 3,
            },
        ];
        ledger::mark_sent_many(&db.store, &marks).await.unwrap();
        // Marking a row that is already sent again changes nothing.
        ledger::mark_sent_many(
            &db.store,
            &[ledger::SentMark {
                id: ids[0],
                message_id: Some("<again@test>"),
                sent_at: now + 50,
            }],
        )
        .await
        .unwrap();
        ledger::mark_sent_many(&db.store, &[]).await.unwrap();

        let expected = [
            (DeliveryState::Sent, Some(now + 1), Some("<a@test>")),
            (DeliveryState::Sent, Some(now + 2), None),
            (DeliveryState::Sent, Some(now + 3), Some("<c@test>")),
            (DeliveryState::Sending, None, None),
        ];
        for (id, (state, sent_at, message_id)) in ids.iter().zip(expected) {
            let row = record(&db, *id).await;
            assert_eq!(row.state, state, "{}: delivery {id}", db.label);
            assert_eq!(row.sent_at, sent_at, "{}: delivery {id}", db.label);
            let stored: Option<String> =
                sqlx::query("SELECT message_id FROM deliveries WHERE id = $1")
                    .bind(*id)
                    .fetch_one(db.store.pool())
                    .await
                    .unwrap()
                    .try_get("message_id")
                    .unwrap();
            assert_eq!(stored.as_deref(), message_id, "{}: delivery {id}", db.label);
        }
    }
}
