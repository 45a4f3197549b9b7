//! Generated messages, parsed back with mail-parser and compared header by header and part by
//! part with what was intended.

#[path = "digest_common.rs"]
mod common;

use common::*;
use council_digest::clock::Clock;
use council_digest::digest::contents::{
    CONTENTS_VERSION, CouncilSection, DigestContents, LimitedBlock,
};
use council_digest::domain::EmailAddress;
use council_digest::mail::MailError;
use council_digest::mail::message::{
    MailContext, confirmation_message, digest_message, render_delivery, request_ack_message,
};
use council_digest::store::councils::Council;
use council_digest::store::deliveries::{NewDelivery, enqueue_delivery};
use council_digest::tokens::LinkPurpose;
use mail_parser::MessageParser;

fn clock() -> Clock {
    Clock::fixed(at("2026-02-09T07:00:00Z"))
}

fn address(raw: &str) -> EmailAddress {
    raw.parse().unwrap()
}

fn council(id: i64, slug: &str, name: &str) -> Council {
    Council {
        id,
        slug: slug.parse().unwrap(),
        name: name.to_owned(),
        gss_code: "W06000001".to_owned(),
        nation: "Wales".to_owned(),
        council_type: "unitary".to_owned(),
        platform: council_digest::domain::Platform::ModernGov,
        base_url: None,
        support: council_digest::domain::SupportLevel::Limited,
        support_pinned: false,
        support_changed_at: None,
    }
}

/// A digest for week 7 with one full council with no meetings and one limited council.
fn contents() -> DigestContents {
    DigestContents {
        version: CONTENTS_VERSION,
        week: "2026-W07".to_owned(),
        week_start: date(2026, 2, 9),
        window_start: date(2026, 2, 2),
        window_end: date(2026, 2, 16),
        built_at: at("2026-02-09T07:00:00Z").timestamp(),
        changes_since: None,
        councils: vec![CouncilSection {
            council_id: 1,
            slug: "newcastle-under-lyme".to_owned(),
            name: "Newcastle-under-Lyme Borough Council".to_owned(),
            meetings: vec![],
            changes: vec![],
            source_failing_since: None,
            notices: vec![],
        }],
        limited: vec![LimitedBlock {
            council_id: 2,
            slug: "isle-of-anglesey".to_owned(),
            name: "Ynys Môn – Isle of Anglesey County Council".to_owned(),
            position: Some(12),
            waiting: 317,
            needed: 8,
        }],
    }
}

/// Every header line of a formatted message is at most 998 octets, and the headers are ASCII.
fn assert_headers_well_formed(eml: &[u8]) {
    let text = String::from_utf8_lossy(eml);
    let headers = text.split("\r\n\r\n").next().unwrap();
    for line in headers.split("\r\n") {
        assert!(
            line.len() <= 998,
            "header line of {} octets: {line}",
            line.len()
        );
        assert!(line.is_ascii(), "non-ASCII header line: {line}");
    }
}

fn raw_header(message: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    message
        .header_raw(name)
        .map(|raw| raw.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn a_digest_parses_back_with_its_subject_list_headers_and_text_then_html() {
    let settings = settings();
    let ctx = mail_context(&settings, &clock());
    let rendered = digest_message(
        &ctx,
        &renderer(),
        &address("Zoe.Resident@Example.ORG"),
        7,
        Some(42),
        &contents(),
    )
    .unwrap();
    let eml = rendered.message.formatted();
    assert_headers_well_formed(&eml);
    let raw = String::from_utf8_lossy(&eml);
    assert!(
        raw.contains("\r\nSubject: Newcastle-under-Lyme Borough Council and Ynys =?utf-8?b?"),
        "the subject is RFC 2047 encoded:\n{raw}"
    );

    let parsed = MessageParser::default().parse(&eml).unwrap();
    assert_eq!(
        parsed.subject(),
        Some(
            "Newcastle-under-Lyme Borough Council and Ynys Môn – Isle of Anglesey County \
             Council: no meetings, week of 9 February 2026 (2026-W07)"
        )
    );
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Council Digest"));
    assert_eq!(from.address(), Some("digest@example.org"));
    assert_eq!(
        parsed.reply_to().unwrap().first().unwrap().address(),
        Some("help@example.org")
    );
    assert_eq!(
        parsed.to().unwrap().first().unwrap().address(),
        Some("Zoe.Resident@example.org")
    );
    assert_eq!(
        parsed.date().unwrap().to_timestamp(),
        at("2026-02-09T07:00:00Z").timestamp()
    );
    let message_id = parsed.message_id().unwrap();
    assert!(message_id.starts_with("digest."), "{message_id}");
    assert!(message_id.ends_with("@example.org"), "{message_id}");
    assert_eq!(rendered.message_id, format!("<{message_id}>"));

    let unsubscribe = signing_key().sign(LinkPurpose::Unsubscribe, "7");
    let unsubscribe_url = format!("{BASE_URL}/unsubscribe/{unsubscribe}");
    assert_eq!(
        raw_header(&parsed, "List-Id").as_deref(),
        Some("<weekly.digest.example.org>")
    );
    assert_eq!(
        raw_header(&parsed, "List-Unsubscribe"),
        Some(format!(
            "<{unsubscribe_url}>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
        ))
    );
    assert_eq!(
        raw_header(&parsed, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );

    let parts = parts_of(&parsed);
    let kinds: Vec<&str> = parts.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["text/plain", "text/html"]);
    let preferences = signing_key().sign(LinkPurpose::Preferences, "7");
    let preferences_url = format!("{BASE_URL}/preferences/{preferences}");
    let web_view = signing_key().sign(LinkPurpose::DigestView, "42");
    for (kind, body) in &parts {
        assert!(body.contains(&unsubscribe_url), "{kind}: {body}");
        assert!(body.contains(&preferences_url), "{kind}: {body}");
        assert!(
            body.contains(&format!("{BASE_URL}/digests/{web_view}")),
            "{kind}: {body}"
        );
    }
    assert!(
        parts[0]
            .1
            .contains("It is 12th of 317 waiting. It needs 8 more subscribers")
    );
    assert!(
        parts[1]
            .1
            .contains("Ynys Môn – Isle of Anglesey County Council")
    );
}

#[test]
fn the_mailto_form_is_left_out_when_no_unsubscribe_address_is_set() {
    let mut settings = settings();
    settings.mail.unsubscribe_mailto = String::new();
    settings.mail.reply_to = String::new();
    let ctx = mail_context(&settings, &clock());
    let rendered = digest_message(
        &ctx,
        &renderer(),
        &address("a@example.org"),
        3,
        None,
        &contents(),
    )
    .unwrap();
    let eml = rendered.message.formatted();
    let parsed = MessageParser::default().parse(&eml).unwrap();
    let token = signing_key().sign(LinkPurpose::Unsubscribe, "3");
    assert_eq!(
        raw_header(&parsed, "List-Unsubscribe"),
        Some(format!("<{BASE_URL}/unsubscribe/{token}>"))
    );
    assert!(parsed.reply_to().is_none());
}

#[test]
fn a_confirmation_has_no_one_click_header_and_keeps_its_link_exact_in_text() {
    let settings = settings();
    let ctx = mail_context(&settings, &clock());
    let anglesey = council(
        2,
        "isle-of-anglesey",
        "Ynys Môn – Isle of Anglesey County Council",
    );
    let confirm_url = format!("{BASE_URL}/confirm/AbC-123_x?from=form&lang=cy");
    let message = confirmation_message(
        &ctx,
        &renderer(),
        &address("new@example.org"),
        &anglesey,
        &confirm_url,
    )
    .unwrap();
    let eml = message.formatted();
    assert_headers_well_formed(&eml);
    let parsed = MessageParser::default().parse(&eml).unwrap();

    assert_eq!(
        parsed.subject(),
        Some("Confirm your weekly digest for Ynys Môn – Isle of Anglesey County Council")
    );
    assert_eq!(raw_header(&parsed, "List-Unsubscribe"), None);
    assert_eq!(raw_header(&parsed, "List-Unsubscribe-Post"), None);
    assert_eq!(
        raw_header(&parsed, "List-Id").as_deref(),
        Some("<weekly.digest.example.org>")
    );
    let parts = parts_of(&parsed);
    assert_eq!(parts[0].0, "text/plain");
    assert!(
        parts[0].1.contains(&format!("\n{confirm_url}\n")),
        "{}",
        parts[0].1
    );
    assert!(parts[0].1.contains("within 48 hours"), "{}", parts[0].1);
    assert!(
        parts[1].1.contains(&confirm_url.replace('&', "&amp;")),
        "{}",
        parts[1].1
    );
}

#[test]
fn a_request_acknowledgement_greets_the_requester_by_name() {
    let settings = settings();
    let ctx = mail_context(&settings, &clock());
    let anglesey = council(
        2,
        "isle-of-anglesey",
        "Ynys Môn – Isle of Anglesey County Council",
    );
    let message = request_ack_message(
        &ctx,
        &renderer(),
        &address("clerk@example.org"),
        &anglesey,
        Some("Siân O'Brien"),
    )
    .unwrap();
    let eml = message.formatted();
    let parsed = MessageParser::default().parse(&eml).unwrap();
    assert_eq!(
        parsed.subject(),
        Some("We have your request for Ynys Môn – Isle of Anglesey County Council")
    );
    let text = parsed.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(text.starts_with("Dear Siân O'Brien,\n"), "{text}");
    assert!(
        text.contains(&format!("{BASE_URL}/councils/isle-of-anglesey")),
        "{text}"
    );
    let html = parsed.body_html(0).unwrap();
    assert!(html.contains("Dear Siân O&#39;Brien,"), "{html}");
}

#[test]
fn an_ed25519_dkim_key_signs_the_list_headers() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("dkim.key");
    // The base64 of a 32-byte Ed25519 seed.
    std::fs::write(&key_file, "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n").unwrap();
    let mut settings = settings();
    settings.mail.dkim_selector = "sel2026".to_owned();
    settings.mail.dkim_domain = "example.org".to_owned();
    settings.mail.dkim_private_key_file = key_file.display().to_string();
    let ctx = mail_context(&settings, &clock());
    let rendered = digest_message(
        &ctx,
        &renderer(),
        &address("a@example.org"),
        3,
        None,
        &contents(),
    )
    .unwrap();
    let eml = rendered.message.formatted();
    assert_headers_well_formed(&eml);
    let parsed = MessageParser::default().parse(&eml).unwrap();
    let signature = raw_header(&parsed, "DKIM-Signature").unwrap();
    assert!(signature.contains("a=ed25519-sha256"), "{signature}");
    assert!(signature.contains("d=example.org;"), "{signature}");
    assert!(signature.contains("s=sel2026;"), "{signature}");
    assert!(
        signature.contains("list-unsubscribe:list-unsubscribe-post"),
        "{signature}"
    );
}

/// Signs a digest with the key in `key_text` and returns its DKIM-Signature header.
fn dkim_signature_with(key_text: &str) -> Result<String, MailError> {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("dkim.key");
    std::fs::write(&key_file, key_text).unwrap();
    let mut settings = settings();
    settings.mail.dkim_selector = "sel2026".to_owned();
    settings.mail.dkim_domain = "example.org".to_owned();
    settings.mail.dkim_private_key_file = key_file.display().to_string();
    let ctx = MailContext::new(&settings, signing_key(), clock())?;
    let rendered = digest_message(
        &ctx,
        &renderer(),
        &address("a@example.org"),
        3,
        None,
        &contents(),
    )?;
    let eml = rendered.message.formatted();
    assert_headers_well_formed(&eml);
    let parsed = MessageParser::default().parse(&eml).unwrap();
    Ok(raw_header(&parsed, "DKIM-Signature").unwrap())
}

#[test]
fn rsa_and_pkcs8_ed25519_dkim_keys_are_read() {
    // A key made for this test only (`openssl genrsa -traditional 2048`).
    let rsa = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mail/dkim_test_only_rsa.pem"
    ))
    .unwrap();
    let signature = dkim_signature_with(&rsa).unwrap();
    assert!(signature.contains("a=rsa-sha256"), "{signature}");
    assert!(signature.contains("s=sel2026;"), "{signature}");

    // `openssl genpkey -algorithm ed25519`, made for this test only.
    let ed25519 = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIDhOm537n+68z2MvGROytaQvA42kirdHPuZ+lWtt9rYr\n\
                   -----END PRIVATE KEY-----\n";
    let signature = dkim_signature_with(ed25519).unwrap();
    assert!(signature.contains("a=ed25519-sha256"), "{signature}");

    let pkcs8_rsa = "-----BEGIN PRIVATE KEY-----\n\
                     MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBAL0g9KkjxhjAY6ka\n\
                     -----END PRIVATE KEY-----\n";
    let err = dkim_signature_with(pkcs8_rsa).unwrap_err();
    assert!(
        err.to_string().contains("openssl rsa -traditional"),
        "{err}"
    );
}

#[test]
fn dkim_settings_given_in_part_are_refused_with_the_keys_named() {
    let mut settings = settings();
    settings.mail.dkim_selector = "sel2026".to_owned();
    let err = MailContext::new(&settings, signing_key(), clock()).unwrap_err();
    assert!(matches!(err, MailError::Dkim(_)), "{err}");
    assert!(
        err.to_string().contains("mail.dkim_private_key_file"),
        "{err}"
    );

    settings.mail.dkim_domain = "example.org".to_owned();
    settings.mail.dkim_private_key_file = "/nonexistent/dkim.key".to_owned();
    let err = MailContext::new(&settings, signing_key(), clock()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dkim.key"), "{err}");
}

#[tokio::test]
async fn a_queued_promotion_notice_renders_for_its_subscriber_with_one_click_unsubscribe() {
    for db in council_digest::store::testing::fresh_databases(clock()).await {
        let store = &db.store;
        let (anglesey, _) = add_council(
            store,
            "isle-of-anglesey",
            "Ynys Môn – Isle of Anglesey County Council",
            "full",
        )
        .await;
        let subscriber = add_subscriber(store, "fan@example.org", "resident", &[anglesey]).await;
        let mut tx = store.begin_write().await.unwrap();
        enqueue_delivery(
            &mut tx,
            &NewDelivery {
                dedupe_key: format!("notice:promoted:1:{subscriber}"),
                kind: "promoted".to_owned(),
                subscriber_id: Some(subscriber),
                digest_id: None,
                payload: serde_json::json!({ "council_id": anglesey }),
            },
            store.clock().now_ts(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let delivery = delivery_id(store, &format!("notice:promoted:1:{subscriber}")).await;

        let settings = settings();
        let ctx = mail_context(&settings, &clock());
        let rendered = render_delivery(store, &settings, &renderer(), &ctx, delivery)
            .await
            .unwrap();
        assert_eq!(rendered.to.as_str(), "fan@example.org", "{}", db.label);
        let again = render_delivery(store, &settings, &renderer(), &ctx, delivery)
            .await
            .unwrap();
        assert_eq!(
            rendered.message_id, again.message_id,
            "a retry keeps its Message-ID"
        );

        let eml = rendered.message.formatted();
        assert_headers_well_formed(&eml);
        let parsed = MessageParser::default().parse(&eml).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Ynys Môn – Isle of Anglesey County Council is now fully supported"),
            "{}",
            db.label
        );
        let token = signing_key().sign(LinkPurpose::Unsubscribe, &subscriber.to_string());
        assert!(
            raw_header(&parsed, "List-Unsubscribe")
                .unwrap()
                .starts_with(&format!("<{BASE_URL}/unsubscribe/{token}>")),
            "{}",
            db.label
        );
        assert_eq!(
            raw_header(&parsed, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
    }
}

#[tokio::test]
async fn a_delivery_of_an_unknown_kind_or_a_missing_row_is_a_clear_error() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (anglesey, _) = add_council(store, "isle-of-anglesey", "Ynys Môn", "full").await;
    let subscriber = add_subscriber(store, "fan@example.org", "resident", &[anglesey]).await;
    let mut tx = store.begin_write().await.unwrap();
    enqueue_delivery(
        &mut tx,
        &NewDelivery {
            dedupe_key: "notice:mystery:1".to_owned(),
            kind: "mystery".to_owned(),
            subscriber_id: Some(subscriber),
            digest_id: None,
            payload: serde_json::json!({}),
        },
        store.clock().now_ts(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let delivery = delivery_id(store, "notice:mystery:1").await;
    let settings = settings();
    let ctx = mail_context(&settings, &clock());

    let err = render_delivery(store, &settings, &renderer(), &ctx, delivery)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown kind `mystery`"), "{err}");
    let err = render_delivery(store, &settings, &renderer(), &ctx, 999)
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::NotFound(_)), "{err}");
}
