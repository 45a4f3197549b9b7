//! The SMTP and file transports against a real SMTP server on loopback.

mod support;

use std::time::Duration;

use support::smtp::{FaultMode, SmtpServer};

#[test]
fn the_test_server_saves_what_it_accepts_and_logs_each_attempt() {
    use std::io::{BufRead, BufReader, Write};
    let server = SmtpServer::start(FaultMode::TempFailFirst);
    let dialog = |expect_final: &str| {
        let stream = std::net::TcpStream::connect(server.addr()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        let mut say = |text: &str, reader: &mut BufReader<std::net::TcpStream>| {
            if !text.is_empty() {
                writer.write_all(text.as_bytes()).unwrap();
            }
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line.clone();
                }
            }
        };
        assert!(say("", &mut reader).starts_with("220"));
        assert!(say("EHLO test\r\n", &mut reader).starts_with("250"));
        assert!(say("MAIL FROM:<a@example.org>\r\n", &mut reader).starts_with("250"));
        assert!(say("RCPT TO:<b@example.org>\r\n", &mut reader).starts_with("250"));
        assert!(say("DATA\r\n", &mut reader).starts_with("354"));
        let reply = say("Subject: hello\r\n\r\nbody\r\n.\r\n", &mut reader);
        assert!(reply.starts_with(expect_final), "{reply}");
        say("QUIT\r\n", &mut reader);
    };
    dialog("451");
    dialog("250");
    let messages = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(messages, vec![b"Subject: hello\r\n\r\nbody\r\n".to_vec()]);
    let received = server.received();
    assert_eq!(received[0].mail_from, "a@example.org");
    assert_eq!(received[0].rcpt_tos, vec!["b@example.org".to_owned()]);
    let outcomes: Vec<String> = server.events().into_iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec!["deferred-451", "accepted"]);
}

use council_digest::mail::transport::{SendError, Transport};
use council_digest::settings::{Settings, TlsMode};

fn smtp_settings(server: &SmtpServer, timeout_seconds: u64) -> Settings {
    let mut settings = Settings::defaults();
    settings.smtp.host = "127.0.0.1".to_owned();
    settings.smtp.port = server.port;
    settings.smtp.tls = TlsMode::None;
    settings.smtp.timeout_seconds = timeout_seconds;
    settings.smtp.pool_size = 2;
    settings
}

fn message(to: &str, subject: &str) -> lettre::Message {
    lettre::Message::builder()
        .from("Council Digest <digest@example.org>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .body("Planning committee meets on Tuesday.\r\n".to_owned())
        .unwrap()
}

#[tokio::test]
async fn an_accepted_message_reaches_the_server_with_its_envelope_and_subject() {
    let server = SmtpServer::start(FaultMode::Accept);
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();
    assert!(matches!(transport, Transport::Smtp(_)));

    transport
        .send(&message("reader@example.org", "This week in Leeds"))
        .await
        .unwrap();

    server.wait_for_async(1, Duration::from_secs(5)).await;
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].mail_from, "digest@example.org");
    assert_eq!(received[0].rcpt_tos, vec!["reader@example.org".to_owned()]);
    let text = received[0].text();
    assert!(text.contains("Subject: This week in Leeds\r\n"), "{text}");
    assert!(
        text.contains("Planning committee meets on Tuesday."),
        "{text}"
    );
}

#[tokio::test]
async fn a_451_reply_is_transient_and_the_next_attempt_is_accepted() {
    let server = SmtpServer::start(FaultMode::TempFailFirst);
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();
    let mail = message("reader@example.org", "Deferred once");

    let first = transport.send(&mail).await;
    assert!(
        matches!(&first, Err(SendError::Transient(detail)) if detail.contains("451")),
        "{first:?}"
    );
    transport.send(&mail).await.unwrap();

    assert_eq!(
        server.wait_for_async(1, Duration::from_secs(5)).await.len(),
        1
    );
    let outcomes: Vec<String> = server.events().into_iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec!["deferred-451", "accepted"]);
}

#[tokio::test]
async fn a_550_reply_is_permanent() {
    let server = SmtpServer::start(FaultMode::Reject);
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();

    let result = transport
        .send(&message("gone@example.org", "Rejected"))
        .await;

    assert!(
        matches!(&result, Err(SendError::Permanent(detail)) if detail.contains("550")),
        "{result:?}"
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_connection_dropped_during_data_is_transient_and_a_new_connection_is_used_next() {
    let server = SmtpServer::start(FaultMode::DropFirst);
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();
    let mail = message("reader@example.org", "Dropped once");

    let first = transport.send(&mail).await;
    assert!(matches!(first, Err(SendError::Transient(_))), "{first:?}");
    transport.send(&mail).await.unwrap();

    assert_eq!(
        server.wait_for_async(1, Duration::from_secs(5)).await.len(),
        1
    );
    let outcomes: Vec<String> = server.events().into_iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, vec!["dropped", "accepted"]);
}

#[tokio::test]
async fn a_server_that_never_greets_costs_one_timeout_and_is_transient() {
    let server = SmtpServer::start(FaultMode::NeverGreet);
    let transport = Transport::from_settings(&smtp_settings(&server, 1)).unwrap();

    let started = std::time::Instant::now();
    let result = transport
        .send(&message("reader@example.org", "Nobody home"))
        .await;
    let elapsed = started.elapsed();

    assert!(matches!(result, Err(SendError::Transient(_))), "{result:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "one timeout of 1 s, took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_server_silent_after_data_costs_one_timeout_and_the_retry_goes_through() {
    let server = SmtpServer::start(FaultMode::SilentFirst);
    let transport = Transport::from_settings(&smtp_settings(&server, 1)).unwrap();
    let mail = message("reader@example.org", "Silent once");

    let started = std::time::Instant::now();
    let first = transport.send(&mail).await;
    let elapsed = started.elapsed();
    assert!(matches!(first, Err(SendError::Transient(_))), "{first:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    let started = std::time::Instant::now();
    transport.send(&mail).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the retry must not wait on the stuck connection: {:?}",
        started.elapsed()
    );
    assert_eq!(
        server.wait_for_async(1, Duration::from_secs(5)).await.len(),
        1
    );
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced_for_the_next_send() {
    let server = SmtpServer::start_with(FaultMode::Accept, Some(Duration::from_millis(300)));
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();
    let closed_before = server.connections_closed();

    transport
        .send(&message("first@example.org", "Before the idle close"))
        .await
        .unwrap();
    // The server closes the idle pooled connection; wait until it says it did.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.connections_closed() <= closed_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never closed the connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    transport
        .send(&message("second@example.org", "After the idle close"))
        .await
        .unwrap();

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].rcpt_tos, vec!["second@example.org".to_owned()]);
}

#[tokio::test]
async fn a_server_that_refuses_the_connection_is_a_transient_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = Settings::defaults();
    settings.smtp.host = "127.0.0.1".to_owned();
    settings.smtp.port = port;
    let transport = Transport::from_settings(&settings).unwrap();

    let result = transport
        .send(&message("reader@example.org", "Nobody listens"))
        .await;

    assert!(
        matches!(&result, Err(SendError::Transient(detail)) if detail.contains("connect")),
        "{result:?}"
    );
}

#[tokio::test]
async fn messages_on_one_pooled_connection_do_not_wait_for_delayed_acks() {
    let server = SmtpServer::start(FaultMode::Accept);
    let mut settings = smtp_settings(&server, 5);
    settings.smtp.pool_size = 1;
    let transport = Transport::from_settings(&settings).unwrap();
    let mail = message("reader@example.org", "Back to back");
    transport.send(&mail).await.unwrap();

    let started = std::time::Instant::now();
    for _ in 0..20 {
        transport.send(&mail).await.unwrap();
    }
    let elapsed = started.elapsed();

    // With Nagle's algorithm on, each message waits ~40 ms for the server's delayed ACK:
    // 20 messages would take at least 800 ms.
    assert!(
        elapsed < Duration::from_millis(600),
        "20 sends took {elapsed:?}"
    );
    assert_eq!(server.messages().len(), 21);
    assert_eq!(
        server.connections_closed(),
        1,
        "one connection (besides the start probe)"
    );
}

/// What the server stored for its one message, without the CRLF it keeps from the end of DATA,
/// compared byte for byte with what lettre formatted.
async fn assert_received_as_formatted(server: &SmtpServer, sent: &lettre::Message) {
    server.wait_for_async(1, Duration::from_secs(5)).await;
    let received = server.received();
    assert_eq!(received.len(), 1);
    let formatted = sent.formatted();
    let data = received[0]
        .data
        .strip_suffix(b"\r\n")
        .unwrap_or(&received[0].data);
    assert!(
        data == &formatted[..],
        "the server got {} bytes, the client formatted {}; first difference at byte {:?}",
        data.len(),
        formatted.len(),
        data.iter().zip(&formatted).position(|(a, b)| a != b)
    );
}

#[tokio::test]
async fn lines_that_start_with_a_dot_arrive_intact_for_every_recipient() {
    let server = SmtpServer::start(FaultMode::Accept);
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();
    let body = ".\r\n..two dots\r\n.one dot\r\nA line. With dots.\r\n.\r\n".repeat(50);
    let mail = lettre::Message::builder()
        .from("Council Digest <digest@example.org>".parse().unwrap())
        .to("reader@example.org".parse().unwrap())
        .cc("clerk@example.org".parse().unwrap())
        .subject("Dots")
        .body(body)
        .unwrap();
    assert!(
        mail.formatted().is_ascii(),
        "a 7-bit message takes the common path"
    );

    transport.send(&mail).await.unwrap();

    assert_received_as_formatted(&server, &mail).await;
    let received = server.received();
    assert_eq!(
        received[0].rcpt_tos,
        vec![
            "reader@example.org".to_owned(),
            "clerk@example.org".to_owned()
        ]
    );
}

#[tokio::test]
async fn an_eight_bit_message_is_sent_with_8bitmime_and_arrives_intact() {
    use lettre::message::header::ContentTransferEncoding;
    let server = SmtpServer::start(FaultMode::Accept);
    let transport = Transport::from_settings(&smtp_settings(&server, 5)).unwrap();
    let body = lettre::message::Body::new_with_encoding(
        "Café Royal, Llandudno: the licensing sub-committee meets.\r\n.\r\n".to_owned(),
        ContentTransferEncoding::EightBit,
    )
    .unwrap();
    let mail = lettre::Message::builder()
        .from("Council Digest <digest@example.org>".parse().unwrap())
        .to("reader@example.org".parse().unwrap())
        .subject("Eight bits")
        .body(body)
        .unwrap();
    assert!(!mail.formatted().is_ascii());

    transport.send(&mail).await.unwrap();

    assert_received_as_formatted(&server, &mail).await;
}

#[tokio::test]
async fn credentials_the_server_cannot_take_are_a_transient_failure_naming_the_session() {
    // The test server offers no AUTH, so the configured login cannot be used.
    let server = SmtpServer::start(FaultMode::Accept);
    let mut settings = smtp_settings(&server, 5);
    settings.smtp.username = "digest".to_owned();
    settings.smtp.password = "s3cret-pass".to_owned().into();
    let transport = Transport::from_settings(&settings).unwrap();

    let result = transport
        .send(&message("reader@example.org", "Needs a login"))
        .await;

    let Err(SendError::Transient(detail)) = &result else {
        panic!("expected a transient failure, got {result:?}");
    };
    assert!(detail.contains("did not open a session"), "{detail}");
    assert!(!detail.contains("s3cret-pass"), "{detail}");
    assert!(server.messages().is_empty());
}
