//! The rendered confirmation, request acknowledgement and support notices, text and HTML,
//! compared with the files under tests/snapshots/ (UPDATE_SNAPSHOTS=1 rewrites them).

#[path = "digest_common.rs"]
mod common;

use common::*;
use council_digest::clock::Clock;
use council_digest::mail::message::{confirmation_message, render_delivery, request_ack_message};
use council_digest::store::deliveries::{NewDelivery, enqueue_delivery};

fn parts(eml: &[u8]) -> (String, String, String) {
    let parsed = mail_parser::MessageParser::default().parse(eml).unwrap();
    let mut parts = parts_of(&parsed);
    assert_eq!(parts.len(), 2);
    assert_eq!(
        (parts[0].0.as_str(), parts[1].0.as_str()),
        ("text/plain", "text/html")
    );
    let html = parts.remove(1).1;
    let text = parts.remove(0).1;
    (parsed.subject().unwrap().to_owned(), text, html)
}

#[tokio::test]
async fn notices_render_exactly_as_their_text_and_html_snapshots() {
    let clock = Clock::fixed(at("2026-02-09T07:00:00Z"));
    let db = council_digest::store::testing::fresh_sqlite(clock.clone()).await;
    let store = &db.store;
    let (council_id, _) = add_council(
        store,
        "bath-and-north-east-somerset",
        "Bath & North East Somerset Council",
        "full",
    )
    .await;
    let council = store.council_by_id(council_id).await.unwrap();
    let subscriber = add_subscriber(store, "fan@example.org", "resident", &[council_id]).await;
    let settings = settings();
    let ctx = mail_context(&settings, &clock);
    let to = "fan@example.org".parse().unwrap();

    let confirm = confirmation_message(
        &ctx,
        &renderer(),
        &to,
        &council,
        &format!("{BASE_URL}/confirm/tok3n?a=1&b=2"),
    )
    .unwrap();
    let (subject, text, html) = parts(&confirm.formatted());
    assert_eq!(
        subject,
        "Confirm your weekly digest for Bath & North East Somerset Council"
    );
    assert_snapshot("confirmation.txt", &text);
    assert_snapshot("confirmation.html", &html);

    let ack = request_ack_message(&ctx, &renderer(), &to, &council, Some("Siân")).unwrap();
    let (subject, text, html) = parts(&ack.formatted());
    assert_eq!(
        subject,
        "We have your request for Bath & North East Somerset Council"
    );
    assert_snapshot("request_ack.txt", &text);
    assert_snapshot("request_ack.html", &html);

    for (kind, want) in [
        (
            "promoted",
            "Bath & North East Somerset Council is now fully supported",
        ),
        (
            "demoted",
            "Bath & North East Somerset Council has returned to limited support",
        ),
    ] {
        let key = format!("notice:{kind}:1:{subscriber}");
        let mut tx = store.begin_write().await.unwrap();
        enqueue_delivery(
            &mut tx,
            &NewDelivery {
                dedupe_key: key.clone(),
                kind: kind.to_owned(),
                subscriber_id: Some(subscriber),
                digest_id: None,
                payload: serde_json::json!({ "council_id": council_id }),
            },
            clock.now_ts(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let delivery = delivery_id(store, &key).await;
        let rendered = render_delivery(store, &settings, &renderer(), &ctx, delivery)
            .await
            .unwrap();
        let (subject, text, html) = parts(&rendered.message.formatted());
        assert_eq!(subject, want);
        assert_snapshot(&format!("{kind}.txt"), &text);
        assert_snapshot(&format!("{kind}.html"), &html);
    }
}
