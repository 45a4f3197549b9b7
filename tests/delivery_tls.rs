//! The SMTP transport over TLS against a real TLS server on loopback: aiosmtpd with a
//! certificate for `localhost` and `127.0.0.1` signed by a CA made for each test (openssl), in
//! both STARTTLS and implicit-TLS modes.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use council_digest::clock::Clock;
use council_digest::delivery::drain_queue;
use council_digest::domain::DeliveryState;
use council_digest::mail::message::MailContext;
use council_digest::mail::templates::Renderer;
use council_digest::mail::transport::{SendError, Transport};
use council_digest::settings::{Settings, TlsMode};
use council_digest::store::ledger;
use council_digest::store::testing::{TestDatabase, fresh_databases};
use council_digest::tokens::SigningKey;
use support::seed::{addresses, seed_notices};
use support::smtp::{FaultMode, ServerTls, SmtpServer};

/// Settings for `server` at `host`, trusting the server's CA when `trust_ca` is set.
fn tls_settings(server: &SmtpServer, host: &str, trust_ca: bool) -> Settings {
    let mut settings = Settings::defaults();
    settings.smtp.host = host.to_owned();
    settings.smtp.port = server.port;
    settings.smtp.tls = match server.tls {
        Some(ServerTls::Starttls) => TlsMode::Starttls,
        Some(ServerTls::Implicit) => TlsMode::Tls,
        None => TlsMode::None,
    };
    if trust_ca {
        let ca_file = server.ca_file().expect("a TLS server has a CA file");
        settings.smtp.ca_file = ca_file.display().to_string();
    }
    settings.smtp.timeout_seconds = 5;
    settings.smtp.pool_size = 2;
    settings
}

/// A message whose body has lines a careless SMTP client mangles (leading dots, a lone dot) and
/// is long enough to span many TLS records.
fn message(to: &str, subject: &str) -> lettre::Message {
    let mut body = String::from("Planning committee meets on Tuesday.\r\n.\r\n..leading dots\r\n");
    for line in 0..4000 {
        body.push_str(&format!(
            "Agenda item {line}: a report on the local plan.\r\n"
        ));
    }
    lettre::Message::builder()
        .from("Council Digest <digest@example.org>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .body(body)
        .unwrap()
}

async fn assert_received_intact(server: &SmtpServer, sent: &lettre::Message) {
    server.wait_for_async(1, Duration::from_secs(5)).await;
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].mail_from, "digest@example.org");
    assert_eq!(received[0].rcpt_tos, vec!["reader@example.org".to_owned()]);
    // lettre ends DATA with CRLF `.` CRLF after the message; the server keeps that first CRLF.
    let formatted = sent.formatted();
    let sent = &formatted[..];
    let data = received[0]
        .data
        .strip_suffix(b"\r\n")
        .unwrap_or(&received[0].data);
    assert!(
        data == sent,
        "the server got {} bytes, the client formatted {}; first difference at byte {:?}",
        data.len(),
        sent.len(),
        data.iter().zip(sent).position(|(a, b)| a != b)
    );
}

#[tokio::test]
async fn a_starttls_delivery_trusting_the_test_ca_is_received_intact() {
    let server = SmtpServer::start_tls(FaultMode::Accept, ServerTls::Starttls);
    let transport = Transport::from_settings(&tls_settings(&server, "localhost", true)).unwrap();
    let mail = message("reader@example.org", "This week in Leeds, over STARTTLS");

    let result = transport.send(&mail).await;

    assert_eq!(result, Ok(()), "{}", server.log());
    assert_received_intact(&server, &mail).await;
}

#[tokio::test]
async fn an_implicit_tls_delivery_trusting_the_test_ca_is_received_intact() {
    let server = SmtpServer::start_tls(FaultMode::Accept, ServerTls::Implicit);
    let transport = Transport::from_settings(&tls_settings(&server, "127.0.0.1", true)).unwrap();
    let mail = message(
        "reader@example.org",
        "This week in Leeds, over implicit TLS",
    );

    let result = transport.send(&mail).await;

    assert_eq!(result, Ok(()), "{}", server.log());
    assert_received_intact(&server, &mail).await;
}

#[tokio::test]
async fn messages_over_tls_reuse_the_pooled_connection() {
    for tls in [ServerTls::Starttls, ServerTls::Implicit] {
        let server = SmtpServer::start_tls(FaultMode::Accept, tls);
        let mut settings = tls_settings(&server, "127.0.0.1", true);
        settings.smtp.pool_size = 1;
        let transport = Transport::from_settings(&settings).unwrap();

        for n in 0..5 {
            let subject = format!("Back to back {n}");
            transport
                .send(&message("reader@example.org", &subject))
                .await
                .unwrap_or_else(|err| panic!("{tls:?}: {err}"));
        }

        assert_eq!(server.messages().len(), 5, "{tls:?}");
        assert_eq!(
            server.connections_opened(),
            1,
            "{tls:?}: five messages on one TLS session"
        );
    }
}

#[tokio::test]
async fn messages_on_one_implicit_tls_connection_do_not_wait_for_delayed_acks() {
    let server = SmtpServer::start_tls(FaultMode::Accept, ServerTls::Implicit);
    let mut settings = tls_settings(&server, "127.0.0.1", true);
    settings.smtp.pool_size = 1;
    let transport = Transport::from_settings(&settings).unwrap();
    let short = lettre::Message::builder()
        .from("digest@example.org".parse().unwrap())
        .to("reader@example.org".parse().unwrap())
        .subject("Back to back")
        .body("Planning committee meets on Tuesday.\r\n".to_owned())
        .unwrap();
    transport.send(&short).await.unwrap();

    let started = std::time::Instant::now();
    for _ in 0..20 {
        transport.send(&short).await.unwrap();
    }
    let elapsed = started.elapsed();

    // With Nagle's algorithm on, each message waits ~40 ms for the server's delayed ACK:
    // 20 messages would take at least 800 ms.
    assert!(
        elapsed < Duration::from_millis(600),
        "20 sends took {elapsed:?}"
    );
    assert_eq!(server.messages().len(), 21);
    assert_eq!(server.connections_opened(), 1);
}

#[tokio::test]
async fn a_tls_server_silent_after_data_costs_one_timeout_and_the_retry_uses_a_new_connection() {
    let server = SmtpServer::start_tls(FaultMode::SilentFirst, ServerTls::Implicit);
    let mut settings = tls_settings(&server, "127.0.0.1", true);
    settings.smtp.timeout_seconds = 1;
    let transport = Transport::from_settings(&settings).unwrap();
    let mail = message("reader@example.org", "Silent once");

    let started = std::time::Instant::now();
    let first = transport.send(&mail).await;
    let elapsed = started.elapsed();
    transport.send(&mail).await.unwrap();

    assert!(
        matches!(&first, Err(SendError::Transient(detail)) if detail.contains("within")),
        "{first:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(server.messages().len(), 1);
    assert_eq!(
        server.connections_opened(),
        2,
        "the stuck connection is not reused"
    );
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_a_transient_tls_failure() {
    for tls in [ServerTls::Starttls, ServerTls::Implicit] {
        let server = SmtpServer::start_tls(FaultMode::Accept, tls);
        let transport =
            Transport::from_settings(&tls_settings(&server, "localhost", false)).unwrap();

        let result = transport
            .send(&message("reader@example.org", "Not trusted"))
            .await;

        let Err(SendError::Transient(detail)) = &result else {
            panic!("{tls:?}: expected a transient failure, got {result:?}");
        };
        assert!(detail.contains("TLS"), "{tls:?}: {detail}");
        assert!(detail.contains("certificate"), "{tls:?}: {detail}");
        assert!(detail.contains("smtp.ca_file"), "{tls:?}: {detail}");
        assert!(server.messages().is_empty(), "{tls:?}");
        assert!(server.events().is_empty(), "{tls:?}: no DATA was offered");
    }
}

/// Queues one notice in `db` and drains it once with `settings`; returns the drain's report and
/// the delivery's row afterwards.
async fn drain_one_notice(
    db: &TestDatabase,
    settings: &Settings,
) -> (
    council_digest::delivery::DrainReport,
    ledger::DeliveryRecord,
) {
    let transport = Transport::from_settings(settings).unwrap();
    let renderer = Renderer::built_in().unwrap();
    let ctx = MailContext::new(
        settings,
        SigningKey::from_bytes(&[7; 32]),
        db.store.clock().clone(),
    )
    .unwrap();
    let [(_, id)] = seed_notices(&db.store, &addresses(1)).await[..] else {
        unreachable!()
    };
    let report = drain_queue(&db.store, settings, &transport, &renderer, &ctx)
        .await
        .unwrap();
    let row = ledger::list_deliveries(&db.store, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    (report, row)
}

fn weekly_run_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn a_queued_delivery_to_an_untrusted_tls_server_is_retried_later_and_not_marked_sent() {
    for db in fresh_databases(Clock::fixed(weekly_run_time())).await {
        let server = SmtpServer::start_tls(FaultMode::Accept, ServerTls::Implicit);
        let mut settings = tls_settings(&server, "127.0.0.1", false);
        settings.delivery.rate_per_second = 1000.0;

        let (report, row) = drain_one_notice(&db, &settings).await;

        assert_eq!(
            (report.sent, report.retrying, report.failed),
            (0, 1, 0),
            "{}",
            db.label
        );
        assert_eq!(row.state, DeliveryState::Retrying, "{}", db.label);
        assert_eq!(row.sent_at, None, "{}", db.label);
        let error = row.last_error.unwrap_or_default();
        assert!(error.contains("certificate"), "{}: {error}", db.label);
        assert!(server.messages().is_empty(), "{}", db.label);
    }
}

#[test]
fn a_ca_file_that_cannot_be_read_is_a_start_up_error_naming_the_setting_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let mut settings = Settings::defaults();
    settings.smtp.host = "127.0.0.1".to_owned();
    settings.smtp.tls = TlsMode::Starttls;
    settings.smtp.ca_file = missing.display().to_string();

    let err = Transport::from_settings(&settings).unwrap_err().to_string();

    assert!(err.contains("smtp.ca_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn a_ca_file_without_a_usable_certificate_is_a_start_up_error_naming_the_setting_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("notes.txt", "not a certificate at all\n"),
        (
            "truncated.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n-----END CERTIFICATE-----\n",
        ),
        (
            "not-der.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        ),
    ];
    for tls in [TlsMode::Starttls, TlsMode::Tls] {
        for (name, contents) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            let mut settings = Settings::defaults();
            settings.smtp.host = "127.0.0.1".to_owned();
            settings.smtp.tls = tls;
            settings.smtp.ca_file = path.display().to_string();

            let err = Transport::from_settings(&settings).unwrap_err().to_string();

            assert!(err.contains("smtp.ca_file"), "{tls:?} {name}: {err}");
            assert!(
                err.contains(&path.display().to_string()),
                "{tls:?} {name}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn a_relay_without_starttls_leaves_the_delivery_retrying_and_counts_nothing_against_the_subscriber()
 {
    for db in fresh_databases(Clock::fixed(weekly_run_time())).await {
        // A plain server: it never offers STARTTLS, which the settings require.
        let server = SmtpServer::start(FaultMode::Accept);
        let mut settings = tls_settings(&server, "127.0.0.1", false);
        settings.smtp.tls = TlsMode::Starttls;
        settings.delivery.rate_per_second = 1000.0;
        settings.delivery.suppress_after_hard_failures = 1;

        let (report, row) = drain_one_notice(&db, &settings).await;

        assert_eq!(
            (report.sent, report.retrying, report.failed),
            (0, 1, 0),
            "{}",
            db.label
        );
        assert_eq!(row.state, DeliveryState::Retrying, "{}", db.label);
        let error = row.last_error.unwrap_or_default();
        assert!(error.contains("STARTTLS"), "{}: {error}", db.label);
        let hard_failures: Vec<i64> = sqlx::query_scalar("SELECT hard_failures FROM subscribers")
            .fetch_all(db.store.pool())
            .await
            .unwrap();
        assert_eq!(hard_failures, vec![0], "{}", db.label);
        assert!(server.messages().is_empty(), "{}", db.label);
    }
}
